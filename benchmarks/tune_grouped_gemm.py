"""Tile-config sweep for the grouped GEMM, per preset expert shape, on a lent GPU.

For each shape (the up/gate and down GEMMs of each preset at T tokens, uniform routing) it times
every kernel choice the launcher can be forced to -- MOE_EXT_GEMM_PATH=sm80 x MOE_EXT_GEMM_CONFIG
in {large, small_m, swap_ab} x MOE_EXT_GEMM_STAGES in {2..5}, and (Hopper only)
MOE_EXT_GEMM_PATH=sm90 x MOE_EXT_GEMM_CONFIG in {sm90, sm90_cluster} -- and writes a table
{shape key: [choices sorted by time]} as JSON. The key is "form:E:K:N:rows_per_expert bucket"
(bucket = power of two of M / E), the quantities the run-time heuristic can see without a host
sync. Loaded with moe_ext.load_gemm_tuning(path) (or MOE_EXT_GEMM_TUNING=path at import), the
table takes precedence over the launcher's heuristic (grouped_gemm.h: swap_ab up to 16 rows per
expert, small_m up to 48, depth from shared memory, sm90 where eligible, in 2x2 clusters from
512 rows per expert) for the shapes it holds. The default token counts cover prefill/training
(4096) and decode (64: 1-4 rows per expert on the 64-128-expert presets, where swap_ab and
small_m compete).

    python benchmarks/tune_grouped_gemm.py --out tuning.json [--tokens 4096 64] [--emu]

--emu runs a tiny sweep on the CPU SIMT emulator (correctness of the sweep machinery only).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import measure, metadata  # noqa: E402
from shapes import PRESETS  # noqa: E402

import moe_ext  # noqa: E402, F401


def tuning_key(E: int, K: int, N: int, M: int) -> str:
    """The table key of a ragged-M problem (M rows over E experts, K x N weights); the C++ side
    (csrc/binding/gemm_tuning.cpp) computes the same string from the launch parameters."""
    return f"2x3:{E}:{K}:{N}:{1 << max(0, M // E).bit_length()}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokens", type=int, nargs="+", default=[4096, 64])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--emu", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available() and not args.emu:
        sys.exit("tune_grouped_gemm.py needs a GPU (or --emu for a dry run on the emulator)")
    dev = "cuda" if not args.emu else "cpu"
    mm = torch.ops.moe_ext_emu.grouped_mm if args.emu else torch.ops.moe_ext.grouped_mm
    hopper = dev == "cuda" and torch.cuda.get_device_capability()[0] == 9 or args.emu
    paths = ["sm80"] + (["sm90"] if hopper else [])
    table = {}
    presets = ["qwen3-30b-a3b"] if args.emu else list(PRESETS)
    token_counts = [64, 8] if args.emu else args.tokens
    for name, T in itertools.product(presets, token_counts):
        s = PRESETS[name].scaled(32) if args.emu else PRESETS[name]
        M, E = T * s.top_k, s.num_experts
        rows = [M // E + (1 if e < M % E else 0) for e in range(E)]
        offs = torch.tensor(rows).cumsum(0).to(torch.int32).to(dev)
        for K, N in ((s.hidden, 2 * s.ffn), (s.ffn, s.hidden)):
            a = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
            b = torch.randn(E, N, K, device=dev, dtype=torch.bfloat16).transpose(-2, -1)
            key = tuning_key(E, K, N, M)
            results = []
            for path, config, stages in itertools.product(
                paths, ["large", "small_m", "swap_ab", "sm90", "sm90_cluster"], [2, 3, 4, 5]
            ):
                # the Ampere kernel's configs x depths; the Hopper kernel's two configs (its
                # depth is fixed)
                if (path == "sm90") != config.startswith("sm90") or (
                    path == "sm90" and stages != 4
                ):
                    continue
                os.environ.update(
                    MOE_EXT_GEMM_PATH=path,
                    MOE_EXT_GEMM_STAGES=str(stages),
                    MOE_EXT_GEMM_CONFIG=config,
                )
                try:
                    m = measure(
                        lambda: mm(a, b, offs),
                        2 if args.emu else args.iters,
                        l2_flush=dev == "cuda",
                    )  # noqa: B023
                except RuntimeError as e:
                    results.append(
                        dict(path=path, config=config, stages=stages, error=str(e)[:200])
                    )
                    continue
                results.append(
                    dict(
                        path=path,
                        config=config,
                        stages=stages,
                        us=m["p50"],
                        tflops=2 * M * K * N / m["p50"] / 1e6,
                    )
                )
            for v in ("MOE_EXT_GEMM_PATH", "MOE_EXT_GEMM_STAGES", "MOE_EXT_GEMM_CONFIG"):
                os.environ.pop(v, None)
            table[key] = sorted(results, key=lambda r: r.get("us", float("inf")))
            best = table[key][0]
            print(
                f"{name:16s} {key:28s} best {best.get('path')} {best.get('config')} "
                f"stages={best.get('stages')} {best.get('tflops', 0):.2f} TF"
            )
    Path(args.out).write_text(
        json.dumps(dict(meta=metadata(tokens=args.tokens), table=table), indent=1)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
