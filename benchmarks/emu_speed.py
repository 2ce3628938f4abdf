"""Speed of the CPU SIMT emulator: fiber switches per second, and a 256x256x256 bf16 GEMM.

Runs the self-test kernel `sync_loop_kernel` (csrc/emu/selftest_exec.cpp): every thread of a
256-thread block passes `--rounds` __syncthreads in a loop, so each round resumes every fiber once.
Prints switches/s = fiber_switches / wall time (the emulator runs synchronously on the CPU, so
wall time around the call is the launch's time). Then times the test tile GEMM
(csrc/kernels/testing/tile_gemm.cuh: mma.sync m16n8k16, ldmatrix, 2-stage cp.async, 128-thread
blocks) at `--gemm` M = N = K. For humans; the tests assert nothing on time.

    PYTHONPATH=python python benchmarks/emu_speed.py [--blocks 4] [--threads 256] [--rounds 2000]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from moe_ext import emu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--threads", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many launches")
    ap.add_argument("--gemm", type=int, default=256, help="M = N = K of the tile GEMM timing")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out = torch.zeros(a.blocks * a.threads, dtype=torch.int32)
    best = None
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        torch.ops.moe_ext_emu_test.exec_run(
            "sync_loop_kernel", [], [out], [a.blocks], [a.threads], 0, [a.rounds]
        )
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    stats = emu.last_launch_stats()
    assert int(out.min()) == a.rounds, "kernel did not complete its rounds"
    res = {
        "blocks": a.blocks,
        "threads": a.threads,
        "rounds": a.rounds,
        "fiber_switches": stats["fiber_switches"],
        "barriers": stats["barriers"],
        "seconds": best,
        "switches_per_s": stats["fiber_switches"] / best,
    }
    n = a.gemm
    x = torch.randn(n, n, dtype=torch.bfloat16)
    w = torch.randn(n, n, dtype=torch.bfloat16)
    gemm_best = None
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        torch.ops.moe_ext_emu_test.tile_gemm(x, w)
        dt = time.perf_counter() - t0
        gemm_best = dt if gemm_best is None else min(gemm_best, dt)
    gstats = emu.last_launch_stats()
    res.update(
        gemm_size=n,
        gemm_seconds=gemm_best,
        gemm_mma=gstats["mma"],
        gemm_fiber_switches=gstats["fiber_switches"],
    )
    if a.json:
        print(json.dumps(res))
    else:
        print(
            f"{res['fiber_switches']} fiber switches, {res['barriers']} barriers in "
            f"{best * 1e3:.1f} ms: {res['switches_per_s'] / 1e6:.2f} M switches/s "
            f"({best / res['fiber_switches'] * 1e9:.0f} ns per switch, host threads share the "
            f"blocks)"
        )
        print(
            f"tile GEMM {n}x{n}x{n} bf16 (128-thread blocks): {gemm_best * 1e3:.1f} ms, "
            f"{gstats['mma']} mma.sync, {gstats['fiber_switches']} fiber switches"
        )


if __name__ == "__main__":
    main()
