"""The SIMT emulator's execution model and checkers, tested with purpose-written kernels.

Kernels: csrc/emu/selftest_exec.cpp, run through torch.ops.moe_ext_emu_test.exec_run. Every
expectation is computed here, independently, from documented CUDA semantics (the CUDA C++
Programming Guide for built-ins, barriers, votes and atomics; the PTX ISA's `shfl.sync`
pseudo-code for shuffles). Each checker is tested on a kernel with a planted bug (it must raise
RuntimeError naming the kernel, block, thread and problem) and on the same kernel without the bug
(it must pass: no false positives).
"""

from __future__ import annotations

import functools
import math
import time

import pytest
import torch

from moe_ext import emu


def _has_exec_run() -> bool:
    try:
        torch.ops.moe_ext_emu_test.exec_run  # noqa: B018
        return True
    except (AttributeError, RuntimeError):
        return False


pytestmark = pytest.mark.skipif(not _has_exec_run(), reason="moe_ext built without the emulator")

FULL = 0xFFFFFFFF
EVEN = 0x55555555
ODD = 0xAAAAAAAA
I32 = torch.int32


def run(kernel, inputs=(), outputs=(), grid=(1,), block=(32,), smem=0, args=()):
    """Runs a self-test kernel on the emulator; returns the launch's counters."""
    torch.ops.moe_ext_emu_test.exec_run(
        kernel, list(inputs), list(outputs), list(grid), list(block), smem, list(args)
    )
    return emu.last_launch_stats()


def u32(x: int) -> int:
    """An unsigned 32-bit value as the int32 a kernel stores."""
    return x - (1 << 32) if x >= 1 << 31 else x


def raises(*fragments):
    """Context manager: RuntimeError whose message contains every fragment."""

    class _Check:
        def __enter__(self):
            self.cm = pytest.raises(RuntimeError)
            self.info = self.cm.__enter__()
            return self.info

        def __exit__(self, *exc):
            suppressed = self.cm.__exit__(*exc)
            msg = str(self.info.value)
            for f in fragments:
                assert f in msg, f"{f!r} not in error message: {msg}"
            return suppressed

    return _Check()


# ----------------------------------------------------------------------------------- built-ins


