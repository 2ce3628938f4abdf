"""Block-FP8 benchmark: moe_ext's FP8 experts (DeepSeek-V3 scaling: e4m3, one fp32 scale per
128 x 128 weight block, activations per token per 128 channels) against moe_ext's own bf16 path
on the same shapes, in the same run.

Rows, for real model shapes (benchmarks/shapes.py: DeepSeek-V3, Qwen3-30B-A3B, Mixtral) at a
prefill size (T tokens) and decode (1 and 8 rows per expert), uniform and Zipf-skewed routing:

  gemm   grouped_mm_fp8(a_q, a_s, w_q, w_s, offs)  vs  grouped_mm(a, wᵀ, offs) in bf16
         (the first expert GEMM: M = T k rows grouped by expert, K = H, N = 2I); TFLOP/s, and
         for decode the FP8 weight bytes streamed per second (GB/s: E N K bytes per call)
  layer  moe_mlp_fp8 (quantize, gathered GEMM1, activation + quantize, GEMM2, combine)  vs
         moe_mlp in bf16

Baseline torch._scaled_grouped_mm: it takes one scale per row of a and per column of b (row-wise
FP8), not DeepSeek-V3's 128 x 128 blocks, so it cannot run these weights and has no column (the
note is in the JSON). On CPU the shapes are scaled down (--cpu-scale) and the numbers only
exercise the script: CPU FP8 is a per-block fp32 GEMM, never faster than bf16 there. GPU figures come from a
GPU session (benchmarks/gpu_session.sh); none has been measured yet.

    python benchmarks/bench_fp8.py [--presets deepseek-v3 ...] [--json out.json] [--smoke]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Row, add_common_args, device, measure, write_json  # noqa: E402
from bench_grouped_gemm import group_rows  # noqa: E402
from shapes import PRESETS  # noqa: E402

import moe_ext  # noqa: E402

PRESET_NAMES = ("deepseek-v3", "qwen3-30b-a3b", "mixtral-8x7b")
SCALED_GROUPED_MM = "n/a: torch._scaled_grouped_mm takes row-wise scales, not 128x128 blocks"


def rows_cases(shape, T, decode_rows):
    """(phase, M) per case: prefill M = T k, decode M = rows per expert x E."""
    yield "prefill", T * shape.top_k
    for r in decode_rows:
        yield f"decode{r}", r * shape.num_experts


def fp8_weights(E, N, K, dev, gen):
    w = torch.randn(E, N, K, generator=gen, device=gen.device).to(dev) * K**-0.5
    return w.bfloat16(), *moe_ext.ops.quantize_weight_fp8(w)


def gemm_row(shape, phase, M, routing, iters, dev, gen):
    E, K, N = shape.num_experts, shape.hidden, 2 * shape.ffn
    rows = group_rows(M, E, routing, torch.Generator().manual_seed(M))
    offs = torch.tensor(rows).cumsum(0).to(torch.int32).to(dev)
    a = torch.randn(M, K, generator=gen, device=gen.device).to(dev).bfloat16()
    a_q, a_s = moe_ext.quantize_fp8(a)
    w, w_q, w_s = fp8_weights(E, N, K, dev, gen)
    fp8 = measure(lambda: moe_ext.grouped_mm_fp8(a_q, a_s, w_q, w_s, offs), iters, l2_flush=True)
    bf16 = measure(lambda: moe_ext.grouped_mm(a, w.transpose(-2, -1), offs), iters, l2_flush=True)
    active = sum(1 for r in rows if r > 0)
    return Row(
        bench="fp8",
        case=dict(kind="gemm", model=shape.name, phase=phase, M=M, K=K, N=N, routing=routing),
        ours=fp8,
        baselines={"moe_ext_bf16": bf16},
        flops=2.0 * M * K * N,
        bytes=float(active * N * K),  # the FP8 weight bytes of the experts that have rows
    ).finish()


def layer_row(shape, T, routing, iters, dev, gen):
    E, H, I, k = shape.num_experts, shape.hidden, shape.ffn, shape.top_k
    x = torch.randn(T, H, generator=gen, device=gen.device).to(dev).bfloat16()
    rows = group_rows(T * k, E, routing, torch.Generator().manual_seed(T))
    ids = torch.repeat_interleave(torch.arange(E), torch.tensor(rows))[torch.randperm(T * k)]
    ids = ids.view(T, k).to(torch.int32).to(dev)
    weights = torch.rand(T, k, device=dev)
    order, slot, offsets = moe_ext.sort_tokens(ids, E)
    w1, w1_q, w1_s = fp8_weights(E, 2 * I, H, dev, gen)
    w2, w2_q, w2_s = fp8_weights(E, H, I, dev, gen)
    args = (weights, order, slot, offsets)
    fp8 = measure(lambda: moe_ext.moe_mlp_fp8(x, w1_q, w1_s, w2_q, w2_s, *args), iters)
    bf16 = measure(lambda: moe_ext.moe_mlp(x, w1, w2, *args), iters)
    return Row(
        bench="fp8",
        case=dict(kind="layer", model=shape.name, phase="prefill", T=T, routing=routing),
        ours=fp8,
        baselines={"moe_ext_bf16": bf16},
        flops=2.0 * T * k * 3 * H * I,
    ).finish()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=list(PRESET_NAMES))
    ap.add_argument("--tokens", type=int, default=4096, help="prefill tokens (GPU)")
    ap.add_argument("--cpu-scale", type=int, default=16, help="H and I divided by this on CPU")
    add_common_args(ap)
    args = ap.parse_args()
    dev = device()
    gpu = dev == "cuda"
    iters = args.iters or (20 if gpu else 3)
    T = args.tokens if gpu else 64
    decode_rows = (1, 8)
    if args.smoke:
        iters, T, decode_rows = 2, 16, (1,)
    gen = torch.Generator(device=dev).manual_seed(0)
    out = []
    for name in args.presets:
        shape = PRESETS[name] if gpu else PRESETS[name].scaled(args.cpu_scale)
        if args.smoke:
            shape = PRESETS[name].scaled(32)
        for routing in ("uniform", "skewed"):
            for phase, M in rows_cases(shape, T, decode_rows):
                out.append(gemm_row(shape, phase, M, routing, iters, dev, gen))
            out.append(layer_row(shape, T, routing, iters, dev, gen))
    print(SCALED_GROUPED_MM)
    for r in out:
        c, base = r["case"], r["baselines"]["moe_ext_bf16"]
        print(
            f"{c['kind']:5s} {c['model']:22s} {c['phase']:9s} {c['routing']:7s} "
            f"fp8 {r['ours']['p50']:10.1f} us {r['ours'].get('tflops', 0):7.2f} TFLOP/s "
            f"{r['ours'].get('gbps', 0):7.1f} GB/s | bf16 {base['p50']:10.1f} us | "
            f"fp8 speedup {base['speedup']:5.2f}x"
        )
    if args.json:
        write_json(args.json, "fp8", out, note=SCALED_GROUPED_MM)


if __name__ == "__main__":
    main()
