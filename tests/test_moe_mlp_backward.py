"""moe_mlp_backward (issue 22): moe_mlp's gradients with no redundant GEMM, on every backend.

The routing-weight gradient comes from the dA GEMM, <gather(dy) @ w2, act(h)>, not from a second
run of the forward's second GEMM; the activation's backward runs per expert (CPU) or on the
sorted rows (device targets) without an fp32 tensor as wide as h. Checked against autograd
through reference.moe_mlp (fp64 truth, the error budget of test_moe_mlp.py), for every
activation, the clamped SwiGLU, dropped and "not routed here" assignments and empty experts;
on the emulator the tensor-core instructions of one training step are exactly those of 7
grouped GEMMs (2 forward, 5 backward: the ideal 6 plus the first GEMM's recompute).
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import device_of, op
from test_moe_mlp import ACTIVATIONS, BACKENDS, make_case

import moe_ext
from moe_ext import reference


def grads_of(fn, args, dy, activation, limit=None, cast=lambda t: t):
    x, w1, w2, weights, order, slot, offsets = args
    leaves = [cast(t).detach().requires_grad_(True) for t in (x, w1, w2, weights)]
    dev = leaves[0].device
    out = fn(*leaves, order.to(dev), slot.to(dev), offsets.to(dev), activation, limit)
    (out.double() * cast(dy).double()).sum().backward()
    return [t.grad for t in leaves]


def check_grads(backend, args, activation, limit=None, seed=0):
    x = args[0]
    dy = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)).to(x.dtype)
    ours = grads_of(op(backend, "moe_mlp"), args, dy.to(x.device), activation, limit)
    truth = grads_of(reference_mlp, args, dy, activation, limit, lambda t: t.cpu().double())
    same = grads_of(reference_mlp, args, dy, activation, limit, lambda t: t.cpu())
    for name, o, t, s in zip(("x", "w1", "w2", "weights"), ours, truth, same):
        assert o.shape == t.shape and o.dtype == s.dtype and torch.isfinite(o).all(), name
        if t.numel() == 0:
            continue
        err = (o.cpu().double() - t).abs().max().item()
        base = (s.double() - t).abs().max().item()
        ulp = torch.finfo(o.dtype).eps * max(1.0, t.abs().max().item())
        assert err <= 3 * base + 4 * ulp, f"d{name}: error {err:.3g} vs torch's {base:.3g}"


def reference_mlp(x, w1, w2, weights, order, slot, offsets, activation, limit):
    return reference.moe_mlp(x, w1, w2, weights, order, slot, offsets, activation, limit)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_activation(backend, activation):
    args = make_case(40, 64, 48, 8, 2, torch.bfloat16, device_of(backend), activation)
    check_grads(backend, args, activation)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_clamped_swiglu(backend, dtype):
    """activation_limit (DeepSeek-V4, gpt-oss): the gradient stops where gate > limit or up is
    outside [-limit, limit], as torch.clamp's does; a small limit makes both happen often."""
    args = make_case(32, 48, 32, 4, 2, dtype, device_of(backend), "swiglu")
    check_grads(backend, args, "swiglu", 0.5)


# (id, T, H, I, E, k, extra make_case arguments)
EDGES = [
    ("t0", 0, 32, 16, 4, 2, {}),
    ("capacity_drop", 48, 32, 24, 4, 2, {"capacity": 5}),
    ("capacity_zero", 16, 32, 24, 4, 2, {"capacity": 0}),
    ("sentinels", 30, 32, 24, 4, 2, {"sentinels": True}),
    ("many_experts", 64, 32, 16, 64, 4, {}),  # most experts 0-4 rows: zero weight gradients
    ("w1_transposed_view", 30, 48, 40, 4, 2, {"w1_layout": "t"}),
    ("multi_tile", 160, 96, 80, 2, 2, {}),
]


@pytest.mark.parametrize("case", EDGES, ids=[c[0] for c in EDGES])
@pytest.mark.parametrize("backend", BACKENDS)
def test_edges(backend, case):
    _, T, H, I, E, k, extra = case
    args = make_case(T, H, I, E, k, torch.bfloat16, device_of(backend), **extra)
    check_grads(backend, args, "swiglu")


