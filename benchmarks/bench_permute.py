"""Permutation benchmark: moe_ext.sort_tokens / permute / unpermute vs plain torch and vs a copy.

For each model shape (Mixtral, DeepSeek-V3, Qwen3-30B-A3B) and routing (uniform; Zipf-skewed:
expert e of a shuffled order drawn with p ~ 1/(e+1)^s, k distinct per token), on bf16 rows,
times in the same run:

  sort_tokens  moe_ext.sort_tokens(ids, E)   vs  torch.sort(ids.flatten(), stable=True) + the
               inverse permutation (scatter) + offsets (searchsorted): the same three outputs
  permute      moe_ext.permute(x, order, slot, k)   vs  x.index_select(0, order // k)
  unpermute    moe_ext.unpermute(yp, order, slot, w)  vs  gather + fp32 weighted sum over k
               (deterministic, like ours), or `--unpermute-baseline index_add` (atomics)

and a device-to-device copy `dst.copy_(src)` moving the same number of bytes (read + written), the
ceiling a memory-bound op can reach. Bytes counted (elem = 2 for bf16, indices int32):

  sort_tokens  N*4 read (ids) + 2*N*4 + E*4 written (order, slot, offsets)
  permute      N*H*elem read + N*H*elem written + 2*N*4 read (order, slot[order])
  unpermute    N*H*elem read + T*H*elem written + N*4 + N*4 read (slot, fp32 weights)
  unpermute_backward  2*N*H*elem read (grad_y row, yp row per sorted row) + N*H*elem written
               + 4 index/weight words per row; vs the torch formulation (gather of grad_y, a
               scaled copy, a row-wise dot: grad_y read twice and the gathered rows materialised)

Reports p50/p95 µs, GB/s = bytes / p50, the speed-up over torch (torch p50 / ours p50) and the
fraction of copy bandwidth (copy p50 / ours p50). On CUDA: CUDA events around CUDA-graph replays
of `--graph-iters` calls (the ops are sync-free, so they capture). On CPU: wall time, with T
divided by `--tokens-scale` (default 8) so a run takes well under a minute on 2 cores.

    python benchmarks/bench_permute.py [--tokens-scale 8] [--routing uniform zipf] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import metadata, percentile, plot, profile, time_cpu, time_cuda  # noqa: E402
from shapes import PRESETS  # noqa: E402

import moe_ext  # noqa: E402

# (preset, T): the shapes of the brief; T is divided by --tokens-scale
CASES = [
    ("mixtral-8x7b", 4096),
    ("deepseek-v3", 512),
    ("deepseek-v3", 4096),
    ("qwen3-30b-a3b", 4096),
]
OPS = ("sort_tokens", "permute", "unpermute", "unpermute_backward")


def make_ids(T, k, E, routing, zipf_s, device):
    """[T, k] int32, k distinct experts per token: uniform, or Zipf over a shuffled expert order."""
    g = torch.Generator().manual_seed(0)
    if routing == "uniform":
        ids = torch.rand(T, E, generator=g).argsort(dim=1)[:, :k]
    else:
        p = 1.0 / torch.arange(1, E + 1, dtype=torch.float64) ** zipf_s
        hot = torch.randperm(E, generator=g)  # which experts are the popular ones
        ids = hot[torch.multinomial(p.expand(T, E), k, replacement=False, generator=g)]
    return ids.to(torch.int32).to(device)


def torch_sort_tokens(ids, E):
    """sort_tokens' three outputs in plain torch (no -1 ids, no capacity)."""
    vals, order = torch.sort(ids.flatten(), stable=True)
    rows = torch.arange(order.numel(), device=ids.device)
    slot = torch.empty_like(order).scatter_(0, order, rows)
    offsets = torch.searchsorted(
        vals, torch.arange(E, device=ids.device, dtype=vals.dtype), right=True
    )
    return order, slot, offsets


def torch_unpermute_gather(yp, slot, w):
    """y[t] = sum_j w[t,j] * yp[slot[t*k+j]], gathered then summed in fp32 (deterministic)."""
    T, k = w.shape
    rows = yp.index_select(0, slot).view(T, k, -1)
    return (rows.float() * w.unsqueeze(-1)).sum(1).to(yp.dtype)


