"""moe_ext.sort_tokens / permute / unpermute: grouping assignments by expert and back.

sort_tokens is integer work, compared exactly with reference.sort_tokens and also checked
against the contract's invariants directly (so a reference bug cannot hide an op bug). permute
is a copy (exact); unpermute accumulates in fp32 in j order (per-dtype tolerance). Backward
formulas are checked against DESIGN.md's closed forms and with fp64 gradcheck.
"""

from __future__ import annotations

import pytest
import torch
from conftest import ROUTINGS, TOL, backends_for, device_of, make_ids, make_weights, op, reference

import moe_ext

F32, BF16, F16, F64 = torch.float32, torch.bfloat16, torch.float16, torch.float64
SORT_BACKENDS = backends_for("sort_tokens")
PERMUTE_BACKENDS = backends_for("permute")
UNPERMUTE_BACKENDS = backends_for("unpermute")


def run(backend, name, *args):
    """Call op `name` on `backend` (tensors moved to its device), results back on the CPU."""
    dev = device_of(backend)
    out = op(backend, name)(*[a.to(dev) if isinstance(a, torch.Tensor) else a for a in args])
    if isinstance(out, tuple):
        assert all(o.device.type == dev for o in out)
        return tuple(o.cpu() for o in out)
    assert out.device.type == dev
    return out.cpu()


def drop_some(ids, frac=0.2):
    """Mark a random fraction of the assignments -1 ("not routed here", expert parallelism)."""
    ids = ids.clone()
    ids[torch.rand(ids.shape) < frac] = -1
    return ids


def check_invariants(ids, E, capacity, order, slot, offsets):
    """The contract of sort_tokens, checked from first principles."""
    flat = ids.reshape(-1).long()
    N = flat.numel()
    assert order.dtype == slot.dtype == offsets.dtype == torch.int32
    assert order.shape == (N,) and slot.shape == (N,) and offsets.shape == (E,)
    o, s, off = order.long(), slot.long(), offsets.long()
    # order is a permutation of 0..N-1
    assert torch.equal(o.sort().values, torch.arange(N))
    # kept: id != -1 and among the expert's first `capacity` assignments in flat order
    valid = flat >= 0
    if capacity is None:
        kept = valid
    else:
        key = torch.where(valid, flat, torch.full_like(flat, E))
        by_key = torch.sort(key, stable=True).indices
        n_per = torch.bincount(key, minlength=E + 1)
        first = torch.cumsum(n_per, 0) - n_per  # first sorted position of each key
        rank = torch.empty_like(flat)
        rank[by_key] = torch.arange(N) - first[key[by_key]]
        kept = valid & (rank < capacity)
    counts = torch.bincount(flat[kept], minlength=E)
    if capacity is not None:
        assert (counts <= capacity).all()
    assert torch.equal(s >= 0, kept), "kept set differs from the contract"
    # offsets are the cumulative row ends of the kept counts
    assert (off.diff() >= 0).all()
    assert torch.equal(off.diff(prepend=torch.zeros(1, dtype=torch.long)), counts)
    nk = int(kept.sum())
    assert off[-1] == nk
    # slot is the inverse of order on kept assignments, -1 on dropped ones
    assert torch.equal(s[o[:nk]], torch.arange(nk))
    assert (s[o[nk:]] == -1).all()
    # rows of expert e hold assignments to e, in flat (stable) order
    assert torch.equal(flat[o[:nk]], torch.repeat_interleave(torch.arange(E), counts))
    starts = torch.repeat_interleave(off - counts, counts)
    same_expert = torch.arange(nk) > starts
    assert (o[:nk].diff() > 0)[same_expert[1:]].all()
    # dropped assignments come after all kept rows, in flat order
    assert (o[nk:].diff() > 0).all()


SORT_SHAPES = [
    # (T, E, k)
    (0, 8, 2),
    (0, 1, 1),
    (1, 1, 1),
    (1, 7, 7),
    (1, 256, 8),
    (3, 7, 2),
    (3, 8, 8),
    (3, 256, 1),
    (1000, 1, 1),
    (1000, 7, 2),
    (1000, 7, 7),
    (1000, 8, 2),
    (1000, 256, 8),
]


