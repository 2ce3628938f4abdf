"""unpermute_backward (unpermute's gradients in one pass) on every backend, against the torch
formulation: grad_yp[i] = w[order[i]] * grad_y[order[i] // k], grad_weights[a] =
<grad_y[a // k], yp[slot[a]]>, zero for dropped assignments. Plus: bit-identical reruns,
opcheck, gradcheck of unpermute through it, and the kernel's memory-traffic proxies on the
emulator (bytes within 5 % of ideal, fully coalescible).
"""

from __future__ import annotations

import pytest
import torch
from conftest import backends_for, device_of, make_ids, make_weights, op, reference
from test_permutation_props import _check_traffic

import moe_ext

BACKENDS = backends_for("unpermute_backward")


def torch_grads(grad_y, yp, order, slot, weights):
    k = weights.shape[1]
    acc = torch.float64 if yp.dtype == torch.float64 else torch.float32
    a = order.long()
    kept = (slot.long()[a] >= 0).unsqueeze(1)
    dy_rows = grad_y.to(acc)[a // k] * kept
    w_rows = weights.reshape(-1).to(acc)[a].unsqueeze(1)
    grad_yp = (dy_rows * w_rows).to(yp.dtype)
    dots = (dy_rows * yp.to(acc)).sum(-1)
    grad_w = torch.zeros(weights.numel(), dtype=acc)
    grad_w[a] = dots
    return grad_yp, grad_w.view(weights.shape).to(weights.dtype)


def make_case(T, k, E, H, dtype, capacity=None, sentinels=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = make_ids(T, k, E, "uniform", generator=gen)
    if sentinels and T:
        ids[::3, 0] = -1
    order, slot, _ = reference.sort_tokens(ids, E, capacity)
    N = T * k
    yp = torch.randn(N, H, generator=gen).to(dtype)
    grad_y = torch.randn(T, H, generator=gen).to(dtype)
    w = make_weights(T, k, generator=gen)
    return grad_y, yp, order, slot, w


CASES = [
    ("h1", 9, 2, 4, 1, {}),
    ("h7", 9, 2, 4, 7, {}),
    ("h8", 9, 3, 5, 8, {}),
    ("h200", 12, 2, 8, 200, {}),
    ("t0", 0, 2, 4, 16, {}),
    ("capacity", 20, 2, 4, 24, {"capacity": 3}),
    ("sentinels", 15, 2, 4, 24, {"sentinels": True}),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_torch(backend, case, dtype):
    _, T, k, E, H, extra = case
    grad_y, yp, order, slot, w = make_case(T, k, E, H, dtype, **extra)
    dev = device_of(backend)
    gyp, gw = op(backend, "unpermute_backward")(
        grad_y.to(dev), yp.to(dev), order.to(dev), slot.to(dev), w.to(dev)
    )
    ref_yp, ref_w = torch_grads(grad_y, yp, order, slot, w)
    assert gyp.dtype == yp.dtype and gw.dtype == w.dtype
    assert torch.equal(gyp.cpu(), ref_yp)  # one product, one rounding: exact
    tol = dict(rtol=1e-5, atol=1e-5 * max(1, H) ** 0.5)
    torch.testing.assert_close(gw.cpu(), ref_w, **tol)
    dropped = slot.view(-1) < 0
    assert (gw.view(-1).cpu()[dropped] == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_bit_identical_reruns(backend):
    args = [t.to(device_of(backend)) for t in make_case(33, 4, 8, 96, torch.bfloat16)]
    first = op(backend, "unpermute_backward")(*args)
    second = op(backend, "unpermute_backward")(*args)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend):
    args = [t.to(device_of(backend)) for t in make_case(10, 2, 4, 16, torch.float32, capacity=4)]
    torch.library.opcheck(op(backend, "unpermute_backward"), tuple(args))


def test_gradcheck_unpermute_fp64():
    _, yp, order, slot, w = make_case(7, 2, 3, 5, torch.float64, capacity=3)
    yp = yp.requires_grad_(True)
    w = w.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: moe_ext.unpermute(a, order, slot, b), (yp, w))


@pytest.mark.skipif("emu" not in BACKENDS, reason="needs the emulator")
def test_out_of_range_order_stays_in_bounds_emu(monkeypatch):
    """Unchecked on the device (no MOE_EXT_DEBUG): a sorted row whose order entry is outside
    [0, N) gets a zero grad_yp row, and the assignment it displaced gets no grad_weights entry
    (0); everything else is bit-identical to the valid call. Any out-of-bounds access would
    raise in the emulator. The CPU op rejects the same input, naming the entry."""
    monkeypatch.delenv("MOE_EXT_DEBUG", raising=False)
    grad_y, yp, order, slot, w = make_case(12, 2, 4, 24, torch.float32, capacity=4, seed=3)
    ok_yp, ok_w = torch.ops.moe_ext_emu.unpermute_backward(grad_y, yp, order, slot, w)
    bad_rows = [1, 5, 22]
    bad = order.clone()
    bad[bad_rows] = torch.tensor([24, -7, 2**31 - 1], dtype=torch.int32)
    gyp, gw = torch.ops.moe_ext_emu.unpermute_backward(grad_y, yp, bad, slot, w)
    ok_yp[bad_rows] = 0
    ok_w.view(-1)[order[bad_rows].long()] = 0
    assert torch.equal(gyp, ok_yp) and torch.equal(gw, ok_w)
    with pytest.raises(RuntimeError, match=r"unpermute_backward: order\[1\] = 24 is out of range"):
        torch.ops.moe_ext.unpermute_backward(grad_y, yp, bad, slot, w)


@pytest.mark.skipif("emu" not in BACKENDS, reason="needs the emulator")
def test_kernel_traffic():
    """Every sorted row reads its grad_y row and its yp row once and writes its grad_yp row;
    per row: order, slot[order], the fp32 weight read, the fp32 grad weight written."""
    T, H, k, E = 64, 4096, 2, 8
    grad_y, yp, order, slot, w = make_case(T, k, E, H, torch.bfloat16)
    torch.ops.moe_ext_emu.unpermute_backward(grad_y, yp, order, slot, w)
    stats = moe_ext.emu.last_launch_stats()
    N, rows = T * k, T * k * H * 2
    _check_traffic(stats, ideal=3 * rows + N * (4 + 4 + 4 + 4), floor=3 * rows)
