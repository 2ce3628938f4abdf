"""Grouped GEMM benchmark: moe_ext.grouped_mm vs torch._grouped_mm, a per-expert torch.mm loop,
and one dense torch.mm of the same FLOPs (the roofline a grouped GEMM can approach).

Cases are the expert GEMMs of real models (benchmarks/shapes.py): for T tokens routed top-k
over E experts, M = T*k rows grouped by expert, and the three GEMMs of a layer's training step
for the up/gate projection (K = H, N = 2I; HF gate_up_proj [E, 2I, H] read transposed in place):

  fwd  out[M, N]     = x[M, K] @ w[E, K, N]           2D x 3D, rows grouped by offs
  dA   dx[M, K]      = dout[M, N] @ w[E, N, K]        2D x 3D, the weight transposed
  dB   dw[E, K, N]   = x[M, K]ᵀ @ dout[M, N]          2D x 2D, ragged K (the weight gradient)

plus tgale96's MegaBlocks shape (E=128, K=2048, N=1536, 65536 rows) and decode (M = 1..64 rows
per expert). Routing: uniform (every expert M/E rows) or Zipf-skewed (expert e of a shuffled
order gets rows with p ~ 1/(e+1)^1.2; several get none). FLOPs = 2*M*K*N for every form.

Timing (same run for every column): on CUDA, CUDA events around each call after a 256 MB L2
flush, median (p50) and p95 over --iters; on CPU, wall time over --iters with the shapes scaled
down by --cpu-scale (T and H, I divided) so a run takes about a minute on 2 cores (CPU numbers
say nothing about GPU speed; they exercise the script). Columns: µs, TFLOP/s, and the ratio
ours / baseline (> 1: we are faster) for each baseline that accepts the case. `--paths sm80
sm90` times both kernel families (mma.sync; TMA + wgmma) per case on an H100; "ours" is the
faster, and each path's TFLOP/s is in the row and the JSON.

    python benchmarks/bench_grouped_gemm.py [--presets ...] [--forms fwd dA dB] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import measure, metadata  # noqa: E402
from shapes import PRESETS  # noqa: E402

import moe_ext  # noqa: E402

# (case name, preset or None, T tokens (GPU), explicit (E, K, N, M) for non-preset shapes)
CASES = [
    ("mixtral-8x7b", "mixtral-8x7b", 4096, None),
    ("qwen3-30b-a3b", "qwen3-30b-a3b", 8192, None),
    ("deepseek-v3", "deepseek-v3", 4096, None),
    ("olmoe-1b-7b", "olmoe-1b-7b", 4096, None),
    ("tgale96-megablocks", None, None, (128, 2048, 1536, 65536)),
]
DECODE_ROWS_PER_EXPERT = (1, 8, 64)


def group_rows(M: int, E: int, routing: str, gen: torch.Generator) -> list[int]:
    if routing == "uniform":
        return [M // E + (1 if e < M % E else 0) for e in range(E)]
    p = 1.0 / torch.arange(1, E + 1, dtype=torch.float64) ** 1.2
    p = p[torch.randperm(E, generator=gen)]
    idx = torch.multinomial(p, M, replacement=True, generator=gen)
    return torch.bincount(idx, minlength=E).tolist()


def time_fn(fn, iters):
    """p50, p95 µs: CUDA events after an L2 flush per sample on GPU (the harness), wall time
    on CPU."""
    m = measure(fn, iters, l2_flush=True)
    return m["p50"], m["p95"]


def make_problem(form, E, K, N, rows, dtype, device, gen):
    M = sum(rows)
    offs = torch.tensor(rows, dtype=torch.int64).cumsum(0).to(torch.int32).to(device)

    # drawn where the generator lives (a CUDA generator: on the device, for GB-sized operands)
    def rnd(*s):
        return torch.randn(*s, generator=gen, device=gen.device).to(device=device, dtype=dtype)

    if form == "fwd":  # x @ gate_up_projᵀ, weights stored [E, N, K]
        return rnd(M, K), rnd(E, N, K).transpose(-2, -1), offs
    if form == "dA":  # dout @ w, w = gate_up_proj [E, N, K]
        return rnd(M, N), rnd(E, N, K), offs
    return rnd(M, K).t(), rnd(M, N), offs  # dB: xᵀ @ dout, ragged K = M


def baselines(form, a, b, offs, rows):
    """name -> callable computing the same result with torch."""
    out = {}
    has_torch_gmm = hasattr(torch, "_grouped_mm")

    def torch_gmm():
        return torch._grouped_mm(a, b, offs=offs)

    if has_torch_gmm:
        try:
            torch_gmm()
            out["torch._grouped_mm"] = torch_gmm
        except (RuntimeError, NotImplementedError):
            pass
    bounds = [0]
    for r in rows:
        bounds.append(bounds[-1] + r)

    def loop():
        if form == "dB":
            return torch.stack([a[:, lo:hi] @ b[lo:hi] for lo, hi in zip(bounds, bounds[1:])])
        res = a.new_empty(a.shape[0], b.shape[-1])
        for e, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
            if hi > lo:
                torch.mm(a[lo:hi], b[e], out=res[lo:hi])
        return res

    out["torch.mm loop"] = loop
    M, K = (a.shape[1], a.shape[0]) if form == "dB" else a.shape
    N = b.shape[-1]
    if form == "dB":  # same FLOPs: [K, M] @ [M, N]
        da, db = a.contiguous(), b
    else:
        da = a
        db = torch.empty(K, N, device=a.device, dtype=a.dtype).normal_()
    out["dense torch.mm"] = lambda: torch.mm(da, db)
    return out


def plot_bars(runs, out_dir):
    """TFLOP/s of moe_ext and each baseline per (case, form, routing): one grouped bar chart."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    labels = [f"{r['case']} {r['form']} {r['routing']}" for r in runs]
    series = {"moe_ext": [r["ours_tflops"] for r in runs]}
    for r in runs:
        for b in r["baselines"]:
            series.setdefault(b, [])
    for b in list(series)[1:]:
        series[b] = [r["baselines"].get(b, {}).get("tflops", 0.0) for r in runs]
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(runs)), 4))
    width = 0.8 / len(series)
    for i, (name, vals) in enumerate(series.items()):
        ax.bar([x + i * width for x in range(len(runs))], vals, width, label=name)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(runs))], labels, rotation=75, fontsize=6)
    ax.set_ylabel("TFLOP/s")
    ax.legend(fontsize=7)
    fig.tight_layout()
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    fig.savefig(Path(out_dir) / "grouped_gemm.png", dpi=100)
    plt.close(fig)
    print(f"wrote {Path(out_dir) / 'grouped_gemm.png'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--presets", nargs="+", default=[c[0] for c in CASES], choices=[c[0] for c in CASES]
    )
    ap.add_argument("--forms", nargs="+", default=["fwd", "dA", "dB"], choices=["fwd", "dA", "dB"])
    ap.add_argument(
        "--routing", nargs="+", default=["uniform", "zipf"], choices=["uniform", "zipf"]
    )
    ap.add_argument("--no-decode", action="store_true", help="skip the decode cases")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--cpu-scale", type=int, default=16, help="divide T, H, I by this on CPU")
    ap.add_argument(
        "--paths",
        nargs="+",
        default=["auto"],
        choices=["auto", "sm80", "sm90"],
        help="kernel families to time (MOE_EXT_GEMM_PATH): on an H100 pass "
        "'sm80 sm90' to report the mma.sync and the TMA+wgmma kernels side by side",
    )
    ap.add_argument("--json", type=str, default=None)
    ap.add_argument("--plot", type=str, default=None, help="directory for a TFLOP/s bar chart")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, args.dtype)
    if device == "cpu" and dtype != torch.float32 and not torch.backends.mkldnn.is_available():
        dtype = torch.float32
    iters = args.iters or (50 if device == "cuda" else 3)
    scale = 1 if device == "cuda" else args.cpu_scale
    gen = torch.Generator().manual_seed(0)
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    print(
        f"device {name}, {args.dtype}, {'CUDA events, L2 flushed' if device == 'cuda' else f'CPU wall time, shapes / {scale}'}"
    )

    runs = []
    for case, preset, T, explicit in CASES:
        if case not in args.presets:
            continue
        if explicit:
            E, K, N, M = explicit
            K, N, M = max(16, K // scale), max(16, N // scale), max(E, M // scale)
        else:
            s = PRESETS[preset]
            E, K, N = s.num_experts, max(16, s.hidden // scale), max(16, 2 * s.ffn // scale)
            M = max(E, T // scale) * s.top_k
        shapes = [(routing, group_rows(M, E, routing, gen)) for routing in args.routing]
        if not args.no_decode:
            shapes += [(f"decode{r}", [r] * E) for r in DECODE_ROWS_PER_EXPERT]
        for routing, rows in shapes:
            for form in args.forms:
                if routing.startswith("decode") and form != "fwd":
                    continue
                a, b, offs = make_problem(form, E, K, N, rows, dtype, device, gen)
                Mt = sum(rows)
                flops = 2 * Mt * K * N
                paths = {}
                for path in args.paths:
                    os.environ["MOE_EXT_GEMM_PATH"] = path
                    try:
                        us, p95 = time_fn(lambda: moe_ext.grouped_mm(a, b, offs), iters)
                    except RuntimeError:  # this path does not take the case (e.g. sm90 on dB)
                        continue
                    paths[path] = dict(us=us, p95_us=p95, tflops=flops / us / 1e6)
                os.environ.pop("MOE_EXT_GEMM_PATH", None)
                if not paths:
                    continue
                best = min(paths, key=lambda k: paths[k]["us"])
                ours_us, ours_p95 = paths[best]["us"], paths[best]["p95_us"]
                row = dict(
                    case=case,
                    form=form,
                    routing=routing,
                    E=E,
                    M=Mt,
                    K=K,
                    N=N,
                    dtype=str(dtype)[6:],
                    ours_us=ours_us,
                    ours_p95_us=ours_p95,
                    ours_tflops=flops / ours_us / 1e6,
                    best_path=best,
                    paths=paths,
                    baselines={},
                )
                for bname, fn in baselines(form, a, b, offs, rows).items():
                    us, p95 = time_fn(fn, iters)
                    row["baselines"][bname] = dict(
                        us=us, p95_us=p95, tflops=flops / us / 1e6, speedup=us / ours_us
                    )
                runs.append(row)
                ratios = "  ".join(
                    f"{k}: {v['tflops']:.2f} TF ({v['speedup']:.2f}x)"
                    for k, v in row["baselines"].items()
                )
                per_path = " ".join(f"{k}={v['tflops']:.2f}TF" for k, v in paths.items())
                print(
                    f"{case:20s} {form:3s} {routing:9s} M={Mt:6d} K={K:5d} N={N:5d}  "
                    f"ours {ours_us:9.1f} us {row['ours_tflops']:7.2f} TF ({per_path}) | {ratios}"
                )
    if args.plot and runs:
        plot_bars(runs, args.plot)
    if args.json:
        meta = metadata(scale=scale, iters=iters, l2_flush=device == "cuda")
        Path(args.json).write_text(
            json.dumps(dict(bench="grouped_gemm", meta=meta, runs=runs), indent=1)
        )
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
