"""DeepSeek-V4 routing and experts: ``route_weights`` (hash layers), the clamped SwiGLU of the
fused ``moe_mlp`` (``activation_limit``), and the layer / HF backend on DeepSeek-V4 blocks,
against reference.py and HF transformers' own DeepseekV4TopKRouter / DeepseekV4HashRouter /
DeepseekV4Experts on tiny random configs."""

from __future__ import annotations

import pytest
import torch
from conftest import TOL, backends_for, device_of, make_ids, op

import moe_ext
from moe_ext import reference as ref

SCORES = ("softmax", "sigmoid", "sqrtsoftplus")


# ----------------------------------------------------------------------------- route_weights
@pytest.mark.parametrize("backend", backends_for("route_weights"))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("T,E,k", [(1, 8, 1), (37, 64, 6), (5, 384, 8), (3, 1024, 40)])
def test_route_weights_matches_reference(backend, dtype, T, E, k):
    dev = device_of(backend)
    logits = (torch.randn(T, E) * 3).to(dtype).to(dev)
    ids = make_ids(T, k, E, device=dev)
    for sf in SCORES:
        for renorm in (True, False):
            got = op(backend, "route_weights")(logits, ids, sf, renorm, 2.5)
            want = ref.route_weights(logits.cpu(), ids.cpu(), sf, renorm, 2.5)
            assert got.dtype == torch.float32 and got.shape == (T, k)
            torch.testing.assert_close(got.cpu(), want, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("backend", backends_for("route_weights"))
def test_route_weights_of_routes_own_ids_are_routes_weights(backend):
    """Bit for bit on the device kernels (the same scores, summed in the same selection order);
    on CPU route's vectorised renormalisation may differ by an ulp."""
    dev = device_of(backend)
    logits = torch.randn(50, 128, device=dev)
    for sf in SCORES:
        w, ids = op(backend, "route")(logits, 8, sf, True, None, 1, 1, 1.5)
        got = op(backend, "route_weights")(logits, ids, sf, True, 1.5)
        if backend == "cpu":
            torch.testing.assert_close(got, w, atol=0, rtol=1e-6)  # 2 ulp
        else:
            assert torch.equal(got, w)


def test_route_weights_int64_ids_and_fp64():
    logits = torch.randn(9, 16, dtype=torch.float64)
    ids = make_ids(9, 3, 16).long()
    got = moe_ext.route_weights(logits, ids, "sqrtsoftplus")
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, ref.route_weights(logits, ids, "sqrtsoftplus"))


@pytest.mark.parametrize("sf", SCORES)
def test_route_weights_gradcheck(sf):
    logits = torch.randn(6, 10, dtype=torch.float64, requires_grad=True)
    ids = make_ids(6, 3, 10)
    torch.autograd.gradcheck(lambda x: moe_ext.route_weights(x, ids, sf, True, 1.5), (logits,))


@pytest.mark.parametrize("backend", backends_for("route_weights"))
def test_route_weights_grad_matches_reference(backend):
    dev = device_of(backend)
    logits = torch.randn(20, 32, device=dev, requires_grad=True)
    ids = make_ids(20, 4, 32, device=dev)
    g = torch.randn(20, 4, device=dev)
    for sf in SCORES:
        (dx,) = torch.autograd.grad(
            op(backend, "route_weights")(logits, ids, sf).mul(g).sum(), logits
        )
        x = logits.detach().cpu().requires_grad_()
        (want,) = torch.autograd.grad(ref.route_weights(x, ids.cpu(), sf).mul(g.cpu()).sum(), x)
        torch.testing.assert_close(dx.cpu(), want, atol=1e-6, rtol=1e-5)


def test_route_weights_bad_input_names_the_argument():
    logits = torch.randn(4, 8)
    with pytest.raises(RuntimeError, match="ids must be in"):
        moe_ext.route_weights(logits, torch.full((4, 2), 8, dtype=torch.int32))
    with pytest.raises(RuntimeError, match="ids must be"):
        moe_ext.route_weights(logits, torch.zeros(3, 2, dtype=torch.int32))
    with pytest.raises(RuntimeError, match="score_func"):
        moe_ext.route_weights(logits, torch.zeros(4, 2, dtype=torch.int32), "relu")


def test_route_weights_opcheck_and_compile():
    logits = torch.randn(8, 16)
    ids = make_ids(8, 2, 16)
    torch.library.opcheck(torch.ops.moe_ext.route_weights, (logits, ids, "sigmoid", True, 1.0))
    f = torch.compile(lambda x, i: moe_ext.route_weights(x, i, "sqrtsoftplus"), fullgraph=True)
    torch.testing.assert_close(f(logits, ids), ref.route_weights(logits, ids, "sqrtsoftplus"))


