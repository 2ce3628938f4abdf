"""moe_mlp_fp8 (block-FP8 experts, DESIGN.md "Contract additions") on every backend: against
reference.moe_mlp_fp8 (the contract's steps, each GEMM in fp64) within bf16-level error, near the
dequantized-weights fp64 moe_mlp (the FP8 quantization error, a few percent), the backward
w.r.t. x and weights against the straight-through formula in fp64, frozen FP8 weights.
"""

from __future__ import annotations

import pytest
import torch
from conftest import backends_for, device_of, make_ids, make_weights, op

import moe_ext
from moe_ext import ops, reference

BACKENDS = backends_for("moe_mlp_fp8")


def blocks(n):
    return (n + 127) // 128


def quantized_weight(shape, gen):
    """A DeepSeek-V3-style e4m3 weight with one fp32 scale per 128 x 128 block."""
    w = torch.randn(*shape, generator=gen) * 0.05
    scale = torch.rand(shape[0], blocks(shape[1]), blocks(shape[2]), generator=gen) * 1e-3 + 5e-4
    full = scale.repeat_interleave(128, 1)[:, : shape[1]].repeat_interleave(128, 2)
    q = (w / full[:, :, : shape[2]]).clamp(-448, 448).to(torch.float8_e4m3fn)
    return q, scale


