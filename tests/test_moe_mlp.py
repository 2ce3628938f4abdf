"""moe_mlp: the fused expert MLP against reference.moe_mlp (fp64 ground truth), on every backend.

On emu (and CUDA) bf16/fp16 take the fused path: x gathered inside the first grouped GEMM's
loads, the (gated) activation in its epilogue, routing weights in the second GEMM's epilogue,
then the combine kernel. fp32 takes the composite path. Accuracy: error vs the fp64 truth
<= 3x the error of the same math done with torch ops at the input dtype (+ an ulp), the
convention of test_grouped_mm.py.
"""

from __future__ import annotations

import pytest
import torch
from conftest import backends_for, device_of, op

import moe_ext
from moe_ext import reference

BACKENDS = backends_for("moe_mlp")
GATED = ("swiglu", "geglu", "geglu_tanh")
ACTIVATIONS = ("swiglu", "geglu", "geglu_tanh", "silu", "gelu", "gelu_tanh", "relu", "identity")


def make_case(
    T,
    H,
    I,
    E,
    k,
    dtype,
    device,
    activation="swiglu",
    capacity=None,
    sentinels=False,
    w1_layout="hf",
    seed=0,
):
    g = torch.Generator().manual_seed(seed)
    rows = 2 * I if activation in GATED else I
    x = torch.randn(T, H, generator=g)
    if w1_layout == "hf":  # gate_up_proj [E, 2I, H]
        w1 = torch.randn(E, rows, H, generator=g) / H**0.5
    else:  # stored [E, H, 2I] (HF is_transposed), passed as a transposed view
        w1 = (torch.randn(E, H, rows, generator=g) / H**0.5).transpose(-2, -1)
    w2 = torch.randn(E, H, I, generator=g) / I**0.5
    logits = torch.randn(T, E, generator=g)
    weights, ids = moe_ext.route(logits, k)
    if sentinels and T > 0:
        ids[::3, -1] = -1  # "not routed here" (expert parallelism)
    order, slot, offsets = moe_ext.sort_tokens(ids, E, capacity)
    dev = lambda t: t.to(device)  # noqa: E731
    return (
        dev(x.to(dtype)),
        dev(w1.to(dtype)),
        dev(w2.to(dtype)),
        dev(weights),
        dev(order),
        dev(slot),
        dev(offsets),
    )


def truth_and_torch_error(args, activation):
    x, w1, w2, weights, order, slot, offsets = (t.cpu() for t in args)
    f64 = [t.double() if t.is_floating_point() else t for t in (x, w1, w2, weights)]
    truth = reference.moe_mlp(*f64, order, slot, offsets, activation)
    same = reference.moe_mlp(x, w1, w2, weights, order, slot, offsets, activation)
    if truth.numel() == 0:
        return truth, 0.0
    return truth, (same.double() - truth).abs().max().item()


def check(out, args, activation):
    x = args[0]
    assert out.dtype == x.dtype and out.shape == x.shape and out.device == x.device
    truth, torch_err = truth_and_torch_error(args, activation)
    if out.numel() == 0:
        return
    err = (out.cpu().double() - truth).abs().max().item()
    ulp = torch.finfo(x.dtype).eps * max(1.0, truth.abs().max().item())
    if x.dtype == torch.float64:  # the reference is the truth: only summation order differs
        ulp *= 1e4
    assert err <= 3 * torch_err + ulp, f"error {err:.3g} vs torch's own {torch_err:.3g}"


def dtypes_for(backend):
    return [torch.bfloat16, torch.float16, torch.float32] + (
        [torch.float64] if backend == "cpu" else []
    )


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_activations(backend, activation):
    args = make_case(40, 64, 48, 8, 2, torch.bfloat16, device_of(backend), activation)
    check(op(backend, "moe_mlp")(*args, activation), args, activation)


