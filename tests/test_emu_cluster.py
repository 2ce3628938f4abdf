"""Thread-block clusters on the emulator (csrc/common/ptx_sm90.h's cluster PTX, run by
csrc/kernels/testing/cluster_kernels.cuh): cluster ids and ranks, distributed shared memory,
remote mbarrier arrivals and multicast TMA, their counters, and the two cluster-sync checkers
(a peer's shared memory touched before the first cluster barrier; a CTA exiting while a peer's
access to it is unordered). The same kernels are built for sm_90a; the multicast one's SASS must
hold a multicast UTMALDG.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from conftest import _has_op

import moe_ext
from moe_ext import emu

pytestmark = pytest.mark.skipif(
    not _has_op("moe_ext_emu_test", "cluster_run"), reason="needs the emulator test kernels"
)


def run(kernel, inp, out, grid, block, cluster, args):
    torch.ops.moe_ext_emu_test.cluster_run(kernel, inp, out, grid, block, cluster, args)
    return emu.last_launch_stats()


NONE = torch.zeros(1, dtype=torch.int32)


@pytest.mark.parametrize(
    "grid,cluster",
    [
        ((4, 1, 1), (1, 1, 1)),
        ((4, 1, 1), (2, 1, 1)),
        ((8, 2, 1), (4, 1, 1)),
        ((4, 4, 1), (2, 2, 1)),
    ],
)
def test_ids_and_ranks(grid, cluster):
    nblocks = grid[0] * grid[1] * grid[2]
    out = torch.full((nblocks, 10), -1, dtype=torch.int32)
    run("ids", NONE, out, list(grid), [32], list(cluster), [])
    size = cluster[0] * cluster[1] * cluster[2]
    for bz in range(grid[2]):
        for by in range(grid[1]):
            for bx in range(grid[0]):
                b = (bz * grid[1] + by) * grid[0] + bx
                lx, ly, lz = bx % cluster[0], by % cluster[1], bz % cluster[2]
                rank = lx + ly * cluster[0] + lz * cluster[0] * cluster[1]
                expect = [
                    rank,
                    size,
                    bx // cluster[0],
                    by // cluster[1],
                    bz // cluster[2],
                    lx,
                    ly,
                    lz,
                    cluster[0],
                    cluster[1],
                ]
                assert out[b].tolist() == expect, (b, out[b].tolist(), expect)


@pytest.mark.parametrize("size", [2, 4])
def test_dsmem_exchange(size):
    threads, clusters = 64, 2
    out = torch.zeros(clusters * size, threads, dtype=torch.int32)
    st = run("dsmem", NONE, out, [clusters * size], [threads], [size], [0])
    for b in range(clusters * size):
        r = b % size
        src = (r - 1) % size  # rank r-2 read rank r-1's values and stored them into rank r
        expect = [1000 * src + i for i in range(threads)]
        assert out[b].tolist() == expect
    # each thread: one 4-byte remote load and one remote store (rank + 2 is the CTA itself when
    # size == 2: a local store)
    remote_stores = 0 if size == 2 else 1
    assert st["dsmem_bytes"] == clusters * size * threads * 4 * (1 + remote_stores)
    assert st["cluster_barriers"] == clusters * 2


def test_dsmem_missing_sync_at_start():
    out = torch.zeros(4, 64, dtype=torch.int32)
    with pytest.raises(RuntimeError, match="before this thread's first barrier.cluster wait"):
        run("dsmem", NONE, out, [4], [64], [2], [1])


def test_dsmem_missing_sync_at_exit():
    out = torch.zeros(4, 64, dtype=torch.int32)
    with pytest.raises(RuntimeError, match="missing cluster sync (at|before its) exit"):
        run("dsmem", NONE, out, [4], [64], [2], [2])


@pytest.mark.parametrize("size", [2, 4, 8])
def test_remote_arrive(size):
    out = torch.zeros(2 * size, 8, dtype=torch.int32)
    st = run("remote_arrive", NONE, out, [2 * size], [32], [size], [0])
    for b in range(2 * size):
        r = b % size
        got = out[b, :size].tolist()
        expect = [-1 if p == r else 100 * p + r for p in range(size)]
        assert got == expect
    assert st["dsmem_bytes"] == 2 * size * (size - 1) * 4
    assert st["cluster_barriers"] == 2 * 2


def test_remote_arrive_missing_sync_at_start():
    out = torch.zeros(4, 8, dtype=torch.int32)
    with pytest.raises(RuntimeError, match="missing cluster sync after launch"):
        run("remote_arrive", NONE, out, [4], [32], [2], [1])


def test_remote_arrive_missing_sync_at_exit():
    out = torch.zeros(4, 8, dtype=torch.int32)
    with pytest.raises(RuntimeError, match="missing cluster sync (at|before its) exit"):
        run("remote_arrive", NONE, out, [4], [32], [2], [2])


def multicast(rank, variant=0, origin=(0, 0, 0), dims=(40, 12, 3)):
    g = torch.Generator().manual_seed(rank)
    shape = (dims[2], dims[1], dims[0]) if rank == 3 else (dims[1], dims[0])
    t = torch.randint(-1000, 1000, shape, generator=g, dtype=torch.int16)
    out = torch.zeros(2, 256, dtype=torch.int16)
    st = run("multicast", t, out, [2], [32], [2], [rank, variant, *origin, *dims])
    return t, out, st


@pytest.mark.parametrize("rank", [2, 3])
@pytest.mark.parametrize("origin", [(0, 0, 0), (8, 4, 1), (20, 6, 2)])  # last: partly outside
def test_multicast_delivers_tile_to_both(rank, origin):
    t, out, st = multicast(rank, origin=origin)
    x, y, z = origin
    if rank == 2:
        pad = torch.nn.functional.pad(t, (0, 64, 0, 16))
        expect = pad[y : y + 8, x : x + 32]
    else:
        pad = torch.nn.functional.pad(t, (0, 64, 0, 16, 0, 4))
        expect = pad[z : z + 2, y : y + 4, x : x + 32]
    expect = expect.reshape(-1)
    assert torch.equal(out[0], expect) and torch.equal(out[1], expect)
    # two multicasts of 256 bytes, each delivered to 2 CTAs; the global side read once
    assert st["tma_multicast_bytes"] == 2 * 256 * 2
    if origin == (20, 6, 2):  # out-of-range elements are zero-filled, not read
        assert 0 < st["global_bytes_read"] < 512
    else:
        assert st["global_bytes_read"] == 512
    assert st["cluster_barriers"] == 2


def test_multicast_missing_sync_at_start():
    with pytest.raises(RuntimeError, match="missing cluster sync after launch"):
        multicast(2, variant=1)


def test_multicast_missing_sync_at_exit():
    with pytest.raises(RuntimeError, match="missing cluster sync (at|before its) exit"):
        multicast(3, variant=2)


def test_bad_cluster_dims():
    with pytest.raises(RuntimeError, match="must hold 1..8 CTAs and divide the grid"):
        run("ids", NONE, torch.zeros(3, 10, dtype=torch.int32), [3], [32], [2], [])


def test_sass_multicast_tma():
    """nvcc's sm_90a SASS of the multicast kernel holds UTMALDG with .MULTICAST."""
    info = moe_ext.build_info()
    if not info["cuda"] or "9.0a" not in info["cuda_archs"]:
        pytest.skip("the library was built without CUDA for sm_90a")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import sass

    tool = sass.cuobjdump()
    if not tool:
        pytest.skip("cuobjdump not found")
    by_kernel = sass.sass_by_kernel(tool, moe_ext._C.__file__)
    mc = [t for (a, n), t in by_kernel.items() if a == "sm_90a" and "cluster_multicast_kernel" in n]
    assert mc, "cluster_multicast_kernel missing from the sm_90a SASS"
    lines = [line for line in mc[0].splitlines() if "UTMALDG" in line]
    for dim in ("2D", "3D"):  # the kernel issues both, by the map's rank
        assert any(f"UTMALDG.{dim}.MULTICAST" in line for line in lines), lines