def make_layer(T, H, I, E, k, *, gated=True, routing="uniform", capacity=None, dtype=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(T, H, generator=gen).to(dtype or torch.bfloat16)
    w1, w1_scale = quantized_weight((E, (2 if gated else 1) * I, H), gen)
    w2, w2_scale = quantized_weight((E, H, I), gen)
    ids = make_ids(T, k, E, routing, generator=gen)
    weights = make_weights(T, k, generator=gen)
    order, slot, offsets = moe_ext.sort_tokens(ids, E, capacity)
    return x, w1, w1_scale, w2, w2_scale, weights, order, slot, offsets


def on(backend, args):
    dev = device_of(backend)
    return [a.to(dev) if isinstance(a, torch.Tensor) else a for a in args]


def assert_bf16_level(y, ref):
    y, ref = y.double().cpu(), ref.double()
    scale = ref.abs().max().item() + 1e-6
    err = (y - ref).abs().max().item()
    assert err <= 2e-2 * scale, f"max err {err:.3g} vs max |ref| {scale:.3g}"


# (T, H, I, E, k, gated, activation, routing, capacity)
CASES = [
    (48, 256, 192, 4, 2, True, "swiglu", "uniform", None),
    (33, 200, 130, 3, 2, True, "geglu", "skewed", None),  # H, I not multiples of 128
    (20, 128, 64, 8, 3, True, "swiglu", "empty_experts", None),
    (64, 256, 128, 4, 2, False, "silu", "uniform", None),
    (40, 128, 128, 4, 2, True, "swiglu", "all_to_one", 16),  # capacity: dropped rows
    (1, 128, 128, 2, 1, False, "gelu", "uniform", None),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[6]}-{c[7]}-T{c[0]}" for c in CASES])
@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_the_contract_steps(backend, case):
    T, H, I, E, k, gated, activation, routing, capacity = case
    args = make_layer(T, H, I, E, k, gated=gated, routing=routing, capacity=capacity, seed=T)
    ref = reference.moe_mlp_fp8(*args, activation)
    y = op(backend, "moe_mlp_fp8")(*on(backend, args), activation)
    assert y.dtype == args[0].dtype and y.shape == args[0].shape
    assert_bf16_level(y, ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float16_and_near_dequantized_weights(backend):
    args = make_layer(32, 256, 128, 4, 2, dtype=torch.float16, seed=3)
    x, w1, w1s, w2, w2s, weights, order, slot, offsets = args
    y = op(backend, "moe_mlp_fp8")(*on(backend, args), "swiglu").cpu()
    assert y.dtype == torch.float16
    assert_bf16_level(y, reference.moe_mlp_fp8(*args))
    dense = reference.moe_mlp(
        x.double(),
        reference.dequantize_fp8_blocks(w1, w1s, torch.float64),
        reference.dequantize_fp8_blocks(w2, w2s, torch.float64),
        weights.double(),
        order,
        slot,
        offsets,
    )
    rel = (y.double() - dense).norm() / dense.norm()
    assert rel < 0.08, rel  # the activations' FP8 quantization, not a wrong formula


def ste_reference_grads(args, activation, dy):
    """d/dx and d/dweights of moe_mlp_fp8 with the quantizations straight-through, in fp64: the
    forward values are the FP8 path's (h, z), the derivatives those of the dequantized MLP."""
    x, w1, w1s, w2, w2s, weights, order, slot, offsets = args
    k = weights.shape[1]
    rows = order.long() // k
    x_q, x_s = reference.quantize_fp8(x)
    h0 = reference.grouped_mm_fp8(
        x_q.view(torch.uint8)[rows].view(torch.float8_e4m3fn),
        x_s[rows],
        w1,
        w1s,
        offsets,
        out_dtype=x.dtype,
    ).double()
    a_q, a_s = reference.quantize_fp8(
        reference.apply_activation(h0.to(x.dtype).float(), activation)
    )
    z0 = reference.grouped_mm_fp8(a_q, a_s, w2, w2s, offsets, out_dtype=x.dtype).double()
    w1d = reference.dequantize_fp8_blocks(w1, w1s, torch.float64)
    w2d = reference.dequantize_fp8_blocks(w2, w2s, torch.float64)
    kept = torch.arange(order.numel()) < offsets[-1].item()
    e = torch.searchsorted(offsets.long(), torch.arange(order.numel()), right=True).clamp_max(
        w1.shape[0] - 1
    )
    xd = x.double().requires_grad_()
    wd = weights.double().requires_grad_()
    hv = torch.einsum("nih,nh->ni", w1d[e], xd[rows]) * kept[:, None]
    hv = h0 + hv - hv.detach()
    a = reference.apply_activation(hv, activation)
    zv = torch.einsum("nhi,ni->nh", w2d[e], a) * kept[:, None]
    zv = z0 + zv - zv.detach()
    y = reference.unpermute(zv, order, slot, wd)
    dx, dw = torch.autograd.grad(y, (xd, wd), dy.double())
    return dx, dw


@pytest.mark.parametrize("activation", ["swiglu", "gelu"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_x_and_weights(backend, activation):
    gated = activation == "swiglu"
    args = make_layer(40, 256, 128, 4, 2, gated=gated, routing="skewed", seed=11)
    dy = torch.randn(40, 256, generator=torch.Generator().manual_seed(1)).bfloat16()
    ref_dx, ref_dw = ste_reference_grads(args, activation, dy)
    dev_args = on(backend, args)
    x = dev_args[0].clone().requires_grad_()
    weights = dev_args[5].clone().requires_grad_()
    call = (x, *dev_args[1:5], weights, *dev_args[6:], activation)
    ns = torch.ops.moe_ext_emu if backend == "emu" else torch.ops.moe_ext
    y = ops._moe_mlp_fp8_on(ns, *call)
    y.backward(dy.to(y.device))
    assert_bf16_level(x.grad, ref_dx)
    torch.testing.assert_close(weights.grad.cpu().double(), ref_dw, rtol=2e-2, atol=2e-2)
    # the op called directly (it saves only its inputs): the backward recomputes h and z
    x2 = dev_args[0].clone().requires_grad_()
    y2 = op(backend, "moe_mlp_fp8")(x2, *dev_args[1:], activation)
    y2.backward(dy.to(y2.device))
    assert torch.equal(x2.grad, x.grad)


def test_fp8_weights_are_frozen():
    args = make_layer(8, 128, 128, 2, 1, seed=2)
    w1s = args[2].clone().requires_grad_()
    with pytest.raises(RuntimeError, match="moe_mlp_fp8: the FP8 expert weights are frozen"):
        moe_ext.moe_mlp_fp8(args[0], args[1], w1s, *args[3:])


@pytest.mark.parametrize("backend", BACKENDS)
def test_errors_name_the_argument(backend):
    f = op(backend, "moe_mlp_fp8")
    x, w1, w1s, w2, w2s, weights, order, slot, offsets = on(backend, make_layer(8, 128, 64, 2, 1))
    with pytest.raises(RuntimeError, match="moe_mlp_fp8: x must be bfloat16 or float16"):
        f(x.float(), w1, w1s, w2, w2s, weights, order, slot, offsets)
    with pytest.raises(RuntimeError, match="moe_mlp_fp8: w1 must be float8_e4m3fn"):
        f(x, w1.bfloat16(), w1s, w2, w2s, weights, order, slot, offsets)
    with pytest.raises(RuntimeError, match=r"moe_mlp_fp8: w1_scale must be \[2, 1, 1\]"):
        f(x, w1, w1s[:, :, :0], w2, w2s, weights, order, slot, offsets)
    with pytest.raises(RuntimeError, match="moe_mlp_fp8: w2_scale must be float32"):
        f(x, w1, w1s, w2, w2s.double(), weights, order, slot, offsets)
    with pytest.raises(RuntimeError, match="moe_mlp_fp8: activation must be one of"):
        f(x, w1, w1s, w2, w2s, weights, order, slot, offsets, "swish")


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend):
    args = on(backend, make_layer(16, 128, 128, 2, 2, seed=5))
    # not "test_schema": its alias check multiplies inputs, which torch lacks for float8 on CPU
    utils = ("test_faketensor", "test_autograd_registration", "test_aot_dispatch_dynamic")
    for name in ("moe_mlp_fp8", "moe_mlp_fp8_save"):
        torch.library.opcheck(op(backend, name), (*args, "swiglu"), test_utils=utils)


def test_compile_fullgraph():
    torch._dynamo.reset()
    args = make_layer(16, 128, 128, 2, 2, seed=6)
    f = torch.compile(moe_ext.moe_mlp_fp8, fullgraph=True)
    assert torch.equal(f(*args), moe_ext.moe_mlp_fp8(*args))