@pytest.mark.parametrize(
    "grid,block",
    [
        ((2, 3, 4), (4, 2, 3)),
        ((3, 1, 2), (32, 2, 1)),
        ((1, 1, 1), (1, 1, 1)),
        ((5, 1, 1), (70, 1, 1)),
        ((1, 2, 1), (1, 1, 33)),
    ],
)
def test_builtins(grid, block):
    gx, gy, gz = grid
    bx, by, bz = block
    nb, nt = gx * gy * gz, bx * by * bz
    out = torch.full((nb * nt, 12), -1, dtype=I32)
    stats = run("builtins_kernel", outputs=[out], grid=grid, block=block)
    # CUDA linearisation: x fastest, then y, then z, for both threads and blocks.
    b = torch.arange(nb).repeat_interleave(nt)
    t = torch.arange(nt).repeat(nb)
    expect = torch.stack(
        [t % bx, t // bx % by, t // (bx * by), b % gx, b // gx % gy, b // (gx * gy)]
        + [torch.full_like(t, v) for v in (bx, by, bz, gx, gy, gz)],
        dim=1,
    ).to(I32)
    assert torch.equal(out, expect)
    assert stats["blocks"] == nb and stats["threads"] == nb * nt


# ------------------------------------------------------------------------------- shared memory


@pytest.mark.parametrize("rounds", [0, 1, 7])
def test_shared_static_dynamic_rotation_is_per_block(rounds):
    blocks, n = 6, 128
    out = torch.zeros(blocks, n, 2, dtype=I32)
    outf = torch.zeros(blocks, n, dtype=torch.float32)
    stats = run(
        "shared_rotate_kernel",
        outputs=[out, outf],
        grid=(blocks,),
        block=(n,),
        smem=n * 4,
        args=[rounds],
    )
    blk = torch.arange(blocks)[:, None]
    t = torch.arange(n)[None, :]
    # After k rounds a[t] = a0[(t + k) % n] + k, b likewise, d[t] = d0[(t - k) % n] + 2k.
    a = blk * 1000 + (t + rounds) % n + rounds
    d = blk * 7 + 3 * ((t - rounds) % n) + 2 * rounds
    b = blk.float() + 0.5 * ((t + rounds) % n).float() + rounds
    assert torch.equal(out[..., 0], a.to(I32))
    assert torch.equal(out[..., 1], d.to(I32))
    assert torch.equal(outf, b)
    assert stats["barriers"] == blocks * (1 + 2 * rounds)


@pytest.mark.parametrize("block", [1, 32, 64, 256, 1024])
def test_tree_reduction(block):
    blocks = 3
    x = torch.randint(
        -1000, 1000, (blocks * block,), generator=torch.Generator().manual_seed(block), dtype=I32
    )
    out = torch.zeros(blocks, dtype=I32)
    stats = run(
        "reduce_kernel",
        inputs=[x],
        outputs=[out],
        grid=(blocks,),
        block=(block,),
        smem=block * 4,
        args=[0],
    )
    assert torch.equal(out, x.view(blocks, block).sum(1).to(I32))
    assert stats["barriers"] == blocks * (1 + int(math.log2(block)))


def test_tree_reduction_without_loop_barrier_is_a_race():
    x = torch.ones(128, dtype=I32)
    with raises("reduce_kernel", "block (0,0,0)", "thread (", "shared-memory race"):
        run(
            "reduce_kernel",
            inputs=[x],
            outputs=[torch.zeros(1, dtype=I32)],
            block=(128,),
            smem=128 * 4,
            args=[1],
        )


@pytest.mark.parametrize("block", [2, 64, 96, 256])
def test_exited_threads_count_as_arrived(block):
    blocks, h = 2, block // 2
    out = torch.full((blocks, h), -1, dtype=I32)
    stats = run("early_exit_kernel", outputs=[out], grid=(blocks,), block=(block,), smem=block * 4)
    u = torch.arange(h)
    s2 = (3 * u + 1) + (3 * (u + h) + 1)
    assert torch.equal(out, s2.flip(0).to(I32).expand(blocks, h))
    assert stats["barriers"] == 3 * blocks


# ------------------------------------------------------------------------------ warp shuffles

MODES = {"idx": 0, "up": 1, "down": 2, "xor": 3}


def shfl_source(mode: str, lane: int, arg: int, width: int) -> int:
    """Source lane of shfl.sync, transcribed from the PTX ISA's pseudo-code."""
    segmask = (32 - width) & 0x1F  # c[12:8] as CUDA's __shfl_*_sync set it
    clamp = 0 if mode == "up" else 0x1F  # c[4:0]
    max_lane = (lane & segmask) | (clamp & ~segmask & 0x1F)
    min_lane = lane & segmask
    if mode == "up":
        j, ok = lane - arg, lane - arg >= max_lane
    elif mode == "down":
        j, ok = lane + arg, lane + arg <= max_lane
    elif mode == "xor":
        j, ok = lane ^ arg, (lane ^ arg) <= max_lane
    else:
        j = min_lane | (arg & ~segmask & 0x1F)
        ok = j <= max_lane
    return j if ok else lane


def shfl_cases():
    args = {"idx": [0, 5, 31, 36], "up": [1, 3, 8], "down": [1, 2, 16], "xor": [1, 2, 8, 16]}
    for mode, lst in args.items():
        for width in (32, 16, 8, 4):
            for arg in lst:
                yield mode, arg, width


DTYPES = {  # dtype code of shfl_kernel -> torch dtype
    0: torch.int32,
    1: torch.float32,
    2: torch.float64,
    3: torch.float16,
    4: torch.bfloat16,
    5: torch.int64,
}


def shfl_check(mode, arg, width, mask, code, block=64):
    dtype = DTYPES[code]
    g = torch.arange(block)
    if dtype == torch.int64:
        x = (g << 40) | (g + 1)  # high bits must survive the shuffle
    else:
        x = (3 * g + 1).to(dtype)  # exact in every dtype (<= 256 for bf16)
    sentinel = -7
    out = torch.full((block,), sentinel, dtype=dtype)
    lanes = [lane for lane in range(32) if mask >> lane & 1]
    src = {lane: shfl_source(mode, lane, arg, width) for lane in lanes}
    if any(not mask >> s & 1 for s in src.values()):
        with raises("shfl_kernel", "not in the mask", "block (0,0,0)"):
            run(
                "shfl_kernel",
                [x],
                [out],
                block=(block,),
                args=[MODES[mode], arg, width, mask, code],
            )
        return
    stats = run(
        "shfl_kernel", [x], [out], block=(block,), args=[MODES[mode], arg, width, mask, code]
    )
    expect = torch.full_like(out, sentinel)
    for w in range(block // 32):
        for lane in lanes:
            expect[32 * w + lane] = x[32 * w + src[lane]]
    assert torch.equal(out, expect)
    assert stats["warp_collectives"] == block // 32


@pytest.mark.parametrize("mode,arg,width", list(shfl_cases()))
@pytest.mark.parametrize("mask", [FULL, EVEN, 0x0000FFFF], ids=["full", "even", "low16"])
def test_shfl_modes_widths_masks(mode, arg, width, mask):
    shfl_check(mode, arg, width, mask, code=0)


@pytest.mark.parametrize(
    "code", sorted(DTYPES), ids=[str(d).split(".")[1] for _, d in sorted(DTYPES.items())]
)
@pytest.mark.parametrize(
    "mode,arg,width", [("idx", 3, 32), ("up", 1, 16), ("down", 4, 8), ("xor", 2, 4), ("xor", 16, 8)]
)
def test_shfl_dtypes(mode, arg, width, code):
    shfl_check(mode, arg, width, FULL, code)


def test_shfl_xor_reads_earlier_segment():
    # PTX: bfly reads lane ^ c when it is <= the end of the caller's segment, so with width 8
    # and lane mask 8, lanes 8-15 read lanes 0-7 while lanes 0-7 keep their own value.
    assert [shfl_source("xor", lane, 8, 8) for lane in range(16)] == list(range(8)) + list(range(8))
    shfl_check("xor", 8, 8, FULL, code=0)


@pytest.mark.parametrize("block", [64, 48])
@pytest.mark.parametrize("pattern", ["random", "ones", "zeros"])
@pytest.mark.parametrize(
    "mask",
    [FULL, EVEN, 0x0000FFFF, 0x80000001, 0x00000010],
    ids=["full", "even", "low16", "ends", "one"],
)
def test_votes_and_activemask(mask, pattern, block):
    if block == 48:
        mask &= 0xFFFF  # the second warp has 16 lanes
        if mask == 0:
            pytest.skip("mask names only lanes the partial warp lacks")
    gen = torch.Generator().manual_seed(mask ^ block)
    pred = {
        "random": torch.randint(0, 3, (block,), generator=gen) * 5,
        "ones": torch.full((block,), 7),
        "zeros": torch.zeros(block),
    }[pattern].to(I32)
    sentinel = -5
    out = torch.full((block, 6), sentinel, dtype=I32)
    stats = run("vote_kernel", [pred], [out], block=(block,), args=[mask])
    expect = torch.full_like(out, sentinel)
    for w in range(math.ceil(block / 32)):
        nl = min(32, block - 32 * w)
        present = (1 << nl) - 1
        m = mask & present
        ballot = sum(1 << lane for lane in range(nl) if m >> lane & 1 and pred[32 * w + lane] != 0)
        for lane in range(nl):
            row = expect[32 * w + lane]
            row[0] = u32(present)
            if m >> lane & 1:
                row[1:] = torch.tensor([u32(ballot), int(ballot != 0), int(ballot == m), u32(m), 1])
    assert torch.equal(out, expect)
    warps = math.ceil(block / 32)
    assert stats["warp_collectives"] == 4 * warps  # ballot, any, all, __syncwarp
    assert stats["barriers"] == 1


def test_divergent_half_warps_run_their_own_collectives():
    block = 64
    v = torch.randint(-50, 50, (block,), generator=torch.Generator().manual_seed(3), dtype=I32)
    out = torch.full((block, 3), -9, dtype=I32)
    stats = run("divergent_collectives_kernel", [v], [out], block=(block,))
    expect = torch.empty_like(out)
    for w in range(2):
        vw = v[32 * w : 32 * w + 32].tolist()
        upper_ballot = sum(1 << lane for lane in range(16, 32) if vw[lane] & 1)
        for lane in range(32):
            r = expect[32 * w + lane]
            if lane < 16:
                r[0], r[1] = sum(vw[:16]), 0x0000FFFF  # __activemask() in the divergent branch
            else:
                r[0], r[1] = u32(upper_ballot), vw[lane + 1] if lane < 31 else vw[lane]
            r[2] = vw[0] if lane % 2 == 0 else vw[lane ^ 2]
    assert torch.equal(out, expect)
    assert stats["warp_collectives"] == 2 * 9  # per warp: 4 xor + ballot + down + sync + 2


@pytest.mark.parametrize(
    "variant,expect",
    [
        (0, {lane: 10 * lane + 1 for lane in range(32)}),
        (1, {lane: 10 * ((lane + 2) % 32) for lane in range(0, 32, 2)}),
        (4, {1: 42}),
    ],
    ids=["syncwarp", "even-mask-syncwarp", "pair-syncwarp"],
)
def test_warp_synchronous_shared_exchange_is_race_free(variant, expect):
    out = torch.full((32,), -3, dtype=I32)
    run("warp_sync_kernel", outputs=[out], args=[variant])
    ref = torch.full_like(out, -3)
    for lane, val in expect.items():
        ref[lane] = val
    assert torch.equal(out, ref)


@pytest.mark.parametrize("variant", [2, 3], ids=["no-syncwarp", "unrelated-partial-syncwarps"])
def test_warp_exchange_without_pairwise_sync_is_a_race(variant):
    with raises("warp_sync_kernel", "block (0,0,0)", "thread (", "shared-memory race"):
        run("warp_sync_kernel", outputs=[torch.zeros(32, dtype=I32)], args=[variant])


# ----------------------------------------------------------------------------------- atomics


def test_atomics_under_contention():
    blocks, block = 16, 128
    n = blocks * block
    c = torch.zeros(8 + 2 * n, dtype=I32)
    c[1], c[2], c[3], c[6] = -(2**31), 2**31 - 1, -1, -1
    u = torch.tensor([0, n + 5, 0, 0], dtype=I32)
    ull = torch.zeros(2, dtype=torch.int64)
    f = torch.zeros(1, dtype=torch.float32)
    d = torch.zeros(1, dtype=torch.float64)
    run("atomics_kernel", outputs=[c, u, ull, f, d], grid=(blocks,), block=(block,))
    g = torch.arange(n)
    key = (g * 7919) % 100003 - 50000
    bits = functools.reduce(lambda a, b: a | b, [1 << (i % 31) for i in range(n)])
    assert c[0] == n
    assert c[1] == key.max() and c[2] == key.min()
    # atomicExch: the old values plus the final one are exactly the initial value and all g.
    olds = sorted(c[8 : 8 + n].tolist() + [int(c[3])])
    assert olds == [-1] + list(range(n))
    assert sorted(c[8 + n :].tolist()) == list(range(n)) and c[4] == n  # CAS tickets
    assert c[5] == bits and c[6] == ~bits
    assert c[7] == functools.reduce(lambda a, b: a ^ b, range(n))
    assert u[0] == 2 * n and u[1] == 5
    assert u[2] == n % 10  # atomicInc(.., 9) wraps 9 -> 0
    assert u[3] == (7 - n % 7) % 7  # atomicDec(.., 6): 0 -> 6 -> 5 ... -> 0
    assert ull[0] == n << 33 and ull[1] == (n - 1) << 40
    assert f[0] == n and d[0] == 0.25 * n


@pytest.mark.parametrize("bins", [1, 37, 1024])
def test_shared_histogram_with_atomics(bins):
    x = torch.randint(0, 100000, (10000,), generator=torch.Generator().manual_seed(bins), dtype=I32)
    out = torch.zeros(bins, dtype=I32)
    run(
        "histogram_kernel",
        [x],
        [out],
        grid=(4,),
        block=(128,),
        smem=bins * 4,
        args=[x.numel(), bins],
    )
    assert torch.equal(out, torch.bincount(x.long() % bins, minlength=bins).to(I32))


# ------------------------------------------------------------------------------- checkers


def test_oob_global_store():
    out = torch.zeros(100, dtype=I32)
    run("oob_store_kernel", outputs=[out], block=(128,), args=[100, 0])
    assert torch.equal(out, torch.arange(100, dtype=I32))
    with raises(
        "oob_store_kernel",
        "block (0,0,0)",
        "thread (100,0,0)",
        "out-of-bounds global store of 4 bytes",
        "near out0: byte offset 400 of 400",
    ):
        run("oob_store_kernel", outputs=[torch.zeros(100, dtype=I32)], block=(128,), args=[100, 1])


def test_read_only_buffer_written():
    x = torch.zeros(64, dtype=I32)
    out = torch.zeros(64, dtype=I32)
    run("readonly_write_kernel", [x], [out], block=(64,), args=[0])
    assert torch.equal(out, torch.arange(64, dtype=I32))
    with raises(
        "readonly_write_kernel", "block (0,0,0)", "thread (0,0,0)", "writes to read-only buffer in0"
    ):
        run("readonly_write_kernel", [x], [out], block=(64,), args=[1])
    assert torch.equal(x, torch.zeros(64, dtype=I32))  # the checker stopped the store


def test_shared_in_bounds_passes():
    out = torch.zeros(64, dtype=I32)
    run("shared_oob_kernel", outputs=[out], block=(64,), smem=64 * 4, args=[0])
    assert torch.equal(out, 6 * torch.arange(64, dtype=I32))


@pytest.mark.parametrize(
    "variant",
    [1, 2, 3, 4],
    ids=["static-into-next-array", "past-all-shared", "dynamic-into-static", "static-below-start"],
)
def test_shared_oob_store(variant):
    with raises(
        "shared_oob_kernel",
        "block (0,0,0)",
        "thread (63,0,0)",
        "out-of-bounds shared store of 4 bytes",
    ):
        run(
            "shared_oob_kernel",
            outputs=[torch.zeros(64, dtype=I32)],
            block=(64,),
            smem=64 * 4,
            args=[variant],
        )


@pytest.mark.parametrize("variant", [0, 2, 3], ids=["int32", "int16-adjacent", "int8-adjacent"])
def test_disjoint_shared_stores_are_not_races(variant):
    out = torch.full((256,), -1, dtype=I32)
    run("shared_store_kernel", outputs=[out], block=(256,), args=[variant])
    mod = {0: 1 << 31, 2: 1 << 16, 3: 1 << 8}[variant]
    assert torch.equal(out, (torch.arange(256) % mod).to(I32))


@pytest.mark.parametrize("variant", [1, 4], ids=["int32", "int16"])
def test_shared_write_write_race(variant):
    with raises(
        "shared_store_kernel",
        "block (0,0,0)",
        "thread (1,0,0)",
        "shared-memory race (write after write)",
    ):
        run(
            "shared_store_kernel",
            outputs=[torch.zeros(256, dtype=I32)],
            block=(256,),
            args=[variant],
        )


def test_uninitialized_shared_read():
    n = 64
    out = torch.zeros(n, dtype=I32)
    run("uninit_kernel", outputs=[out], block=(n,), smem=n * 4, args=[0])
    assert torch.equal(out, ((torch.arange(n) + 1) % n).to(I32))
    with raises(
        "uninit_kernel",
        "block (0,0,0)",
        f"thread ({n - 2},0,0)",
        f"reads uninitialized shared memory at offset {4 * (n - 1)}",
    ):
        run("uninit_kernel", outputs=[out], block=(n,), smem=n * 4, args=[1])


def test_uninitialized_shared_is_per_block():
    # A host worker runs several blocks in turn, reusing its shared memory: a slot block 0 wrote
    # must count as uninitialised again in every later block.
    with raises("uninit_kernel", "thread (62,0,0)", "reads uninitialized shared memory") as e:
        run(
            "uninit_kernel",
            outputs=[torch.zeros(64 * 8, dtype=I32)],
            grid=(8,),
            block=(64,),
            smem=64 * 4,
            args=[2],
        )
    assert "block (0,0,0)" not in str(e.value)  # block 0 wrote the slot; later blocks did not


@pytest.mark.parametrize(
    "variant,expect", [(0, list(range(16))), (3, list(range(15, -1, -1)))], ids=["syncwarp", "shfl"]
)
def test_collectives_over_live_lanes_pass(variant, expect):
    out = torch.full((16,), -1, dtype=I32)
    run("exited_lane_kernel", outputs=[out], grid=(3,), args=[variant])
    assert out.tolist() == expect


@pytest.mark.parametrize("variant,site", [(1, "__syncwarp"), (2, "shfl")], ids=["syncwarp", "shfl"])
def test_collective_naming_exited_lane_deadlocks(variant, site):
    with raises(
        "exited_lane_kernel",
        "deadlock",
        "block (",
        "thread (0,0,0) waits at a warp collective (mask 0xffffffff",
        "lanes 0xffff0000 of its mask have exited",
    ):
        run("exited_lane_kernel", outputs=[torch.zeros(16, dtype=I32)], args=[variant])


def test_barrier_and_warp_collective_deadlock():
    out = torch.zeros(64, dtype=I32)
    run("barrier_deadlock_kernel", outputs=[out], block=(64,), args=[0])
    assert torch.equal(out, torch.ones(64, dtype=I32))
    with raises(
        "barrier_deadlock_kernel",
        "deadlock",
        "block (0,0,0)",
        "thread (0,0,0) waits at __syncthreads",
        "thread (1,0,0) waits at a warp collective",
    ):
        run("barrier_deadlock_kernel", outputs=[out], block=(64,), args=[1])


def test_divergent_syncthreads():
    out = torch.zeros(64, dtype=I32)
    run("divergent_barrier_kernel", outputs=[out], block=(64,), args=[0])
    assert torch.equal(out, torch.arange(64, dtype=I32))
    with raises(
        "divergent_barrier_kernel", "block (0,0,0)", "thread (32,0,0)", "divergent __syncthreads"
    ):
        run("divergent_barrier_kernel", outputs=[out], block=(64,), args=[1])


# ------------------------------------------------------------------------------- counters


def sectors_of(base: int, offsets: list[int], nbytes: int) -> int:
    return len(
        {(base + o) // 32 for o in offsets} | {(base + o + nbytes - 1) // 32 for o in offsets}
    )


@pytest.mark.parametrize("stride", [1, 2, 32])
def test_global_coalescing_counters(stride):
    blocks, block = 4, 256
    n = blocks * block
    x = torch.randn(n * stride)
    out = torch.zeros(n)
    stats = run("strided_copy_kernel", [x], [out], grid=(blocks,), block=(block,), args=[stride])
    assert torch.equal(out, x[::stride])
    warps = n // 32
    load = sum(
        sectors_of(x.data_ptr(), [4 * stride * (32 * w + i) for i in range(32)], 4)
        for w in range(warps)
    )
    store = sum(
        sectors_of(out.data_ptr(), [4 * (32 * w + i) for i in range(32)], 4) for w in range(warps)
    )
    assert stats["global_requests"] == 2 * warps
    assert stats["global_sectors"] == load + store
    if x.data_ptr() % 32 == 0:  # torch's CPU allocator aligns to 64 bytes
        assert load == warps * min(32, 4 * stride)
    assert stats["global_bytes_read"] == 4 * n and stats["global_bytes_written"] == 4 * n


@pytest.mark.parametrize("pad,conflicts", [(0, 31), (1, 0)])
def test_shared_bank_conflicts(pad, conflicts):
    x = torch.randn(32, 32)
    out = torch.zeros(32, 32)
    stats = run(
        "transpose_kernel", [x], [out], block=(32, 32), smem=32 * (32 + pad) * 4, args=[pad]
    )
    assert torch.equal(out, x.t())
    assert stats["shared_requests"] == 64  # 32 warps x (store, load)
    assert stats["bank_conflicts"] == 32 * conflicts  # per column-read request
    assert stats["shared_wavefronts"] == 32 + 32 * (1 + conflicts)
    assert stats["barriers"] == 1


def test_sync_loop_speed():
    blocks, block, rounds = 2, 256, 200
    out = torch.zeros(blocks * block, dtype=I32)
    t0 = time.perf_counter()
    stats = run("sync_loop_kernel", outputs=[out], grid=(blocks,), block=(block,), args=[rounds])
    dt = time.perf_counter() - t0
    assert torch.equal(out, torch.full_like(out, rounds))
    assert stats["barriers"] == blocks * rounds
    # Every thread is resumed once per barrier interval (the last to arrive runs on).
    assert stats["fiber_switches"] >= blocks * (block * (rounds + 1) - rounds)
    print(
        f"\nemulator: {stats['fiber_switches'] / dt:.3g} fiber switches/s "
        f"({stats['fiber_switches']} switches in {dt * 1e3:.1f} ms)"
    )
