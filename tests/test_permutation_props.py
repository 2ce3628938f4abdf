"""Property tests of sort_tokens / permute / unpermute over random routings (hypothesis), and the
permutation kernels' memory-traffic proxies on the emulator.

Hypothesis draws the shape (T in [0, 64], E in [1, 300], k in [1, min(8, E)]), the routing kind,
the fraction of -1 sentinels, an optional capacity in [0, 2T] and a seed; the ids themselves come
from conftest.make_ids with a torch generator seeded by the drawn seed (fast, and a failing case
shrinks to a small shape). Derandomized, so CI runs the same 60 examples every time.
"""

from __future__ import annotations

import pytest
import torch
from conftest import ROUTINGS, backends_for, make_ids, make_weights, reference
from test_permutation import check_invariants, run

import moe_ext

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, note, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SORT_BACKENDS = backends_for("sort_tokens")
PERMUTE_BACKENDS = backends_for("permute")
UNPERMUTE_BACKENDS = backends_for("unpermute")

PROPS = settings(max_examples=60, deadline=None, derandomize=True)
# "any": ids drawn independently from [-1, E), so a token may name the same expert twice (the
# contract does not forbid it) and -1 is as likely as any expert.
KINDS = ROUTINGS + ("any",)
FP32_SUMS = dict(atol=1e-6, rtol=1e-6)  # unpermute: the same fp32 sums in j order as reference


@st.composite
def routings(draw):
    """(ids [T, k] int32/int64, E, capacity or None, generator for the data tensors)."""
    T = draw(st.integers(0, 64), label="T")
    E = draw(st.integers(1, 300), label="E")
    k = draw(st.integers(1, min(8, E)), label="k")
    kind = draw(st.sampled_from(KINDS), label="kind")
    minus1 = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]), label="minus1 fraction")
    capacity = draw(st.none() | st.integers(0, 2 * T), label="capacity")
    id_dtype = draw(st.sampled_from([torch.int32, torch.int64]), label="id dtype")
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1), label="seed"))
    if kind == "any":
        ids = torch.randint(-1, E, (T, k), generator=gen, dtype=torch.int32)
    else:
        ids = make_ids(T, k, E, kind, generator=gen)
    ids[torch.rand(ids.shape, generator=gen) < minus1] = -1
    return ids.to(id_dtype), E, capacity, gen


def twice(backend, name, *args):
    """Run op `name` twice; the two results must be bit-identical (determinism). Returns one."""
    a, b = run(backend, name, *args), run(backend, name, *args)
    pair = zip(a, b) if isinstance(a, tuple) else [(a, b)]
    for x, y in pair:
        assert torch.equal(x, y), f"{name}: second call differs from the first"
    return a


@pytest.mark.parametrize("backend", SORT_BACKENDS)
@PROPS
@given(r=routings())
def test_sort_tokens_props(backend, r):
    ids, E, capacity, _ = r
    note(f"ids={ids.tolist()}")
    got = twice(backend, "sort_tokens", ids, E, capacity)
    ref = reference.sort_tokens(ids, E, capacity)
    for name, g, e in zip(("order", "slot", "offsets"), got, ref):
        assert torch.equal(g, e), f"{name} differs from reference.sort_tokens"
    # the contract from first principles: order a permutation, order[slot[a]] == a for kept a,
    # dropped at slot -1 and rows >= offsets[-1], offsets non-decreasing with diff = kept counts,
    # rows of one expert (and the dropped tail) in increasing flat order
    check_invariants(ids, E, capacity, *got)