@pytest.mark.parametrize("backend", BACKENDS)
def test_float64_cpu_and_given_h(backend):
    """h given (the forward's x[order // k] @ w1ᵀ, sorted rows, here from einsum) is what the
    op would recompute: the same gradients up to the rounding of h itself."""
    dtype = torch.float64 if backend == "cpu" else torch.float32
    args = make_case(24, 32, 16, 4, 2, dtype, device_of(backend), capacity=10)
    x, w1, w2, weights, order, slot, offsets = args
    f = op(backend, "moe_mlp_backward")
    dy = torch.randn_like(x)
    xp = reference.permute(x.cpu(), order.cpu(), slot.cpu(), 2).to(x.device)
    h = torch.einsum("nh,nih->ni", xp, w1[sort_expert(offsets, x.shape[0] * 2)].to(x.device))
    recomputed = f(dy, x, w1, w2, weights, order, slot, offsets, "swiglu")
    given = f(dy, x, w1, w2, weights, order, slot, offsets, "swiglu", None, h.to(x.dtype))
    for r, g in zip(recomputed, given):
        tol = 1e-4 if dtype == torch.float32 else 1e-10
        torch.testing.assert_close(r, g, rtol=tol, atol=tol)


def sort_expert(offsets, n):
    """The expert of each sorted row (rows past offsets[-1] clamp to the last expert; their xp
    rows are zero)."""
    rows = torch.arange(n)
    return torch.bucketize(rows, offsets.cpu().long(), right=True).clamp(max=len(offsets) - 1)


def test_gradcheck_fp64_cpu_every_gated_activation():
    for activation in ("swiglu", "geglu", "geglu_tanh"):
        args = make_case(6, 5, 3, 3, 2, torch.float64, "cpu", activation, capacity=3)
        x, w1, w2, weights, order, slot, offsets = args
        leaves = [t.detach().requires_grad_(True) for t in (x, w1, w2, weights.double())]

        def f(*ts, activation=activation):
            return torch.ops.moe_ext.moe_mlp(*ts, order, slot, offsets, activation)

        assert torch.autograd.gradcheck(f, leaves)


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend):
    args = make_case(12, 16, 8, 4, 2, torch.float32, device_of(backend))
    dy = torch.randn_like(args[0])
    torch.library.opcheck(op(backend, "moe_mlp_backward"), (dy, *args, "swiglu"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_errors_name_the_argument(backend):
    x, w1, w2, weights, order, slot, offsets = make_case(
        8, 16, 8, 4, 2, torch.float32, device_of(backend)
    )
    f = op(backend, "moe_mlp_backward")
    with pytest.raises(RuntimeError, match="moe_mlp_backward: grad_y must have x's shape"):
        f(x[:-1], x, w1, w2, weights, order, slot, offsets)
    with pytest.raises(RuntimeError, match="moe_mlp_backward: h must be"):
        f(x, x, w1, w2, weights, order, slot, offsets, "swiglu", None, x)
    with pytest.raises(RuntimeError, match="moe_mlp_backward: activation_limit"):
        f(x, x, w1, w2, weights, order, slot, offsets, "gelu", 1.0)


# ---------------------------------------------------------------- work done (emulator counts)
MMA_FLOPS = 2 * 16 * 8 * 16  # mma.sync.m16n8k16
WGMMA_FLOPS = 2 * 64 * 128 * 16  # wgmma.m64n128k16


@pytest.fixture
def memory_policy():
    before = moe_ext.get_moe_mlp_memory_policy()
    yield moe_ext.set_moe_mlp_memory_policy
    moe_ext.set_moe_mlp_memory_policy(before)


@pytest.mark.skipif("emu" not in BACKENDS, reason="needs the emulator backend")
@pytest.mark.parametrize("path", ["sm80", "sm90"])
@pytest.mark.parametrize("policy,gemms,flops", [("save_h", 6, 18), ("recompute", 7, 22)])
def test_training_step_gemm_count(path, policy, gemms, flops, memory_policy, monkeypatch):
    """2 experts x 256 rows, H = I = 128: every GEMM of the step is a whole number of tiles on
    both kernel families, so the tensor-core FLOPs issued are exactly the GEMMs' FLOPs. Ideal:
    forward 6 N H I (the gated first GEMM 4, the second 2), backward 12 N H I (dA', dW2: 2 each;
    dW1, dX: 4 each) = 18 N H I in 6 GEMMs -- what "save_h" executes; "recompute" adds the first
    GEMM again: 22 / 18 = 1.22 (the composite backward that also re-ran the second GEMM: 8
    GEMMs, 24 / 18 = 1.33)."""
    monkeypatch.setenv("MOE_EXT_GEMM_PATH", path)
    memory_policy(policy)
    T, H, I, E, k = 256, 128, 128, 2, 2  # k = E: every token on both experts, 256 rows each
    x, w1, w2, weights, order, slot, offsets = make_case(T, H, I, E, k, torch.bfloat16, "cpu")
    leaves = [t.detach().requires_grad_(True) for t in (x, w1, w2, weights)]
    with moe_ext.emu.launch_log() as log:
        y = emu_moe_mlp(*leaves, order, slot, offsets)
        y.backward(torch.randn_like(y))
    ran = [s for s in log if "grouped_gemm" in s["kernel"] and "group_maps" not in s["kernel"]]
    assert len(ran) == gemms, [s["kernel"] for s in log]
    issued = sum(s["wgmma"] * WGMMA_FLOPS + s["mma"] * MMA_FLOPS for s in ran)
    N = T * k
    assert issued == flops * N * H * I, issued / (18 * N * H * I)
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in leaves)


@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_policies_agree(backend, memory_policy):
    """save_h and recompute give the same gradients (the same formulas on the same h, up to
    the rounding of h on the fused path, where save_h's forward runs the activation between
    the GEMMs); under no_grad moe_mlp keeps nothing and runs the fused forward."""
    args = make_case(40, 64, 48, 8, 2, torch.bfloat16, device_of(backend), capacity=12)
    x, w1, w2, weights, order, slot, offsets = args
    f = op(backend, "moe_mlp")
    dy = torch.randn(x.shape).to(x.dtype).to(x.device)
    out = {}
    for policy in ("save_h", "recompute"):
        memory_policy(policy)
        leaves = [t.detach().requires_grad_(True) for t in (x, w1, w2, weights)]
        call = moe_ext.moe_mlp if backend != "emu" else emu_moe_mlp
        y = call(*leaves, order, slot, offsets)
        y.backward(dy)
        out[policy] = (y.detach(), *(t.grad for t in leaves))
    for a, b in zip(out["save_h"], out["recompute"]):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)
    with torch.no_grad():
        torch.testing.assert_close(f(*args), out["save_h"][0], rtol=2e-2, atol=2e-2)