# ------------------------------------------------------------------- clamped SwiGLU (moe_mlp)
def _mlp_inputs(T, H, I, E, k, dtype, dev, scale=4.0):
    x = (torch.randn(T, H) * scale).to(dtype).to(dev)
    w1 = (torch.randn(E, 2 * I, H) / H**0.5).to(dtype).to(dev)
    w2 = (torch.randn(E, H, I) / I**0.5).to(dtype).to(dev)
    ids = make_ids(T, k, E, "skewed", device=dev)
    weights = torch.rand(T, k, device=dev)
    order, slot, offsets = moe_ext.sort_tokens(ids, E)
    return x, w1, w2, weights, order, slot, offsets


@pytest.mark.parametrize("backend", backends_for("moe_mlp"))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("activation", ["swiglu", "geglu"])
def test_moe_mlp_activation_limit_matches_reference(backend, dtype, activation):
    """The limit must bite: x is scaled so a good share of gate/up values exceed it."""
    dev = device_of(backend)
    args = _mlp_inputs(40, 64, 32, 4, 2, dtype, dev)
    limit = 1.5
    h = args[0].float().cpu() @ args[1][0].float().cpu().t()
    assert (h.abs() > limit).float().mean() > 0.2  # the clamp is exercised
    got = op(backend, "moe_mlp")(*args, activation, limit)
    want = ref.moe_mlp(
        *[a.cpu().double() if a.is_floating_point() else a.cpu() for a in args], activation, limit
    )
    plain = ref.moe_mlp(
        *[a.cpu().double() if a.is_floating_point() else a.cpu() for a in args], activation
    )
    assert not torch.allclose(want, plain, atol=1e-2)  # clamped != unclamped
    torch.testing.assert_close(
        got.cpu().double(), want, **{k: 4 * v for k, v in TOL[dtype].items()}
    )


@pytest.mark.parametrize("path", ["sm80", "sm90"])
@pytest.mark.parametrize("backend", [b for b in backends_for("moe_mlp") if b != "cpu"])
def test_moe_mlp_activation_limit_per_kernel_family(backend, path, monkeypatch):
    """The clamp in both epilogues: MOE_EXT_GEMM_PATH forces the Ampere (sm80) or the Hopper
    (sm90) kernel for both fused GEMMs (an error if one were not eligible)."""
    if backend == "cuda" and path == "sm90" and torch.cuda.get_device_capability()[0] != 9:
        pytest.skip("the Hopper kernels need an sm_90 GPU")
    monkeypatch.setenv("MOE_EXT_GEMM_PATH", path)
    args = _mlp_inputs(96, 64, 48, 4, 2, torch.bfloat16, device_of(backend))
    got = op(backend, "moe_mlp")(*args, "swiglu", 1.5)
    want = ref.moe_mlp(
        *[a.cpu().double() if a.is_floating_point() else a.cpu() for a in args], "swiglu", 1.5
    )
    torch.testing.assert_close(got.cpu().double(), want, atol=8e-2, rtol=8e-2)


@pytest.mark.parametrize("backend", backends_for("moe_mlp"))
def test_moe_mlp_activation_limit_backward(backend):
    dev = device_of(backend)
    x, w1, w2, weights, order, slot, offsets = _mlp_inputs(24, 32, 16, 3, 2, torch.float32, dev)
    leaves = [t.detach().requires_grad_() for t in (x, w1, w2, weights)]
    y = op(backend, "moe_mlp")(*leaves, order, slot, offsets, "swiglu", 1.0)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, leaves, g)
    rl = [t.detach().cpu().double().requires_grad_() for t in (x, w1, w2, weights)]
    yr = ref.moe_mlp(*rl, order.cpu(), slot.cpu(), offsets.cpu(), "swiglu", 1.0)
    want = torch.autograd.grad(yr, rl, g.cpu().double())
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a.cpu().double(), b, atol=1e-4, rtol=1e-4)


def test_moe_mlp_activation_limit_errors():
    args = _mlp_inputs(4, 8, 4, 2, 1, torch.float32, "cpu")
    with pytest.raises(RuntimeError, match="activation_limit"):
        moe_ext.moe_mlp(*args, "silu", 1.0)  # ungated
    with pytest.raises(RuntimeError, match="activation_limit"):
        moe_ext.moe_mlp(*args, "swiglu", -1.0)