@pytest.mark.parametrize("backend", PERMUTE_BACKENDS)
@PROPS
@given(r=routings(), H=st.integers(1, 48), dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_permute_props(backend, r, H, dtype):
    ids, E, capacity, gen = r
    T, k = ids.shape
    order, slot, offsets = reference.sort_tokens(ids, E, capacity)
    x = torch.randn(T, H, generator=gen).to(dtype)
    xp = twice(backend, "permute", x, order, slot, k)
    assert xp.dtype == dtype and xp.shape == (T * k, H)
    assert torch.equal(xp, reference.permute(x, order, slot, k))  # a copy: bit exact
    assert (xp[int(offsets[-1]) :] == 0).all()  # dropped rows are zero


@pytest.mark.parametrize("backend", UNPERMUTE_BACKENDS)
@PROPS
@given(r=routings(), H=st.integers(1, 48))
def test_unpermute_props(backend, r, H):
    ids, E, capacity, gen = r
    T, k = ids.shape
    order, slot, _ = reference.sort_tokens(ids, E, capacity)
    yp = torch.randn(T * k, H, generator=gen)
    w = make_weights(T, k, generator=gen)
    y = twice(backend, "unpermute", yp, order, slot, w)
    assert y.dtype == torch.float32 and y.shape == (T, H)
    torch.testing.assert_close(y, reference.unpermute(yp, order, slot, w), **FP32_SUMS)
    assert (y[(slot.view(T, k) < 0).all(1)] == 0).all()  # fully dropped tokens: exactly zero


# --- memory-traffic proxies (emulator) -----------------------------------------------------------
# T=64 tokens of H=4096 bf16, k=2 of E=8 experts, no drops: every row is kept. The kernels must
# move within 5% of the ideal bytes, and touch no more 32-byte sectors than the bytes they move
# (+5%): a gather/scatter of whole rows is fully coalescible.

SLACK = 1.05
T_MEM, H_MEM, K_MEM, E_MEM, ELEM = 64, 4096, 2, 8, 2


def _mem_routing():
    gen = torch.Generator().manual_seed(0)
    ids = make_ids(T_MEM, K_MEM, E_MEM, "uniform", generator=gen)
    return gen, reference.sort_tokens(ids, E_MEM)


def _check_traffic(stats, ideal, floor):
    moved = stats["global_bytes_read"] + stats["global_bytes_written"]
    msg = f"stats={stats}, ideal={ideal}, moved/ideal={moved / ideal:.4f}"
    assert floor <= moved <= SLACK * ideal, msg
    sectors = stats["global_sectors"] * 32
    assert sectors <= SLACK * moved, f"{msg}, sectors*32/moved={sectors / moved:.4f}"


@pytest.mark.parametrize("backend", [b for b in PERMUTE_BACKENDS if b == "emu"])
def test_permute_kernel_traffic(backend):
    gen, (order, slot, _) = _mem_routing()
    x = torch.randn(T_MEM, H_MEM, generator=gen).to(torch.bfloat16)
    xp = torch.ops.moe_ext_emu.permute(x, order, slot, K_MEM)
    stats = moe_ext.emu.last_launch_stats()
    assert torch.equal(xp, reference.permute(x, order, slot, K_MEM))
    N = T_MEM * K_MEM
    rows = N * H_MEM * ELEM
    # kept rows read once + written once, order and slot[order] read once per row
    _check_traffic(stats, ideal=2 * rows + N * 4 * 2, floor=2 * rows)


@pytest.mark.parametrize("backend", [b for b in UNPERMUTE_BACKENDS if b == "emu"])
def test_unpermute_kernel_traffic(backend):
    gen, (order, slot, _) = _mem_routing()
    N = T_MEM * K_MEM
    yp = torch.randn(N, H_MEM, generator=gen).to(torch.bfloat16)
    w = make_weights(T_MEM, K_MEM, generator=gen)
    y = torch.ops.moe_ext_emu.unpermute(yp, order, slot, w)
    stats = moe_ext.emu.last_launch_stats()
    torch.testing.assert_close(y, reference.unpermute(yp, order, slot, w), atol=2e-2, rtol=2e-2)
    # kept rows of yp read once, y written once, slot + fp32 weight read once per assignment
    ideal = N * H_MEM * ELEM + T_MEM * H_MEM * ELEM + N * (4 + 4)
    _check_traffic(stats, ideal=ideal, floor=N * H_MEM * ELEM + T_MEM * H_MEM * ELEM)
