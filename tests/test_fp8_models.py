"""FP8 experts in models: a tiny DeepSeek-V3 HF model with FP8Experts (e4m3 weights, one scale per
128 x 128 block, as the real checkpoints) runs with experts_implementation="moe_ext" on CPU --
where transformers alone cannot run FP8 experts -- and matches its dequantized-weights eager twin
within the activations' FP8 quantization error; moe_ext.MoE holds FP8 experts
(quantize_experts_fp8, from_hf on an FP8 block), frozen, with gradients for x.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

import moe_ext
from moe_ext import reference

transformers = pytest.importorskip("transformers")
fp8 = pytest.importorskip("transformers.integrations.finegrained_fp8")
import moe_ext.hf  # noqa: E402

# an FP8 MoE output vs the same layer with the dequantized weights in bf16: the difference is
# the activations' per-token-group e4m3 quantization (~3.6 % rms per element)
REL_TOL = 0.06


def tiny_deepseek_v3():
    cfg = transformers.DeepseekV3Config(
        vocab_size=64,
        hidden_size=256,
        intermediate_size=256,
        moe_intermediate_size=128,
        n_routed_experts=8,
        num_experts_per_tok=2,
        n_shared_experts=1,
        n_group=2,
        topk_group=1,
        first_k_dense_replace=0,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        q_lora_rank=32,
        kv_lora_rank=32,
        qk_rope_head_dim=16,
        qk_nope_head_dim=16,
        v_head_dim=16,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.AutoModelForCausalLM.from_config(cfg).bfloat16().eval()


def to_fp8_experts(model):
    """Swap every experts module for HF's FP8Experts holding its weights in block FP8; returns
    the bf16 twin whose experts hold the dequantized weights (the same numbers)."""
    from transformers.integrations.moe import use_experts_implementation

    twin = copy.deepcopy(model)
    cls = use_experts_implementation(
        experts_class=fp8.FP8Experts,
        experts_interface=fp8.ALL_FP8_EXPERTS_FUNCTIONS,
        has_bias=False,
        has_gate=True,
    )
    names = [n for n, _ in model.named_modules() if n.endswith(".experts")]
    assert names
    for name in names:
        old = model.get_submodule(name)
        new = cls(config=old.config, block_size=(128, 128))
        with torch.no_grad():
            for proj in ("gate_up_proj", "down_proj"):
                w_q, scale = moe_ext.ops.quantize_weight_fp8(getattr(old, proj))
                getattr(new, proj).data = w_q
                s = getattr(new, f"{proj}_scale_inv")
                s.data = torch.ones_like(s, dtype=torch.float32)
                s.data[:, : scale.shape[1], : scale.shape[2]] = scale
                deq = reference.dequantize_fp8_blocks(w_q, scale, torch.bfloat16)
                getattr(twin.get_submodule(name), proj).data = deq
        model.set_submodule(name, new)
    return twin


@pytest.fixture(scope="module", autouse=True)
def registered():
    moe_ext.hf.register()


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def hf_fp8_linear_in_torch(self, input, weight, weight_scale_inv, activation_scale=None):
    """HF FP8Experts.linear's math (fp8_linear: the input quantized per token per 128 columns,
    the block-scaled weight) in plain torch ops, so HF's eager FP8 experts run on CPU."""
    K = input.shape[-1]
    x_q, x_s = reference.quantize_fp8(input.reshape(-1, K))
    x = x_q.float() * x_s.repeat_interleave(128, 1)[:, :K]
    rows, cols = weight.shape
    scale = weight_scale_inv[: -(-rows // 128), : -(-cols // 128)]
    w = reference.dequantize_fp8_blocks(weight, scale)
    return (x @ w.T).to(input.dtype).reshape(*input.shape[:-1], rows)


def test_tiny_fp8_deepseek_v3_matches_hf_eager_fp8(monkeypatch):
    """The FP8 model with experts_implementation="moe_ext" vs the same model on HF's eager FP8
    experts (its per-expert loop; fp8_linear's math in torch, since HF's Triton/DeepGEMM
    kernels need a GPU): the same quantized numbers, so bf16-level agreement."""
    monkeypatch.setattr(fp8.FP8Experts, "linear", hf_fp8_linear_in_torch)
    model = tiny_deepseek_v3()
    to_fp8_experts(model)
    assert any(isinstance(m, fp8.FP8Experts) for m in model.modules())
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.set_experts_implementation("eager")
        ref = model(ids).logits
        model.set_experts_implementation("moe_ext")
        logits = model(ids).logits
        x = torch.randn(1, 16, 256, generator=torch.Generator().manual_seed(7)).bfloat16()
        block = model.model.layers[0].mlp
        model.set_experts_implementation("eager")
        block_ref = block(x)
        model.set_experts_implementation("moe_ext")
        block_out = block(x)
    assert torch.isfinite(logits).all()
    # one block: HF quantizes the activation from bf16, moe_mlp_fp8 from fp32 (DESIGN.md), so a
    # few codes round the other way; two layers and the LM head add up to a few percent
    assert rel(block_out, block_ref) < 2e-2, rel(block_out, block_ref)
    assert rel(logits, ref) < 5e-2, rel(logits, ref)


def test_fp8_blocks_near_their_dequantized_twin():
    """Each FP8 MoE block vs the bf16 block holding the dequantized weights (the same weight
    values): the difference is the activations' e4m3 rounding, rms 2^-4 / sqrt(3) ~ 3.6 % per
    element, which a dot product keeps (about 4 % of the output)."""
    model = tiny_deepseek_v3()
    twin = to_fp8_experts(model)
    model.set_experts_implementation("moe_ext")
    twin.set_experts_implementation("eager")
    x = torch.randn(1, 16, 256, generator=torch.Generator().manual_seed(2)).bfloat16()
    for i in range(2):
        with torch.no_grad():
            err = rel(model.model.layers[i].mlp(x), twin.model.layers[i].mlp(x))
        assert err < REL_TOL, (i, err)


def test_custom_gate_takes_the_composite_path(monkeypatch):
    """An FP8 experts block whose gate is not the default (a clamped SwiGLU) composes
    quantize_fp8 / grouped_mm_fp8 with the block's own _apply_gate instead of the fused op."""
    model = tiny_deepseek_v3()
    to_fp8_experts(model)
    ex = model.model.layers[0].mlp.experts
    ex.limit = 0.5
    calls = []
    monkeypatch.setattr(
        moe_ext.ops, "moe_mlp_fp8", lambda *a, **k: calls.append(1) or pytest.fail("fused")
    )
    x = torch.randn(6, 256, generator=torch.Generator().manual_seed(3)).bfloat16()
    ids = torch.randint(0, 8, (6, 2), generator=torch.Generator().manual_seed(4))
    w = torch.rand(6, 2)
    y = moe_ext.hf.fp8_experts_forward(ex, x, ids, w)
    # the same steps with HF's clamped gate, in fp64 GEMMs
    order, slot, offsets = moe_ext.sort_tokens(ids.int(), 8)
    x_q, x_s = reference.quantize_fp8(x)
    rows = order.long() // 2
    s1 = moe_ext.hf.fp8_scales(ex.gate_up_proj_scale_inv, 256, 256)
    s2 = moe_ext.hf.fp8_scales(ex.down_proj_scale_inv, 256, 128)
    h = reference.grouped_mm_fp8(
        x_q.view(torch.uint8)[rows].view(torch.float8_e4m3fn),
        x_s[rows],
        ex.gate_up_proj,
        s1,
        offsets,
        torch.bfloat16,
    )
    a_q, a_s = reference.quantize_fp8(ex._apply_gate(h).float())
    z = reference.grouped_mm_fp8(a_q, a_s, ex.down_proj, s2, offsets, torch.bfloat16)
    assert not calls
    assert rel(y, reference.unpermute(z, order, slot, w)) < 1e-2


def test_layer_quantize_experts_fp8_and_gradients():
    torch.manual_seed(0)
    layer = moe_ext.MoE(256, 128, 8, 2, dtype=torch.bfloat16)
    x = torch.randn(24, 256, generator=torch.Generator().manual_seed(5)).bfloat16()
    twin = copy.deepcopy(layer)
    layer.quantize_experts_fp8()
    layer.to(torch.bfloat16)  # a cast keeps the FP8 weights and their fp32 scales
    assert layer.down_proj_scale_inv.dtype == torch.float32
    assert layer.is_fp8 and layer.gate_up_proj.dtype == torch.float8_e4m3fn
    assert not layer.gate_up_proj.requires_grad
    with torch.no_grad():  # the twin holds the same numbers in bf16
        for name in ("gate_up_proj", "down_proj"):
            w = getattr(layer, name)
            deq = reference.dequantize_fp8_blocks(w, getattr(layer, f"{name}_scale_inv"))
            getattr(twin, name).copy_(deq)
    xg = x.clone().requires_grad_()
    y = layer(xg)
    y_ref = twin(x)
    assert rel(y, y_ref) < REL_TOL
    y.float().square().sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad.float()).all()
    assert layer.router.weight.grad is not None  # routing weights get their gradient
    assert layer.gate_up_proj.grad is None


def test_from_hf_on_an_fp8_block():
    model = tiny_deepseek_v3()
    to_fp8_experts(model)
    block = model.model.layers[0].mlp
    layer = moe_ext.MoE.from_hf(block)
    assert layer.is_fp8 and layer.gate_up_proj is block.experts.gate_up_proj
    x = torch.randn(1, 9, 256, generator=torch.Generator().manual_seed(6)).bfloat16()
    model.set_experts_implementation("moe_ext")
    with torch.no_grad():
        assert rel(layer(x), block(x)) < 1e-2
