"""moe_ext.hf: experts_implementation="moe_ext" in HF transformers models, against HF's own
"eager" experts on tiny random configs of Mixtral, Qwen3-MoE, OLMoE, DeepSeek-V3 and gpt-oss
(no downloads). Logits and every parameter's gradient must match in fp32; bf16 logits within
bf16 tolerance. The fused moe_mlp path must be the one taken where it applies (SwiGLU,
concatenated gate_up_proj, no bias), the composite path elsewhere (gpt-oss: biases and a
clamped, interleaved SwiGLU).
"""

from __future__ import annotations

import warnings

import pytest
import torch

import moe_ext

transformers = pytest.importorskip("transformers")
import moe_ext.hf  # noqa: E402

COMMON = dict(
    vocab_size=64,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=64,
)


def config(name):
    t = transformers
    if name == "mixtral":
        return t.MixtralConfig(
            intermediate_size=48, num_local_experts=4, num_experts_per_tok=2, **COMMON
        )
    if name == "qwen3_moe":
        return t.Qwen3MoeConfig(
            intermediate_size=48,
            moe_intermediate_size=24,
            num_experts=8,
            num_experts_per_tok=2,
            decoder_sparse_step=1,
            head_dim=8,
            **COMMON,
        )
    if name == "olmoe":
        return t.OlmoeConfig(intermediate_size=24, num_experts=8, num_experts_per_tok=2, **COMMON)
    if name == "deepseek_v3":
        return t.DeepseekV3Config(
            intermediate_size=48,
            moe_intermediate_size=16,
            n_routed_experts=8,
            num_experts_per_tok=2,
            n_shared_experts=1,
            n_group=2,
            topk_group=1,
            first_k_dense_replace=0,
            q_lora_rank=16,
            kv_lora_rank=16,
            qk_rope_head_dim=8,
            qk_nope_head_dim=8,
            v_head_dim=8,
            **COMMON,
        )
    if name == "gpt_oss":
        return t.GptOssConfig(
            intermediate_size=24,
            num_local_experts=4,
            num_experts_per_tok=2,
            head_dim=8,
            sliding_window=16,
            **COMMON,
        )
    if name == "deepseek_v4":  # layer 0 a hash layer (tid2eid), layer 1 top-k (sqrtsoftplus)
        return t.DeepseekV4Config(
            intermediate_size=16,
            moe_intermediate_size=16,
            num_local_experts=8,
            n_routed_experts=8,
            num_experts_per_tok=2,
            swiglu_limit=0.5,
            mlp_layer_types=["hash_moe", "moe"],
            **{**COMMON, "num_key_value_heads": 1},
        )
    raise ValueError(name)


MODELS = ["mixtral", "qwen3_moe", "olmoe", "deepseek_v3", "gpt_oss", "deepseek_v4"]
FUSED = {
    "mixtral": True,
    "qwen3_moe": True,
    "olmoe": True,
    "deepseek_v3": True,
    "gpt_oss": False,
    "deepseek_v4": True,  # the clamped SwiGLU as moe_mlp's activation_limit
}


@pytest.fixture(scope="module", autouse=True)
def registered():
    moe_ext.hf.register()


def build(name, dtype=torch.float32):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForCausalLM.from_config(config(name))
    with torch.no_grad():  # DeepSeek-V4: a random tid2eid (checkpoints carry one; init is 0)
        for m in model.modules():
            if hasattr(m, "tid2eid"):
                m.tid2eid.copy_(torch.randint(0, m.num_experts, m.tid2eid.shape))
    return model.to(dtype)


def run(model, impl, ids, backward=False):
    model.set_experts_implementation(impl)
    model.zero_grad(set_to_none=True)
    logits = model(ids).logits
    grads = None
    if backward:
        logits.float().square().mean().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), grads


@pytest.mark.parametrize("name", MODELS)
def test_logits_and_grads_match_eager(name, monkeypatch):
    model = build(name)
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(1))
    ref, ref_grads = run(model, "eager", ids, backward=True)
    calls = []
    real = moe_ext.ops.moe_mlp
    monkeypatch.setattr(moe_ext.ops, "moe_mlp", lambda *a, **k: calls.append(1) or real(*a, **k))
    out, grads = run(model, "moe_ext", ids, backward=True)
    assert bool(calls) == FUSED[name], "fused path taken" if calls else "composite path taken"
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    assert grads.keys() == ref_grads.keys()
    expert_params = [n for n in grads if "experts" in n]
    assert expert_params, "no expert parameters received gradients"
    for n in grads:
        scale = max(1.0, ref_grads[n].abs().max().item())
        torch.testing.assert_close(
            grads[n], ref_grads[n], rtol=1e-4, atol=1e-5 * scale, msg=lambda m: f"{n}: {m}"
        )


@pytest.mark.parametrize("name", ["mixtral", "gpt_oss"])
def test_bf16_logits(name):
    model = build(name, torch.bfloat16)
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(2))
    ref, _ = run(model, "eager", ids)
    out, _ = run(model, "moe_ext", ids)
    torch.testing.assert_close(out.float(), ref.float(), rtol=5e-2, atol=5e-2)


def test_expert_parallel_sentinels_are_dropped():
    """ids >= num_experts (HF's marker for experts on other ranks) contribute nothing."""
    model = build("mixtral")
    experts = model.model.layers[0].mlp.experts
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 32, generator=g)
    idx = torch.randint(0, 4, (6, 2), generator=g)
    w = torch.rand(6, 2, generator=g)
    sentinel = idx.clone()
    sentinel[::2, 1] = experts.num_experts  # non-local
    masked_w = w.clone()
    masked_w[::2, 1] = 0.0
    out = moe_ext.hf.experts_forward(experts, x, sentinel, w)
    expect = moe_ext.hf.experts_forward(experts, x, idx, masked_w)
    torch.testing.assert_close(out, expect, rtol=1e-5, atol=1e-6)


def test_compile_fullgraph_tiny_model():
    model = build("qwen3_moe")
    model.set_experts_implementation("moe_ext")
    ids = torch.randint(0, 64, (1, 8), generator=torch.Generator().manual_seed(4))
    ref = model(ids).logits
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    torch.testing.assert_close(compiled(ids).logits, ref, rtol=1e-4, atol=1e-5)
