"""Edge cases of the permutation kernels' batched loads and block-parallel sort scan.

unpermute keeps up to 8 source-row loads of a token in flight (unpermute_backward reads
through ld.global.nc) before accumulating; sort_tokens' scans are block-parallel and its scatter
staged. These cases cross the batch boundaries (k around 8, k = 1, k not a power of two, vectors
per row not a multiple of the batch, dropped rows) and the scan's (E up to 1024, N spanning many blocks). The
accumulation order is the contract's (j order, c order), so the emulated kernels must equal the
native CPU op bit for bit; sort_tokens must equal the reference exactly.
"""

from __future__ import annotations

import pytest
import torch
from conftest import backends_for, make_ids, make_weights, op, reference

import moe_ext

BF16, F32 = torch.bfloat16, torch.float32
KERNEL_BACKENDS = [b for b in backends_for("unpermute") if b != "cpu"]


def run(backend, name, *args):
    dev = "cuda" if backend == "cuda" else "cpu"
    out = op(backend, name)(*[a.to(dev) if isinstance(a, torch.Tensor) else a for a in args])
    return tuple(o.cpu() for o in out) if isinstance(out, tuple) else out.cpu()


def case(T, E, k, capacity=None, drop=0.0):
    g = torch.Generator().manual_seed(T * 131 + E * 7 + k)
    ids = make_ids(T, k, E, "skewed")
    if drop:
        ids = ids.clone()
        ids[torch.rand(ids.shape, generator=g) < drop] = -1
    return ids, reference.sort_tokens(ids, E, capacity)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("k", [1, 3, 7, 8, 9, 17, 22])
@pytest.mark.parametrize("H,dtype", [(7, BF16), (1000, BF16), (1320, BF16), (300, F32)])
def test_unpermute_inflight_bitwise(backend, k, H, dtype):
    T, E = 40, 64
    ids, (order, slot, _) = case(T, E, k, capacity=max(1, T * k // E), drop=0.1)
    yp = torch.randn(T * k, H, dtype=torch.float64).to(dtype)
    w = make_weights(T, k, F32)
    y = run(backend, "unpermute", yp, order, slot, w)
    ref = op("cpu", "unpermute")(yp, order, slot, w)
    assert torch.equal(
        y.view(torch.int16 if dtype == BF16 else torch.int32),
        ref.view(torch.int16 if dtype == BF16 else torch.int32),
    )


@pytest.mark.parametrize("backend", [b for b in backends_for("unpermute_backward") if b != "cpu"])
@pytest.mark.parametrize("k", [1, 3, 8])
@pytest.mark.parametrize("H,dtype", [(7, BF16), (1320, BF16), (8 * 128, BF16), (300, F32)])
def test_unpermute_backward_inflight(backend, k, H, dtype):
    T, E = 24, 16
    ids, (order, slot, _) = case(T, E, k, capacity=max(1, T * k // E), drop=0.1)
    yp = torch.randn(T * k, H, dtype=torch.float64).to(dtype)
    gy = torch.randn(T, H, dtype=torch.float64).to(dtype)
    w = make_weights(T, k, F32)
    got = run(backend, "unpermute_backward", gy, yp, order, slot, w)
    ref = op("cpu", "unpermute_backward")(gy, yp, order, slot, w)
    assert torch.equal(got[0], ref[0])  # grad_yp: one product per element, exact
    torch.testing.assert_close(got[1], ref[1], atol=1e-5, rtol=1e-5)  # dot: warp-sum order


@pytest.mark.parametrize("backend", [b for b in backends_for("sort_tokens") if b != "cpu"])
@pytest.mark.parametrize("E", [128, 512, 1024])
@pytest.mark.parametrize("T,k", [(100, 8), (1000, 10), (3000, 22)])
@pytest.mark.parametrize("capacity", [None, 5])
def test_sort_tokens_scan_many_experts(backend, E, T, k, capacity):
    ids, ref = case(T, E, k, capacity, drop=0.05)
    got = run(backend, "sort_tokens", ids, E, capacity)
    for name, g, r in zip(("order", "slot", "offsets"), got, ref):
        assert torch.equal(g, r), name


@pytest.mark.parametrize("backend", [b for b in backends_for("sort_tokens") if b != "cpu"])
@pytest.mark.parametrize("id_dtype,capacity", [(torch.int32, None), (torch.int64, 400_000)])
def test_sort_tokens_rounds_past_the_grid_cap(backend, id_dtype, capacity):
    # N > kSortChunk * kSortMaxBlocks (4096 * 1024): the grid is capped, so each scatter block
    # sorts its chunk in several staged rounds of 4096 rows (ranks and dropped rows carried over).
    N, E = 4096 * 1024 + 4096 * 3 + 77, 8
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(-1, E, (N, 1), generator=g).to(id_dtype)
    got = run(backend, "sort_tokens", ids, E, capacity)
    ref = op("cpu", "sort_tokens")(ids, E, capacity)
    for name, a, b in zip(("order", "slot", "offsets"), got, ref):
        assert torch.equal(a, b), name


@pytest.mark.skipif(not moe_ext.emu.available(), reason="needs the emulator build")
def test_sort_tokens_scatter_is_coalesced_on_the_emulator():
    # The launch log names the three passes; the scatter's order[] rows are staged and copied
    # out in runs, so most of every 32-byte sector it touches is used (was 36 % at this shape).
    T, k, E = 1024, 8, 128
    g = torch.Generator().manual_seed(0)
    ids = torch.stack([torch.randperm(E, generator=g)[:k] for _ in range(T)]).int()
    with moe_ext.emu.launch_log() as log:
        torch.ops.moe_ext_emu.sort_tokens(ids, E, None)
    assert [s["kernel"] for s in log] == [
        "sort_histogram_kernel",
        "sort_scan_kernel",
        "sort_scatter_kernel",
    ]
    scatter = log[2]
    moved = scatter["global_bytes_read"] + scatter["global_bytes_written"]
    assert moved / (32 * scatter["global_sectors"]) > 0.85
    assert scatter["global_sectors"] < 5000  # 14554 before staging