@pytest.mark.parametrize("backend", SORT_BACKENDS)
@pytest.mark.parametrize("kind", ROUTINGS)
@pytest.mark.parametrize("T,E,k", SORT_SHAPES)
@pytest.mark.parametrize("id_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("with_minus1", [False, True])
def test_sort_tokens(backend, kind, T, E, k, id_dtype, with_minus1):
    ids = make_ids(T, k, E, kind)
    if with_minus1:
        ids = drop_some(ids)
    ids = ids.to(id_dtype)
    avg = max(1, (T * k) // E)  # a capacity that binds for the busier experts
    for capacity in (None, 0, 1, avg):
        got = run(backend, "sort_tokens", ids, E, capacity)
        ref = reference.sort_tokens(ids, E, capacity)
        for name, g, r in zip(("order", "slot", "offsets"), got, ref):
            assert torch.equal(g, r), f"{name} differs (capacity={capacity})"
        check_invariants(ids, E, capacity, *got)


@pytest.mark.parametrize("backend", SORT_BACKENDS)
def test_sort_tokens_all_dropped_and_defaults(backend):
    # every id -1: no expert owns any row, all rows are dropped, in flat order
    ids = torch.full((5, 2), -1, dtype=torch.int32)
    order, slot, offsets = run(backend, "sort_tokens", ids, 4)
    assert torch.equal(order, torch.arange(10, dtype=torch.int32))
    assert (slot == -1).all() and (offsets == 0).all()
    # capacity defaults to None (no drops); the Python wrapper is the same op
    ids = make_ids(50, 2, 8, "skewed").to(device_of(backend))
    a = op(backend, "sort_tokens")(ids, 8)
    for g, r in zip(a, reference.sort_tokens(ids.cpu(), 8)):
        assert torch.equal(g.cpu(), r)
    if backend != "emu":
        for g, r in zip(moe_ext.sort_tokens(ids, 8), a):
            assert torch.equal(g, r)


@pytest.mark.parametrize("backend", SORT_BACKENDS)
@pytest.mark.parametrize("kind", ["uniform", "skewed"])
def test_sort_tokens_large(backend, kind):
    # N = 2^20 assignments over 1024 experts: many radix passes / blocks, hot experts.
    T, k, E = 1 << 17, 8, 1024
    ids = make_ids(T, k, E, kind)
    ids[:1000] = -1  # a block of "not here" tokens too
    for capacity in (None, 600):
        got = run(backend, "sort_tokens", ids, E, capacity)
        ref = reference.sort_tokens(ids, E, capacity)
        for name, g, r in zip(("order", "slot", "offsets"), got, ref):
            assert torch.equal(g, r), f"{name} differs (capacity={capacity})"
        check_invariants(ids, E, capacity, *got)


@pytest.mark.parametrize("backend", SORT_BACKENDS)
def test_sort_tokens_deterministic(backend):
    ids = drop_some(make_ids(3000, 4, 60, "skewed"))
    a = run(backend, "sort_tokens", ids, 60, 100)
    b = run(backend, "sort_tokens", ids, 60, 100)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


# --- permute -------------------------------------------------------------------------------------


def routing(T, E, k, kind="uniform", capacity=None, minus1=False):
    """ids plus the reference sort of them (order, slot, offsets)."""
    ids = make_ids(T, k, E, kind)
    if minus1:
        ids = drop_some(ids)
    return ids, reference.sort_tokens(ids, E, capacity)


PERM_CASES = [
    # (T, E, k, kind, capacity, minus1)
    (0, 8, 2, "uniform", None, False),
    (1, 1, 1, "uniform", None, False),
    (3, 7, 7, "uniform", None, False),
    (3, 8, 2, "all_to_one", 1, False),  # expert 0 keeps 1 of 3: drops
    (200, 8, 2, "skewed", 30, True),  # capacity and -1 drops
    (200, 256, 8, "empty_experts", None, True),
]


@pytest.mark.parametrize("backend", PERMUTE_BACKENDS)
@pytest.mark.parametrize("dtype", [F32, BF16, F16, F64])
@pytest.mark.parametrize("H", [1, 7, 64, 4096])
@pytest.mark.parametrize("case", PERM_CASES, ids=lambda c: "-".join(map(str, c)))
def test_permute(backend, dtype, H, case):
    T, E, k, kind, capacity, minus1 = case
    if H == 4096:
        T = min(T, 50)  # keep the big-row cases cheap
    ids, (order, slot, offsets) = routing(T, E, k, kind, capacity, minus1)
    x = torch.randn(T, H, dtype=F64).to(dtype)
    xp = run(backend, "permute", x, order, slot, k)
    assert xp.dtype == dtype and xp.shape == (T * k, H)
    assert torch.equal(xp, reference.permute(x, order, slot, k))  # a copy: bit exact
    # dropped rows (after offsets[-1]) are zero
    nk = int(offsets[-1]) if T else 0
    assert (xp[nk:] == 0).all()


@pytest.mark.parametrize("backend", PERMUTE_BACKENDS)
def test_permute_special_values(backend):
    # a copy must carry inf/nan/-0.0 bit for bit on kept rows
    ids, (order, slot, _) = routing(16, 8, 2, "uniform")
    x = torch.randn(16, 9)
    x[3, 1], x[5, 2], x[7, 3] = float("inf"), float("nan"), -0.0
    xp = run(backend, "permute", x, order, slot, 2)
    ref = x[order.long() // 2]
    assert torch.equal(xp.view(torch.int32), ref.view(torch.int32))


# --- unpermute -----------------------------------------------------------------------------------

UNPERM_DTYPES = [
    # (yp dtype, weights dtype)
    (F32, F32),
    (BF16, F32),
    (BF16, BF16),
    (F16, F32),
    (F16, F16),
    (F32, BF16),
    (F64, F64),
]


@pytest.mark.parametrize("backend", UNPERMUTE_BACKENDS)
@pytest.mark.parametrize("dtypes", UNPERM_DTYPES, ids=lambda d: f"{d[0]}-{d[1]}")
@pytest.mark.parametrize("H", [1, 7, 64, 4096])
@pytest.mark.parametrize("case", PERM_CASES, ids=lambda c: "-".join(map(str, c)))
def test_unpermute(backend, dtypes, H, case):
    T, E, k, kind, capacity, minus1 = case
    ydt, wdt = dtypes
    if H == 4096:
        T = min(T, 50)
    ids, (order, slot, offsets) = routing(T, E, k, kind, capacity, minus1)
    yp = torch.randn(T * k, H, dtype=F64).to(ydt)
    w = make_weights(T, k, wdt)
    y = run(backend, "unpermute", yp, order, slot, w)
    assert y.dtype == ydt and y.shape == (T, H)
    ref = reference.unpermute(yp, order, slot, w)
    tol = TOL[ydt] if ydt != F32 else dict(atol=1e-6, rtol=1e-6)  # same fp32 sums
    torch.testing.assert_close(y, ref, **tol)
    # a token whose assignments are all dropped gets exactly zero
    gone = (slot.view(T, k) < 0).all(1)
    assert (y[gone] == 0).all()


@pytest.mark.parametrize("backend", UNPERMUTE_BACKENDS)
def test_unpermute_fp32_accumulation(backend):
    # bf16 rows whose weighted sum cancels: a bf16 accumulator would lose it, fp32 keeps it
    T, k = 4, 3
    order = torch.arange(T * k, dtype=torch.int32)
    slot = order.clone()
    yp = torch.tensor([[256.0], [1.0], [-256.0]], dtype=BF16).repeat(T, 1)
    w = torch.ones(T, k)
    y = run(backend, "unpermute", yp, order, slot, w)
    assert torch.equal(y, torch.ones(T, 1, dtype=BF16))


@pytest.mark.parametrize("backend", sorted(set(PERMUTE_BACKENDS) & set(UNPERMUTE_BACKENDS)))
def test_permute_unpermute_roundtrip(backend):
    # with weights 1 and k=1 and no drops, unpermute(permute(x)) == x exactly
    ids, (order, slot, _) = routing(300, 16, 1, "skewed")
    x = torch.randn(300, 33)
    xp = run(backend, "permute", x, order, slot, 1)
    y = run(backend, "unpermute", xp, order, slot, torch.ones(300, 1))
    assert torch.equal(y, x)
    if backend != "emu":
        dev = device_of(backend)
        o, s = order.to(dev), slot.to(dev)
        assert torch.equal(moe_ext.permute(x.to(dev), o, s, 1).cpu(), xp)
        ones = torch.ones(300, 1, device=dev)
        assert torch.equal(moe_ext.unpermute(xp.to(dev), o, s, ones).cpu(), y)


@pytest.mark.parametrize("backend", sorted(set(PERMUTE_BACKENDS) & set(UNPERMUTE_BACKENDS)))
def test_permute_unpermute_deterministic(backend):
    # forward and backward bit-identical across two calls
    T, E, k = 500, 16, 4
    ids, (order, slot, _) = routing(T, E, k, "skewed", capacity=150, minus1=True)
    x0 = torch.randn(T, 64, dtype=BF16)
    w0 = make_weights(T, k, F32)
    dy = torch.randn(T, 64, dtype=BF16)
    dev = device_of(backend)
    results = []
    for _ in range(2):
        x = x0.to(dev).requires_grad_()
        w = w0.to(dev).requires_grad_()
        xp = op(backend, "permute")(x, order.to(dev), slot.to(dev), k)
        y = op(backend, "unpermute")(xp, order.to(dev), slot.to(dev), w)
        y.backward(dy.to(dev))
        results.append([t.detach().cpu() for t in (xp, y, x.grad, w.grad)])
    for a, b in zip(*results):
        assert torch.equal(a, b)


# --- malformed order / slot ---------------------------------------------------------------------
# Index values are checked on the CPU op always, on the device ops only under MOE_EXT_DEBUG=1
# (a check would sync). Unchecked, the kernels must still stay in bounds: an order entry outside
# [0, N) gives a zero row (like a dropped one), a slot entry >= N or < -1 contributes nothing.
# Any out-of-bounds access on the emulator raises, so "ran at all" is the bounds check.

BAD_ORDER_ROWS = {1: 10, 4: -3, 7: 2**31 - 1}  # sorted row -> bad assignment (N = 10)
BAD_SLOTS = {3: 10, 6: 2**31 - 1, 8: -5}  # assignment -> bad sorted row


def malformed_case():
    """T=5, k=2 (N=10) with one over-capacity drop; exact-valued rows and weights, so that
    fp32 sums are exact in any order and results compare bit for bit with the reference."""
    T, k, E = 5, 2, 4
    ids = torch.tensor([[0, 1], [0, 2], [0, 3], [1, 2], [3, 1]], dtype=torch.int32)
    order, slot, _ = reference.sort_tokens(ids, E, 2)  # expert 0 keeps 2 of its 3
    x = torch.randint(-8, 8, (T, 24)).float()
    w = torch.tensor([0.5, 0.25, 1.0, 2.0, 0.75, 0.125, 1.5, 0.5, 0.25, 0.25]).view(T, k)
    return x, order, slot, w, k


def corrupt(t, bad):
    t = t.clone()
    for i, v in bad.items():
        t[i] = v
    return t


@pytest.mark.skipif("emu" not in PERMUTE_BACKENDS, reason="needs the emulator")
def test_permute_out_of_range_order_zero_rows_emu(monkeypatch):
    monkeypatch.delenv("MOE_EXT_DEBUG", raising=False)
    x, order, slot, _, k = malformed_case()
    xp = torch.ops.moe_ext_emu.permute(x, corrupt(order, BAD_ORDER_ROWS), slot, k)
    expected = reference.permute(x, order, slot, k)
    expected[list(BAD_ORDER_ROWS)] = 0
    assert torch.equal(xp, expected)
    assert (xp[list(BAD_ORDER_ROWS)] == 0).all() and xp.abs().sum() > 0


@pytest.mark.skipif("emu" not in UNPERMUTE_BACKENDS, reason="needs the emulator")
def test_unpermute_out_of_range_slot_contributes_nothing_emu(monkeypatch):
    monkeypatch.delenv("MOE_EXT_DEBUG", raising=False)
    x, order, slot, w, k = malformed_case()
    yp = reference.permute(x, order, slot, k) + 1  # dropped rows nonzero too: must not leak
    y = torch.ops.moe_ext_emu.unpermute(yp, order, corrupt(slot, BAD_SLOTS), w)
    # the bad assignments count as dropped (slot -1); all others exactly as the reference
    expected = reference.unpermute(yp, order, corrupt(slot, dict.fromkeys(BAD_SLOTS, -1)), w)
    assert torch.equal(y, expected)


@pytest.mark.parametrize(
    "name,bad,pattern",
    [
        ("permute", "order", r"moe_ext\.permute: order\[1\] = 10 is out of range \[0, 10\)"),
        ("unpermute", "order", r"moe_ext\.unpermute: order\[1\] = 10 is out of range \[0, 10\)"),
        ("unpermute", "slot", r"moe_ext\.unpermute: slot\[3\] = 10 is out of range \[-1, 10\)"),
    ],
)
def test_out_of_range_indices_raise_on_cpu(name, bad, pattern):
    x, order, slot, w, k = malformed_case()
    if bad == "order":
        order = corrupt(order, BAD_ORDER_ROWS)
    else:
        slot = corrupt(slot, BAD_SLOTS)
    args = (x, order, slot, k) if name == "permute" else (x.repeat(k, 1), order, slot, w)
    with pytest.raises(RuntimeError, match=pattern):
        op("cpu", name)(*args)


# --- backward -----------------------------------------------------------------------------------

GRAD_ROUTINGS = [
    # (T, E, k, kind, capacity, minus1)
    (6, 4, 2, "uniform", None, False),
    (6, 4, 2, "all_to_one", 2, False),  # expert 0 over capacity
    (7, 5, 3, "skewed", 3, True),  # capacity and -1 drops
    (1, 3, 3, "uniform", None, False),
]


@pytest.mark.parametrize("case", GRAD_ROUTINGS, ids=lambda c: "-".join(map(str, c)))
def test_permute_gradcheck(case):
    T, E, k, kind, capacity, minus1 = case
    _, (order, slot, _) = routing(T, E, k, kind, capacity, minus1)
    x = torch.randn(T, 5, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: op("cpu", "permute")(x, order, slot, k), (x,))


@pytest.mark.parametrize("case", GRAD_ROUTINGS, ids=lambda c: "-".join(map(str, c)))
def test_unpermute_gradcheck(case):
    T, E, k, kind, capacity, minus1 = case
    _, (order, slot, _) = routing(T, E, k, kind, capacity, minus1)
    yp = torch.randn(T * k, 5, dtype=F64, requires_grad=True)
    w = make_weights(T, k, F64).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda yp, w: op("cpu", "unpermute")(yp, order, slot, w), (yp, w)
    )


def _closed_form_grads(order, slot, k, dxp, dy, yp, w):
    """DESIGN.md's backward formulas, written out with loops over the assignments."""
    T = w.shape[0]
    dx = torch.zeros(T, dxp.shape[1], dtype=torch.float64)
    dyp = torch.zeros_like(yp, dtype=torch.float64)
    dw = torch.zeros(T, k, dtype=torch.float64)
    for t in range(T):
        for j in range(k):
            s = int(slot[t * k + j])
            if s >= 0:
                dx[t] += dxp[s].double()  # dx[t] = sum_j dxp[slot[t*k+j]]
                dw[t, j] = (dy[t].double() * yp[s].double()).sum()  # <dy[t], yp[slot]>
    for i in range(order.numel()):
        f = int(order[i])
        if slot[f] >= 0:  # dyp[i] = w[order[i]] * dy[order[i] // k], 0 if dropped
            dyp[i] = w.reshape(-1)[f].double() * dy[f // k].double()
    return dx, dyp, dw


@pytest.mark.parametrize("backend", sorted(set(PERMUTE_BACKENDS) & set(UNPERMUTE_BACKENDS)))
@pytest.mark.parametrize("dtypes", [(F32, F32), (BF16, F32), (BF16, BF16)], ids=str)
@pytest.mark.parametrize("case", GRAD_ROUTINGS + [(40, 8, 2, "skewed", 8, True)], ids=str)
def test_backward_closed_form(backend, dtypes, case):
    T, E, k, kind, capacity, minus1 = case
    xdt, wdt = dtypes
    _, (order, slot, _) = routing(T, E, k, kind, capacity, minus1)
    dev = device_of(backend)
    o, s = order.to(dev), slot.to(dev)
    x = torch.randn(T, 24).to(xdt).to(dev).requires_grad_()
    yp = torch.randn(T * k, 24).to(xdt).to(dev).requires_grad_()
    w = make_weights(T, k, wdt).to(dev).requires_grad_()
    dxp = torch.randn(T * k, 24).to(xdt)
    dy = torch.randn(T, 24).to(xdt)
    op(backend, "permute")(x, o, s, k).backward(dxp.to(dev))
    op(backend, "unpermute")(yp, o, s, w).backward(dy.to(dev))
    dx, dyp, dw = _closed_form_grads(order, slot, k, dxp, dy, yp.detach().cpu(), w.detach().cpu())
    assert x.grad.dtype == xdt and yp.grad.dtype == xdt and w.grad.dtype == wdt
    torch.testing.assert_close(x.grad.cpu().double(), dx, **TOL[xdt])
    torch.testing.assert_close(yp.grad.cpu().double(), dyp, **TOL[xdt])
    # dw is a dot product over H=24 terms: tolerance of the weights' dtype, scaled
    tol = TOL[wdt] if wdt != F32 else dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w.grad.cpu().double(), dw, atol=tol["atol"] * 10, rtol=tol["rtol"])
    # dropped assignments get exactly zero gradient
    dropped = (slot < 0).view(T, k)
    assert (w.grad.cpu()[dropped] == 0).all()
    assert (yp.grad.cpu()[int((slot >= 0).sum()) :] == 0).all()


# --- opcheck ------------------------------------------------------------------------------------

OPCHECK_BACKENDS = [b for b in backends_for("sort_tokens") if b != "emu"]
OPCHECK_ROUTINGS = [
    (5, 4, 2, "uniform", None, False),
    (6, 4, 2, "all_to_one", 2, True),
    (0, 3, 1, "uniform", None, False),
]


@pytest.mark.parametrize("backend", OPCHECK_BACKENDS)
@pytest.mark.parametrize("case", OPCHECK_ROUTINGS, ids=str)
def test_sort_tokens_opcheck(backend, case):
    T, E, k, kind, capacity, minus1 = case
    ids, _ = routing(T, E, k, kind, capacity, minus1)
    args = (ids.to(device_of(backend)), E, capacity)
    torch.library.opcheck(torch.ops.moe_ext.sort_tokens.default, args)


@pytest.mark.parametrize("backend", OPCHECK_BACKENDS)
@pytest.mark.parametrize("case", OPCHECK_ROUTINGS, ids=str)
@pytest.mark.parametrize("name", ["permute", "unpermute"])
def test_permute_unpermute_opcheck(backend, case, name):
    T, E, k, kind, capacity, minus1 = case
    dev = device_of(backend)
    _, (order, slot, _) = routing(T, E, k, kind, capacity, minus1)
    o, s = order.to(dev), slot.to(dev)
    if name == "permute":
        args = (torch.randn(T, 8, device=dev, requires_grad=True), o, s, k)
    else:
        yp = torch.randn(T * k, 8, dtype=BF16, device=dev, requires_grad=True)
        args = (yp, o, s, make_weights(T, k, F32, device=dev).requires_grad_())
    torch.library.opcheck(getattr(torch.ops.moe_ext, name).default, args)


# --- sort_tokens_into: caller-provided outputs and workspace (device backends) ----------------

INTO_BACKENDS = [b for b in backends_for("sort_tokens_into") if b != "cpu"]


@pytest.mark.parametrize("backend", INTO_BACKENDS)
@pytest.mark.parametrize("T,k,E,cap", [(0, 2, 4, None), (37, 2, 8, None), (500, 4, 60, 20)])
def test_sort_tokens_into_matches_sort_tokens(backend, T, k, E, cap):
    dev = device_of(backend)
    ids = (
        make_ids(T, k, E, "skewed").to(dev)
        if T
        else torch.zeros(0, k, dtype=torch.int32, device=dev)
    )
    n = ids.numel()
    size = torch.ops.moe_ext.sort_tokens_workspace_size(n, E)
    assert size >= E
    order = torch.full((n,), -7, dtype=torch.int32, device=dev)
    slot = torch.full((n,), -7, dtype=torch.int32, device=dev)
    offsets = torch.full((E,), -7, dtype=torch.int32, device=dev)
    workspace = torch.full((size,), -7, dtype=torch.int32, device=dev)  # any contents
    op(backend, "sort_tokens_into")(ids, E, cap, order, slot, offsets, workspace)
    for got, want in zip((order, slot, offsets), reference.sort_tokens(ids.cpu(), E, cap)):
        assert torch.equal(got.cpu(), want)


@pytest.mark.parametrize("backend", INTO_BACKENDS)
def test_sort_tokens_into_rejects_small_workspace(backend):
    dev = device_of(backend)
    ids = make_ids(64, 2, 8, "uniform").to(dev)
    outs = [torch.empty(128, dtype=torch.int32, device=dev) for _ in range(2)]
    offsets = torch.empty(8, dtype=torch.int32, device=dev)
    small = torch.empty(8, dtype=torch.int32, device=dev)
    with pytest.raises(RuntimeError, match="workspace"):
        op(backend, "sort_tokens_into")(ids, 8, None, *outs, offsets, small)


@pytest.mark.parametrize("backend", backends_for("unpermute"))
def test_permute_unpermute_deepseek_hidden(backend):
    # DeepSeek-V3's H = 7168 (not a power of two), k = 8 of E = 256, with capacity drops
    dev = device_of(backend)
    T, k, E, H = 16, 8, 256, 7168
    ids = make_ids(T, k, E, "skewed").to(dev)
    order, slot, _ = op(backend, "sort_tokens")(ids, E, 1)
    x = torch.randn(T, H, dtype=torch.bfloat16).to(dev)
    xp = op(backend, "permute")(x, order, slot, k)
    assert torch.equal(xp.cpu(), reference.permute(x.cpu(), order.cpu(), slot.cpu(), k))
    w = make_weights(T, k, torch.float32).to(dev)
    y = op(backend, "unpermute")(xp, order, slot, w)
    ref = reference.unpermute(xp.cpu(), order.cpu(), slot.cpu(), w.cpu())
    torch.testing.assert_close(y.cpu(), ref, **TOL[torch.bfloat16])


@pytest.mark.parametrize("backend", [b for b in backends_for("sort_tokens") if b != "cpu"])
@pytest.mark.parametrize("T", [512, 513])  # N = 4096: single-block path; N = 4104: multi-block
def test_sort_tokens_small_and_multi_block_paths(backend, T):
    # the device sort runs as one block up to N = 4096 (decode sizes) and as histogram + scan +
    # scatter above; both must give the reference result, with capacity drops and -1 ids
    ids = make_ids(T, 8, 256, "skewed")
    ids[::7, 0] = -1
    got = op(backend, "sort_tokens")(ids.to(device_of(backend)), 256, 10)
    for g, want in zip(got, reference.sort_tokens(ids, 256, 10)):
        assert torch.equal(g.cpu(), want)


@pytest.mark.slow
@pytest.mark.skipif("emu" not in backends_for("sort_tokens"), reason="needs the emulator")
def test_sort_tokens_2_pow_24_assignments_emu():
    """Issue 6's large-N requirement: N = 2^24 assignments (T = 2^21 tokens, k = 8) over
    E = 1024 experts with capacity dropping and -1 sentinels, the multi-block path of the device
    sort on the emulator (~11 s on the 2-core CI machine), exactly equal to the CPU op."""
    T, k, E = 1 << 21, 8, 1024
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, E, (T, k), generator=gen, dtype=torch.int32)
    ids[::97, 3] = -1
    emu = torch.ops.moe_ext_emu.sort_tokens(ids, E, 16000)
    cpu = torch.ops.moe_ext.sort_tokens(ids, E, 16000)
    for a, b in zip(emu, cpu):
        assert torch.equal(a, b)
    assert (cpu[1] < 0).sum() > T // 97  # capacity dropped some, sentinels dropped


@pytest.mark.skipif(not moe_ext.emu.available(), reason="needs the emulator backend")
def test_emulator_permute_backward_runs_the_emulated_kernel():
    """The permute gradient on moe_ext_emu goes through moe_ext_emu.unpermute (the kernel), not
    the native CPU op: the backward leaves an emulated launch of its own behind."""
    emu = torch.ops.moe_ext_emu
    T, E, k, H = 7, 4, 2, 32
    ids = torch.stack([torch.randperm(E)[:k] for _ in range(T)]).int()
    order, slot, _ = emu.sort_tokens(ids, E)
    x = torch.randn(T, H, requires_grad=True)
    xp = emu.permute(x, order, slot, k)
    after_forward = moe_ext.emu.last_launch_stats()
    g = torch.randn_like(xp)
    xp.backward(g)
    after_backward = moe_ext.emu.last_launch_stats()
    assert after_backward != after_forward
    assert after_backward["blocks"] == T  # unpermute: one CTA per token
    ref = torch.zeros(T, H).index_add_(0, (order.long() // k), g)
    assert torch.allclose(x.grad, ref, atol=1e-6)