def emu_moe_mlp(*args, activation="swiglu", activation_limit=None):
    """moe_ext.moe_mlp (its memory-policy switch included) on the emulator's namespace."""
    return moe_ext.ops._moe_mlp_on(torch.ops.moe_ext_emu, *args, activation, activation_limit)


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_h_opcheck_and_h(backend):
    """moe_mlp_save_h returns moe_mlp's y and h = x[order // k] @ w1ᵀ (sorted rows)."""
    args = make_case(12, 16, 8, 4, 2, torch.float32, device_of(backend))
    torch.library.opcheck(op(backend, "moe_mlp_save_h"), (*args, "swiglu"))
    x, w1, w2, weights, order, slot, offsets = args
    y, h = op(backend, "moe_mlp_save_h")(*args)
    torch.testing.assert_close(y, op(backend, "moe_mlp")(*args))
    xp = reference.permute(x.cpu(), order.cpu(), slot.cpu(), 2)
    rows = sort_expert(offsets, xp.shape[0])
    ref = torch.einsum("nh,nih->ni", xp, w1.cpu()[rows])
    torch.testing.assert_close(h.cpu(), ref, rtol=1e-5, atol=1e-5)


def test_no_fp32_buffer_as_wide_as_h_cpu():
    """The activation's backward runs on one expert's rows at a time: no fp32 tensor as large
    as h [N, 2I] takes part in the training step's backward (the composite backward made one
    for eager autograd through the activation). Checked through the profiler's record of every
    op's input shapes and dtypes (an fp32 buffer that large would be some op's input); the
    shape makes it larger than every other fp32 tensor of the step ([N, H], [m, 2I] per expert)."""
    T, H, I, E, k = 512, 64, 128, 2, 2
    N = T * k
    args = make_case(T, H, I, E, k, torch.bfloat16, "cpu")
    x, w1, w2, weights, order, slot, offsets = args
    leaves = [t.detach().requires_grad_(True) for t in (x, w1, w2, weights)]
    y = torch.ops.moe_ext.moe_mlp(*leaves, order, slot, offsets, "swiglu")
    dy = torch.randn_like(y)
    acts = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=acts, record_shapes=True) as prof:
        y.backward(dy)
    fp32 = [
        (e.name, shape)
        for e in prof.events()
        for shape, dt in zip(e.input_shapes, e.input_dtypes or [])
        if dt == "float" and shape
    ]
    assert any(name == "aten::silu_backward" for name, _ in fp32)  # the profiler saw the step
    big = [(name, shape) for name, shape in fp32 if math.prod(shape) >= N * 2 * I]
    assert not big, big
    assert all(t.grad is not None for t in leaves)


