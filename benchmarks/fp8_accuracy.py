"""The FP8 accuracy table: grouped_mm_fp8 against the contract's formula in fp64 (over the same
quantized values) and moe_mlp_fp8 against the contract's steps (each GEMM in fp64) and against
the dequantized-weights MLP, on every backend this build has (CPU, the emulator with both MMA
paths, CUDA when there is one). Errors are relative to the terms' magnitude sum |a_s b_s a b|
(the GEMM) or to the output's norm (the MLP).

    python benchmarks/fp8_accuracy.py [--markdown out.md]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import moe_ext  # noqa: E402
from moe_ext import reference  # noqa: E402

GEMM_CASES = [  # M, N, K, group rows: K % 128 != 0, K % 16 != 0, empty groups, long K
    (200, 192, 300, [50, 0, 120]),
    (33, 100, 7, [10, 23]),
    (300, 96, 2048, [150, 150]),
    (64, 128, 8192, [64]),
]


def backends():
    out = [("cpu", torch.ops.moe_ext, "cpu", None)]
    if moe_ext.build_info().get("emulator"):
        out += [("emu f16", torch.ops.moe_ext_emu, "cpu", "f16")]
        out += [("emu e4m3", torch.ops.moe_ext_emu, "cpu", "e4m3")]
    if torch.cuda.is_available():
        out += [("cuda f16", torch.ops.moe_ext, "cuda", "f16")]
        out += [("cuda e4m3", torch.ops.moe_ext, "cuda", "e4m3")]
    return out


def gemm_rows():
    from test_grouped_mm_fp8 import make_problem

    rows = []
    for M, N, K, counts in GEMM_CASES:
        a, a_s, b, b_s, offs = make_problem(M, N, K, len(counts), counts, seed=M + K)
        ref = reference.grouped_mm_fp8(a, a_s, b, b_s, offs, torch.float64)
        mag = reference.grouped_mm_fp8(
            a.float().abs().to(torch.float8_e4m3fn),
            a_s,
            b.float().abs().to(torch.float8_e4m3fn),
            b_s,
            offs,
            torch.float64,
        )
        for name, ops, dev, mma in backends():
            if mma:
                os.environ["MOE_EXT_FP8_MMA"] = mma
            args = [t.to(dev) for t in (a, a_s, b, b_s, offs)]
            out = ops.grouped_mm_fp8(*args, torch.float32).cpu().double()
            os.environ.pop("MOE_EXT_FP8_MMA", None)
            err = ((out - ref).abs() / mag.clamp_min(1e-30)).max().item()
            rows.append((f"{M}x{N}x{K} groups {counts}", name, err))
    return rows


def mlp_rows():
    from test_moe_mlp_fp8 import make_layer

    rows = []
    for T, H, I, routing in ((48, 256, 192, "uniform"), (33, 200, 130, "skewed")):
        args = make_layer(T, H, I, 4, 2, routing=routing, seed=T)
        x, w1, w1s, w2, w2s, weights, order, slot, offsets = args
        steps = reference.moe_mlp_fp8(*args).double()
        dense = reference.moe_mlp(
            x.double(),
            reference.dequantize_fp8_blocks(w1, w1s, torch.float64),
            reference.dequantize_fp8_blocks(w2, w2s, torch.float64),
            weights.double(),
            order,
            slot,
            offsets,
        )
        for name, ops, dev, mma in backends():
            if mma:
                os.environ["MOE_EXT_FP8_MMA"] = mma
            y = ops.moe_mlp_fp8(*(t.to(dev) for t in args), "swiglu").cpu().double()
            os.environ.pop("MOE_EXT_FP8_MMA", None)
            case = f"T={T} H={H} I={I} {routing}"
            rows.append(
                (
                    case,
                    name,
                    ((y - steps).norm() / steps.norm()).item(),
                    ((y - dense).norm() / dense.norm()).item(),
                )
            )
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args()
    lines = [
        "| grouped_mm_fp8 case | backend | max err / sum of term magnitudes |",
        "|---|---|---|",
    ]
    lines += [f"| {c} | {b} | {e:.2e} |" for c, b, e in gemm_rows()]
    lines += [
        "",
        "| moe_mlp_fp8 case | backend | vs the contract's steps (rel. L2) | "
        "vs dequantized-weights MLP (rel. L2) |",
        "|---|---|---|---|",
    ]
    lines += [f"| {c} | {b} | {s:.2e} | {d:.2e} |" for c, b, s, d in mlp_rows()]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")


if __name__ == "__main__":
    main()