@pytest.mark.parametrize(
    "backend,dtype",
    [pytest.param(b, d, id=f"{b}-{str(d)[6:]}") for b in BACKENDS for d in dtypes_for(b)],
)
def test_dtypes(backend, dtype):
    args = make_case(33, 40, 24, 6, 3, dtype, device_of(backend))
    check(op(backend, "moe_mlp")(*args, "swiglu"), args, "swiglu")


# (id, T, H, I, E, k, extra make_case arguments)
EDGE_CASES = [
    ("t0", 0, 32, 16, 4, 2, {}),
    ("one_expert_k1", 20, 32, 16, 1, 1, {}),
    ("capacity_drop", 48, 32, 24, 4, 2, {"capacity": 5}),
    ("capacity_zero", 16, 32, 24, 4, 2, {"capacity": 0}),
    ("sentinels", 30, 32, 24, 4, 2, {"sentinels": True}),
    ("odd_h_unaligned", 25, 37, 20, 5, 2, {}),  # 74-byte rows: element-wise operand loads
    ("w1_transposed_view", 30, 48, 40, 4, 2, {"w1_layout": "t"}),  # N-major gated B
    ("many_experts", 64, 32, 16, 64, 4, {}),  # most experts get 0-4 rows
    ("multi_tile", 160, 96, 80, 2, 2, {}),  # > 128 rows per expert, 2+ n-tiles of the gated GEMM
]


@pytest.mark.parametrize("case", EDGE_CASES, ids=[c[0] for c in EDGE_CASES])
@pytest.mark.parametrize("backend", BACKENDS)
def test_edges(backend, case):
    _, T, H, I, E, k, extra = case
    args = make_case(T, H, I, E, k, torch.bfloat16, device_of(backend), **extra)
    check(op(backend, "moe_mlp")(*args, "swiglu"), args, "swiglu")


# Both kernel families run the fused path on emu: MOE_EXT_GEMM_PATH=sm80 forces the Ampere
# kernels, sm90 the Hopper ones (gathered cp.async A + TMA B + wgmma for the first GEMM, TMA A for
# the second) -- an error if either GEMM were not eligible, so a pass means the Hopper kernel ran.
# (id, T, H, I, E, k, dtype, activation, extra make_case arguments); H, I multiples of 8 (TMA).
PATH_CASES = [
    ("swiglu_multi_tile", 160, 96, 80, 2, 2, torch.bfloat16, "swiglu", {}),
    ("geglu_fp16", 40, 64, 48, 8, 2, torch.float16, "geglu", {}),
    ("gelu_not_gated", 40, 64, 48, 8, 2, torch.bfloat16, "gelu", {}),
    ("many_experts_k_tail", 64, 72, 16, 64, 4, torch.bfloat16, "swiglu", {}),  # K = 72: tail 8
    ("capacity_drop", 48, 32, 24, 4, 2, torch.bfloat16, "swiglu", {"capacity": 5}),
    ("sentinels", 30, 32, 24, 4, 2, torch.bfloat16, "swiglu", {"sentinels": True}),
    ("one_expert_k1", 20, 32, 16, 1, 1, torch.bfloat16, "swiglu", {}),
]


DEVICE_BACKENDS = [b for b in BACKENDS if b in ("emu", "cuda")]


@pytest.mark.parametrize("path", ["sm80", "sm90", "sm90_cluster"])
@pytest.mark.parametrize("case", PATH_CASES, ids=[c[0] for c in PATH_CASES])
@pytest.mark.parametrize("backend", DEVICE_BACKENDS)
def test_fused_path_per_kernel_family(backend, case, path, monkeypatch):
    """sm90_cluster: the Hopper kernels in 2x2 clusters (MOE_EXT_GEMM_CONFIG=sm90_cluster)."""
    hopper = path.startswith("sm90")
    if backend == "cuda" and hopper and torch.cuda.get_device_capability()[0] != 9:
        pytest.skip("the Hopper kernels need an sm_90 GPU")
    monkeypatch.setenv("MOE_EXT_GEMM_PATH", "sm90" if hopper else path)
    if path == "sm90_cluster":
        monkeypatch.setenv("MOE_EXT_GEMM_CONFIG", "sm90_cluster")
    _, T, H, I, E, k, dtype, activation, extra = case
    args = make_case(T, H, I, E, k, dtype, device_of(backend), activation, **extra)
    check(op(backend, "moe_mlp")(*args, activation), args, activation)