@pytest.mark.skipif("emu" not in BACKENDS, reason="needs the emulator backend")
@pytest.mark.parametrize("activation, limit", [("swiglu", None), ("swiglu", 0.3), ("gelu", None)])
def test_device_backward_row_pass(activation, limit):
    """The device targets' elementwise steps run as one kernel pass over the sorted rows
    (mlp_backward_rows_kernel): no aten op sees an fp32 tensor of the N sorted rows (the
    chunked composite made [rows, 2I] ones),
    and the gradients match the native CPU op (torch's derivative kernels) to fp32 rounding of
    the bf16 results, dropped rows and the clamped SwiGLU included."""
    args = make_case(40, 32, 24, 4, 2, torch.bfloat16, "cpu", activation, capacity=15)
    dy = torch.randn(args[0].shape, generator=torch.Generator().manual_seed(1)).bfloat16()
    acts = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=acts, record_shapes=True) as prof:
        emu = torch.ops.moe_ext_emu.moe_mlp_backward(dy, *args, activation, limit)
    fp32 = [
        (e.name, shape)
        for e in prof.events()
        for shape, dt in zip(e.input_shapes, e.input_dtypes or [])
        if dt == "float" and len(shape) == 2 and shape[0] == 40 * 2  # a row per assignment
    ]
    assert not fp32, fp32
    cpu = torch.ops.moe_ext.moe_mlp_backward(dy, *args, activation, limit)
    for name, e, c in zip(("dx", "dw1", "dw2", "dweights"), emu, cpu):
        torch.testing.assert_close(e.float(), c.float(), rtol=2e-2, atol=2e-2, msg=name)


@pytest.mark.skipif("emu" not in BACKENDS, reason="needs the emulator backend")
@pytest.mark.parametrize("path, permutes", [("sm80", 1), ("auto", 2)])
def test_dw1_reads_x_through_order(monkeypatch, path, permutes):
    """dW1 = dhᵀ x[order // k] on device targets: the ragged-K GEMM gathers x's rows in its loads
    (GroupedGemmParams.b_gather), so with h saved the backward permutes only dy. Exact on small
    integers (identity activation, unit weights: every product and sum is exact in fp32), dropped
    rows and empty experts included, against the CPU op. Where the Hopper kernel runs (the
    emulator models an sm_90: path auto) x is permuted for its TMA loads instead."""
    from moe_ext import emu

    monkeypatch.setenv("MOE_EXT_GEMM_PATH", path)
    g = torch.Generator().manual_seed(3)
    T, H, I, E, k = 40, 24, 16, 6, 2
    x = torch.randint(-3, 4, (T, H), generator=g).bfloat16()
    w1 = torch.randint(-2, 3, (E, I, H), generator=g).bfloat16()
    w2 = torch.randint(-2, 3, (E, H, I), generator=g).bfloat16()
    ids = torch.randint(0, E - 1, (T, k), generator=g).int()  # expert E-1 stays empty
    ids[:, 1] = (ids[:, 0] + 1) % (E - 1)
    weights = torch.ones(T, k)
    order, slot, offsets = moe_ext.sort_tokens(ids, E, 11)  # capacity: dropped rows
    h = reference.permute(x, order, slot, k).float()
    h = torch.stack([h[i] @ w1[e].float().T for i, e in enumerate(sort_expert(offsets, T * k))])
    h = h.bfloat16()
    dy = torch.randint(-2, 3, (T, H), generator=g).bfloat16()
    args = (dy, x, w1, w2, weights, order, slot, offsets, "identity", None, h)
    with emu.launch_log() as log:
        got = torch.ops.moe_ext_emu.moe_mlp_backward(*args)
    want = torch.ops.moe_ext.moe_mlp_backward(*args)
    assert torch.equal(got[1].float(), want[1].float())  # dW1
    assert [launch["kernel"] for launch in log].count("permute_kernel") == permutes
