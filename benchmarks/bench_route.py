"""Router benchmark: moe_ext.route vs the plain-torch router, at real model shapes.

For each router (shapes.ROUTERS: DeepSeek-V3 grouped sigmoid routing, Qwen3-30B-A3B, Mixtral
and, at their real E and top-k, Nemotron 3 Super, Qwen3-Next, Kimi-K2, Hy3, DeepSeek-V4 and
E=1024) and T, times `moe_ext.route` and the router as HF transformers writes it in torch
(softmax/sigmoid/sqrt-softplus -> topk -> renormalise; DeepSeek-V3: group top-2 sums, top groups,
masked top-k), both on the same logits in the same run, and reports p50/p95 in µs, GB/s (bytes =
logits read once + weights/ids written once) and the speed-up. On CUDA: CUDA events around CUDA-graph replays of `--graph-iters` calls.
On CPU: wall time of the native CPU op vs torch's CPU ops.

    python benchmarks/bench_route.py [--tokens 1 64 4096] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import metadata, plot, profile, time_cpu, time_cuda  # noqa: E402
from shapes import ROUTERS as ROUTER_SHAPES  # noqa: E402

import moe_ext  # noqa: E402

ROUTERS = [
    "deepseek-v3",
    "qwen3-30b-a3b",
    "mixtral-8x7b",
    "nemotron-3-super",
    "qwen3-next-80b-a3b",
    "kimi-k2",
    "hy3",
    "deepseek-v4",
    "e1024-top8",
    "e1024-top8-grouped",
]


def torch_router(
    logits,
    top_k,
    score_func="softmax",
    renormalize=True,
    correction_bias=None,
    num_groups=1,
    topk_groups=1,
    scaling_factor=1.0,
):
    """The router in plain torch, as HF transformers' Mixtral / Qwen3 / DeepSeek-V3 / V4 code does."""
    x = logits.float()
    if score_func == "softmax":
        scores = torch.softmax(x, -1)
    elif score_func == "sigmoid":
        scores = torch.sigmoid(x)
    else:
        scores = torch.nn.functional.softplus(x).sqrt()
    keys = scores if correction_bias is None else scores + correction_bias
    if num_groups > 1:
        T, E = keys.shape
        group_scores = keys.view(T, num_groups, -1).topk(2, dim=-1)[0].sum(-1)
        group_idx = group_scores.topk(topk_groups, dim=-1, sorted=False)[1]
        mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
        mask = mask.unsqueeze(-1).expand(T, num_groups, E // num_groups).reshape(T, E)
        keys = keys.masked_fill(mask == 0, 0.0)
    ids = keys.topk(top_k, dim=-1, sorted=True)[1]
    w = scores.gather(1, ids)
    if renormalize:
        w = w / (w.sum(-1, keepdim=True) + 1e-20)
    return w * scaling_factor, ids


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, nargs="+", default=None)
    p.add_argument("--presets", nargs="+", default=ROUTERS, choices=sorted(ROUTER_SHAPES))
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--graph-iters", type=int, default=20)
    p.add_argument("--json", type=str, default=None)
    p.add_argument("--plot", type=str, default=None, help="directory for GB/s-vs-T plots")
    p.add_argument("--profile", type=str, default=None, help="torch.profiler Chrome trace path")
    args = p.parse_args()
    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    tokens = args.tokens or ([1, 16, 64, 256, 1024, 4096, 16384] if cuda else [1, 64, 1024, 8192])
    dtype = getattr(torch, args.dtype)
    rows = []
    print(f"device {torch.cuda.get_device_name() if cuda else 'cpu'}, logits {args.dtype}")
    print(
        f"{'preset':18s} {'T':>6s} {'moe_ext us':>11s} {'p95':>8s} {'GB/s':>7s} "
        f"{'torch us':>9s} {'speed-up':>8s}"
    )
    for name in args.presets:
        shape = ROUTER_SHAPES[name]
        E, k = shape.num_experts, shape.top_k
        kw = dict(shape.route)
        bias = kw.pop("bias", False) or (
            kw.get("score_func") == "sigmoid" and kw.get("num_groups", 1) > 1
        )
        for T in tokens:
            torch.manual_seed(0)
            logits = torch.randn(T, E, device=dev, dtype=dtype)
            if bias:
                kw["correction_bias"] = torch.randn(E, device=dev) * 0.1
            ours = lambda: moe_ext.route(logits, k, **kw)  # noqa: E731
            base = lambda: torch_router(logits, k, **kw)  # noqa: E731
            t_ours = (
                time_cuda(ours, args.iters, args.graph_iters)
                if cuda
                else time_cpu(ours, args.iters)
            )
            t_base = (
                time_cuda(base, args.iters, args.graph_iters)
                if cuda
                else time_cpu(base, args.iters)
            )
            p50, p95 = statistics.median(t_ours), sorted(t_ours)[int(0.95 * (len(t_ours) - 1))]
            b50 = statistics.median(t_base)
            nbytes = T * E * logits.element_size() + T * k * 8
            row = dict(
                preset=name,
                tokens=T,
                experts=E,
                top_k=k,
                us_p50=p50,
                us_p95=p95,
                gbps=nbytes / p50 / 1e3,
                torch_us_p50=b50,
                speedup=b50 / p50,
            )
            rows.append(row)
            print(
                f"{name:18s} {T:6d} {p50:11.2f} {p95:8.2f} {row['gbps']:7.2f} {b50:9.2f} "
                f"{row['speedup']:7.2f}x"
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps(dict(bench="route", meta=metadata(), rows=rows), indent=1)
        )
    if args.plot:  # harness rows: ours vs the torch router, GB/s against T, one PNG per preset
        plot(
            [
                dict(
                    case=dict(preset=r["preset"], tokens=r["tokens"]),
                    ours=dict(gbps=r["gbps"]),
                    baselines={"torch": dict(gbps=r["gbps"] * r["speedup"] ** -1)},
                )
                for r in rows
            ],
            args.plot,
            "tokens",
            ("preset",),
            "route",
        )
    if args.profile:
        logits = torch.randn(4096, 256, device=dev, dtype=dtype)
        profile(
            {
                "moe_ext.route": lambda: moe_ext.route(logits, 8),
                "torch router": lambda: torch_router(logits, 8),
            },
            args.profile,
        )


if __name__ == "__main__":
    main()