@pytest.mark.skipif("emu" not in BACKENDS, reason="needs the emulator backend")
@pytest.mark.parametrize("path", ["sm80", "sm90"])
def test_out_of_range_order_entry_is_a_zero_row(path, monkeypatch):
    """An order entry outside [0, T*k) (sort_tokens never makes one; a caller's bad order could)
    is read as a zero row by the gathering GEMM and scales by 0 in the second: the emulator's
    bounds checker would raise on any out-of-bounds read, and the assignment contributes 0."""
    monkeypatch.setenv("MOE_EXT_GEMM_PATH", path)
    x, w1, w2, weights, order, slot, offsets = make_case(24, 32, 16, 4, 2, torch.bfloat16, "cpu")
    bad = order.clone()
    lost = int(order[3])
    bad[3] = 10**6
    y = torch.ops.moe_ext_emu.moe_mlp(x, w1, w2, weights, bad, slot, offsets, "swiglu")
    kept = weights.clone().view(-1)
    kept[lost] = 0
    args = (x, w1, w2, kept.view_as(weights), order, slot, offsets)
    check(y, args, "swiglu")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_cpu_experts_on_threads_same_bits_any_thread_count(dtype):
    """The CPU op runs experts on the intra-op threads (csrc/cpu/group_schedule.h): the result
    is bit-identical for 1 and 2+ threads, and the worker threads keep the caller's dispatch
    state (under no_grad with weights that require grad, as in inference with nn.Parameters,
    and under autograd)."""
    args = make_case(96, 32, 16, 16, 4, dtype, "cpu", capacity=30)
    x, w1, w2, weights, order, slot, offsets = args
    w1, w2 = w1.requires_grad_(True), w2.requires_grad_(True)
    f = lambda: torch.ops.moe_ext.moe_mlp(x, w1, w2, weights, order, slot, offsets)  # noqa: E731
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.no_grad():
            one = f()
        torch.set_num_threads(max(threads, 2))
        with torch.no_grad():
            many = f()
        grad_out = f()
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, many) and torch.equal(grad_out.detach(), many)
    check(many, (x, w1.detach(), w2.detach(), weights, order, slot, offsets), "swiglu")
    grad_out.float().sum().backward()
    assert w1.grad is not None and w2.grad is not None