# ------------------------------------------------------------------------- HF DeepSeek-V4
transformers = pytest.importorskip("transformers")
v4 = pytest.importorskip("transformers.models.deepseek_v4.modeling_deepseek_v4")


def _v4_config(**kw):
    from transformers import DeepseekV4Config

    cfg = DeepseekV4Config(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=16,
        moe_intermediate_size=16,
        num_hidden_layers=2,
        num_local_experts=8,
        n_routed_experts=8,
        num_experts_per_tok=3,
        swiglu_limit=0.5,
        mlp_layer_types=["hash_moe", "moe"],
        **kw,
    )
    return cfg


def _v4_block(layer_idx, impl="eager"):
    torch.manual_seed(0)
    cfg = _v4_config()
    cfg._experts_implementation = impl
    block = v4.DeepseekV4SparseMoeBlock(cfg, layer_idx)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.3)
        if layer_idx == 0:
            block.gate.tid2eid.copy_(make_ids(cfg.vocab_size, cfg.num_experts_per_tok, 8).long())
        else:
            block.gate.e_score_correction_bias.normal_(0, 0.5)
    return block


def test_hf_v4_routers_match_reference():
    torch.manual_seed(1)
    for layer_idx in (0, 1):
        block = _v4_block(layer_idx)
        x = torch.randn(2, 7, 32)
        input_ids = torch.randint(0, 64, (2, 7))
        if layer_idx == 0:
            logits, w, ids = block.gate(x, input_ids)
            ours = moe_ext.route_weights(logits, ids, "sqrtsoftplus", True, 1.5)
            torch.testing.assert_close(ours, w, **TOL[torch.float32])
        else:
            logits, w, ids = block.gate(x)
            ow, oi = moe_ext.route(
                logits, 3, "sqrtsoftplus", True, block.gate.e_score_correction_bias, 1, 1, 1.5
            )
            s_ids, perm = ids.sort(-1)
            o_ids, operm = oi.long().sort(-1)
            assert torch.equal(s_ids, o_ids)
            torch.testing.assert_close(ow.gather(1, operm), w.gather(1, perm), **TOL[torch.float32])


@pytest.mark.parametrize("layer_idx", [0, 1])
def test_hf_v4_experts_run_fused_and_match_eager(layer_idx, monkeypatch):
    """experts_implementation="moe_ext" on DeepseekV4Experts takes the fused moe_mlp with
    activation_limit = experts.limit (the clamped SwiGLU), and matches HF's eager experts."""
    moe_ext.hf.register()
    x = torch.randn(2, 9, 32) * 3
    input_ids = torch.randint(0, 64, (2, 9))
    eager = _v4_block(layer_idx, "eager")
    ours = _v4_block(layer_idx, "moe_ext")
    calls = []
    real = moe_ext.ops.moe_mlp
    monkeypatch.setattr(moe_ext.hf.ops, "moe_mlp", lambda *a: calls.append(a) or real(*a))
    kw = {"input_ids": input_ids} if layer_idx == 0 else {}
    want = eager(x, **kw)
    got = ours(x, **kw)
    assert calls and calls[0][-1] == 0.5 and calls[0][-2] == "swiglu"
    torch.testing.assert_close(got, want, **TOL[torch.float32])


@pytest.mark.parametrize("layer_idx", [0, 1])
def test_moe_from_hf_v4_block(layer_idx):
    """moe_ext.MoE.from_hf on DeepSeek-V4 blocks: hash layers (tid2eid, input_ids) and top-k
    (sqrtsoftplus + correction bias), clamped SwiGLU experts and shared expert; output and
    input gradient match the HF block."""
    block = _v4_block(layer_idx)
    layer = moe_ext.MoE.from_hf(block)
    assert layer.activation_limit == 0.5
    assert (layer.tid2eid is not None) == (layer_idx == 0)
    x = (torch.randn(2, 9, 32) * 3).requires_grad_()
    input_ids = torch.randint(0, 64, (2, 9))
    kw = {"input_ids": input_ids} if layer_idx == 0 else {}
    want = block(x, **kw)
    got = layer(x, **kw)
    torch.testing.assert_close(got, want, **TOL[torch.float32])
    g = torch.randn_like(want)
    (dw,) = torch.autograd.grad(want, x, g)
    (dg,) = torch.autograd.grad(got, x, g)
    torch.testing.assert_close(dg, dw, **TOL[torch.float32])
    if layer_idx == 0:
        with pytest.raises(ValueError, match="input_ids"):
            layer(x)