def torch_unpermute_index_add(yp, order, w):
    """The same sum scattered with index_add_ (atomics on CUDA: order of the adds not fixed)."""
    T, k = w.shape
    y = torch.zeros(T, yp.shape[1], dtype=torch.float32, device=yp.device)
    y.index_add_(0, order // k, yp.float() * w.flatten()[order].unsqueeze(1))
    return y.to(yp.dtype)


def torch_unpermute_backward(gy, yp, order, slot, w, k):
    """The torch formulation of unpermute's two gradients (what autograd would run)."""
    dy_rows = gy.index_select(0, order // k).float()
    w_rows = w.reshape(-1).index_select(0, order)
    grad_yp = (dy_rows * w_rows.unsqueeze(1)).to(yp.dtype)
    dots = (dy_rows * yp.float()).sum(-1)
    grad_w = dots.index_select(0, slot.clamp_min(0)).view(w.shape)
    return grad_yp, grad_w


def op_bytes(name, T, k, E, H, elem):
    """Bytes read + written by one call (formulas in the module docstring)."""
    N = T * k
    if name == "sort_tokens":
        return N * 4 + 2 * N * 4 + E * 4
    if name == "permute":
        return 2 * N * H * elem + 2 * N * 4
    if name == "unpermute_backward":  # grad_y row + yp row read, grad_yp row written, per row
        return 3 * N * H * elem + N * 4 * 4
    return N * H * elem + T * H * elem + N * 4 + N * 4


def pct(times, q):
    return percentile(times, q)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--tokens-scale",
        type=int,
        default=None,
        help="divide every T by this (default 1 on CUDA, 8 on CPU)",
    )
    p.add_argument("--routing", nargs="+", default=["uniform", "zipf"], choices=["uniform", "zipf"])
    p.add_argument("--zipf", type=float, default=1.2, help="Zipf exponent s of the skewed routing")
    p.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS)
    p.add_argument("--unpermute-baseline", default="gather", choices=["gather", "index_add"])
    p.add_argument(
        "--iters", type=int, default=None, help="timed samples (default 20 CUDA, 10 CPU)"
    )
    p.add_argument("--graph-iters", type=int, default=20)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (1 avoids OpenMP wake-up stalls on a busy CPU)",
    )
    p.add_argument("--json", type=str, default=None)
    p.add_argument("--plot", type=str, default=None, help="directory for GB/s plots")
    p.add_argument("--profile", type=str, default=None, help="torch.profiler Chrome trace path")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    scale = args.tokens_scale or (1 if cuda else 8)
    iters = args.iters or (20 if cuda else 10)
    dtype = torch.bfloat16
    elem = torch.finfo(dtype).bits // 8

    def timeit(fn):
        return time_cuda(fn, iters, args.graph_iters) if cuda else time_cpu(fn, iters)

    threads = torch.get_num_threads()
    device_name = torch.cuda.get_device_name() if cuda else f"cpu ({threads} threads)"
    rows = []
    print(f"device {device_name}, bf16, T / {scale}, unpermute baseline {args.unpermute_baseline}")
    print(
        f"{'preset':14s} {'T':>5s} {'routing':8s} {'op':11s} {'us p50':>9s} {'p95':>9s} "
        f"{'GB/s':>7s} {'torch us':>9s} {'x torch':>7s} {'copy GB/s':>9s} {'of copy':>7s}"
    )
    for name, T0 in CASES:
        shape = PRESETS[name]
        T, E, k, H = max(T0 // scale, 1), shape.num_experts, shape.top_k, shape.hidden
        N = T * k
        for routing in args.routing:
            torch.manual_seed(0)
            ids = make_ids(T, k, E, routing, args.zipf, dev)
            order, slot, offsets = moe_ext.sort_tokens(ids, E)
            t_order, t_slot, t_offsets = torch_sort_tokens(ids, E)
            # sanity: both ways agree, so the timings compare the same work
            assert torch.equal(order.long(), t_order) and torch.equal(slot.long(), t_slot)
            assert torch.equal(offsets.long(), t_offsets)
            x = torch.randn(T, H, device=dev, dtype=dtype)
            yp = torch.randn(N, H, device=dev, dtype=dtype)
            w = torch.rand(T, k, device=dev).softmax(-1)
            gy = torch.randn(T, H, device=dev, dtype=dtype)
            ours = dict(
                sort_tokens=lambda: moe_ext.sort_tokens(ids, E),
                permute=lambda: moe_ext.permute(x, order, slot, k),
                unpermute=lambda: moe_ext.unpermute(yp, order, slot, w),
                unpermute_backward=lambda: torch.ops.moe_ext.unpermute_backward(
                    gy, yp, order, slot, w
                ),
            )
            if args.unpermute_baseline == "gather":
                base_unpermute = lambda: torch_unpermute_gather(yp, t_slot, w)  # noqa: E731
            else:
                base_unpermute = lambda: torch_unpermute_index_add(yp, t_order, w)  # noqa: E731
            base = dict(
                sort_tokens=lambda: torch_sort_tokens(ids, E),
                permute=lambda: x.index_select(0, t_order // k),
                unpermute=base_unpermute,
                unpermute_backward=lambda: torch_unpermute_backward(gy, yp, t_order, t_slot, w, k),
            )
            assert torch.equal(ours["permute"](), base["permute"]())
            for op in args.ops:
                nbytes = op_bytes(op, T, k, E, H, elem)
                # a copy reading nbytes/2 and writing nbytes/2: the same bytes moved
                src = torch.ones(nbytes // 2, dtype=torch.uint8, device=dev)
                dst = torch.zeros_like(src)  # both written first: no page faults in the timing
                t_ours, t_base = timeit(ours[op]), timeit(base[op])
                t_copy = timeit(lambda: dst.copy_(src))  # noqa: B023
                del src, dst
                p50, p95 = statistics.median(t_ours), pct(t_ours, 0.95)
                b50, c50 = statistics.median(t_base), statistics.median(t_copy)
                row = dict(
                    preset=name,
                    tokens=T,
                    experts=E,
                    top_k=k,
                    hidden=H,
                    routing=routing,
                    op=op,
                    bytes=nbytes,
                    us_p50=p50,
                    us_p95=p95,
                    gbps=nbytes / p50 / 1e3,
                    torch_us_p50=b50,
                    torch_us_p95=pct(t_base, 0.95),
                    torch_gbps=nbytes / b50 / 1e3,
                    speedup=b50 / p50,
                    copy_us_p50=c50,
                    copy_gbps=nbytes / c50 / 1e3,
                    frac_of_copy=c50 / p50,
                )
                rows.append(row)
                print(
                    f"{name:14s} {T:5d} {routing:8s} {op:11s} {p50:9.1f} {p95:9.1f} "
                    f"{row['gbps']:7.1f} {b50:9.1f} {row['speedup']:6.2f}x "
                    f"{row['copy_gbps']:9.1f} {row['frac_of_copy']:6.0%}"
                )
    if args.json:
        meta = dict(
            torch=torch.__version__,
            cuda=torch.version.cuda,
            device=device_name,
            build=moe_ext.build_info(),
            tokens_scale=scale,
            zipf=args.zipf,
            unpermute_baseline=args.unpermute_baseline,
            iters=iters,
            graph_iters=args.graph_iters if cuda else None,
        )
        meta.update(metadata())
        Path(args.json).write_text(
            json.dumps(dict(bench="permute", meta=meta, rows=rows), indent=1)
        )
    if args.plot:  # harness rows: ours vs torch vs copy, GB/s per preset, one PNG per op/routing
        plot(
            [
                dict(
                    case=dict(
                        preset=f"{r['preset']} T={r['tokens']}", op=r["op"], routing=r["routing"]
                    ),
                    ours=dict(gbps=r["gbps"]),
                    baselines={
                        "torch": dict(gbps=r["torch_gbps"]),
                        "copy": dict(gbps=r["copy_gbps"]),
                    },
                )
                for r in rows
            ],
            args.plot,
            "preset",
            ("op", "routing"),
            "permute",
        )
    if args.profile:
        T, k, E, H = 4096 // scale, 8, 256, 2048
        ids = make_ids(T, k, E, "uniform", args.zipf, dev)
        order, slot, _ = moe_ext.sort_tokens(ids, E)
        x = torch.randn(T, H, device=dev, dtype=dtype)
        profile(
            {
                "moe_ext.sort_tokens": lambda: moe_ext.sort_tokens(ids, E),
                "moe_ext.permute": lambda: moe_ext.permute(x, order, slot, k),
            },
            args.profile,
        )


if __name__ == "__main__":
    main()