def test_cpu_rejects_out_of_range_order_entry():
    x, w1, w2, weights, order, slot, offsets = make_case(24, 32, 16, 4, 2, torch.bfloat16, "cpu")
    bad = order.clone()
    bad[3] = 48
    with pytest.raises(RuntimeError, match=r"moe_ext.moe_mlp: order\[3\] = 48 is out of range"):
        torch.ops.moe_ext.moe_mlp(x, w1, w2, weights, bad, slot, offsets, "swiglu")


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_composite_of_ops(backend):
    """The fused path equals permute -> grouped_mm -> act -> grouped_mm -> unpermute on the same
    backend up to the one extra rounding of the weighted rows (bf16)."""
    ops = getattr(torch.ops, "moe_ext_emu" if backend == "emu" else "moe_ext")
    x, w1, w2, weights, order, slot, offsets = make_case(
        50, 64, 32, 8, 2, torch.bfloat16, device_of(backend)
    )
    y = ops.moe_mlp(x, w1, w2, weights, order, slot, offsets, "swiglu")
    h = ops.grouped_mm(ops.permute(x, order, slot, 2), w1.transpose(-2, -1), offsets).float()
    a = (torch.nn.functional.silu(h[:, :32]) * h[:, 32:]).to(x.dtype)
    z = ops.grouped_mm(a, w2.transpose(-2, -1), offsets)
    expect = ops.unpermute(z, order, slot, weights)
    torch.testing.assert_close(y, expect, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_deterministic(backend):
    args = make_case(64, 64, 32, 8, 4, torch.bfloat16, device_of(backend))
    f = op(backend, "moe_mlp")
    first = f(*args)
    assert torch.equal(f(*args), first)


@pytest.mark.parametrize("activation", ["swiglu", "gelu"])
@pytest.mark.parametrize(
    "backend,dtype",
    [
        pytest.param(b, d, id=f"{b}-{str(d)[6:]}")
        for b in BACKENDS
        for d in (torch.float32, torch.bfloat16)
    ],
)
def test_backward(backend, dtype, activation):
    """Grads to x, w1, w2, weights vs autograd through reference.moe_mlp (fp64 for the truth;
    bf16 within 3x the error of autograd through the reference at bf16, + ulps)."""
    args = make_case(24, 32, 16, 4, 2, dtype, device_of(backend), activation, capacity=10)
    x, w1, w2, weights, order, slot, offsets = args
    dy = torch.randn(x.shape).to(dtype).to(x.device)

    def grads(fn, cast):
        leaves = [cast(t).detach().requires_grad_(True) for t in (x, w1, w2, weights)]
        out = fn(
            *leaves,
            order.to(leaves[0].device),
            slot.to(leaves[0].device),
            offsets.to(leaves[0].device),
            activation,
        )
        (out.double() * cast(dy).double()).sum().backward()
        return [t.grad for t in leaves]

    ours = grads(op(backend, "moe_mlp"), lambda t: t)
    truth = grads(reference.moe_mlp, lambda t: t.cpu().double())
    same = grads(reference.moe_mlp, lambda t: t.cpu())
    for name, o, t, s in zip(("x", "w1", "w2", "weights"), ours, truth, same):
        assert o.shape == t.shape and torch.isfinite(o).all(), name
        err = (o.cpu().double() - t).abs().max().item()
        base = (s.double() - t).abs().max().item()
        ulp = torch.finfo(o.dtype).eps * max(1.0, t.abs().max().item())
        assert err <= 3 * base + 4 * ulp, f"d{name}: error {err:.3g} vs torch's {base:.3g}"


def test_gradcheck_fp64_cpu():
    args = make_case(6, 5, 3, 3, 2, torch.float64, "cpu", capacity=3)
    x, w1, w2, weights, order, slot, offsets = args
    leaves = [t.detach().requires_grad_(True) for t in (x, w1, w2, weights.double())]
    f = lambda *ts: torch.ops.moe_ext.moe_mlp(*ts, order, slot, offsets, "swiglu")  # noqa: E731
    assert torch.autograd.gradcheck(f, leaves)


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend):
    args = make_case(12, 16, 8, 4, 2, torch.float32, device_of(backend))
    torch.library.opcheck(op(backend, "moe_mlp"), (*args, "swiglu"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_errors_name_the_argument(backend):
    x, w1, w2, weights, order, slot, offsets = make_case(
        8, 16, 8, 4, 2, torch.float32, device_of(backend)
    )
    f = op(backend, "moe_mlp")
    with pytest.raises(RuntimeError, match="activation must be one of"):
        f(x, w1, w2, weights, order, slot, offsets, "tanh")
    with pytest.raises(RuntimeError, match="w2 must be"):
        f(x, w1, w2[:, :, :4], weights, order, slot, offsets)
    with pytest.raises(RuntimeError, match="w1 must have x's dtype"):
        f(x, w1.double(), w2, weights, order, slot, offsets)
    with pytest.raises(RuntimeError, match="order must have"):
        f(x, w1, w2, weights, order[:-1], slot, offsets)


def test_compile_fullgraph_no_recompile():
    torch._dynamo.reset()
    f = torch.compile(moe_ext.moe_mlp, fullgraph=True, dynamic=True)
    for T in (8, 13, 21):
        args = make_case(T, 16, 8, 4, 2, torch.float32, "cpu")
        with torch._dynamo.config.patch(error_on_recompile=T > 13):
            torch.testing.assert_close(f(*args), torch.ops.moe_ext.moe_mlp(*args))
