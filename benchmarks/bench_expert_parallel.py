"""Expert-parallel benchmark: moe_ext.distributed dispatch + local experts + combine across W
processes (NCCL on GPUs, one per device; gloo on CPU), reporting per rank tokens/s and the bytes
each rank sends and receives in the all-to-all exchange, for the variable-size exchange and the
capacity-padded (sync-free) one.

Bytes exchanged per rank (both directions, dispatch + combine): 2 * H * elem * (rows sent + rows
received) for the variable exchange; with capacity C, every rank sends and receives
W * E_local * C rows each way, padding included (the price of having no host sync).

    python benchmarks/bench_expert_parallel.py [--world 2] [--preset qwen3-30b-a3b] [--json out]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shapes import PRESETS  # noqa: E402


def worker(rank, world, init, args, result_path):
    import moe_ext
    from moe_ext import distributed as ep

    cuda = torch.cuda.is_available() and torch.cuda.device_count() >= world
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group(
        "nccl" if cuda else "gloo", init_method=f"file://{init}", rank=rank, world_size=world
    )
    dev = f"cuda:{rank}" if cuda else "cpu"
    shape = PRESETS[args.preset].scaled(args.scale)
    E, k, H, I = shape.num_experts, shape.top_k, shape.hidden, shape.ffn
    dtype = torch.bfloat16 if cuda else torch.float32
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(args.tokens, H, generator=g).to(dev, dtype)
    logits = torch.randn(args.tokens, E, generator=g).to(dev)
    first, last = ep.expert_range(E)
    w1 = torch.randn(last - first, 2 * I, H, generator=g).to(dev, dtype) * H**-0.5
    w2 = torch.randn(last - first, H, I, generator=g).to(dev, dtype) * I**-0.5
    weights, ids = moe_ext.route(logits, k)
    rows = {}
    for mode, capacity in (("variable", None), ("capacity", args.capacity_factor)):
        C = None if capacity is None else max(1, int(capacity * args.tokens * k / E))

        def step():
            x_local, offs, handle = ep.dispatch(x, ids, weights, E, capacity=C)
            R = x_local.shape[0]
            ident = torch.arange(R, device=dev, dtype=torch.int32)
            y_local = moe_ext.moe_mlp(
                x_local, w1, w2, torch.ones(R, 1, device=dev), ident, ident, offs
            )
            return ep.combine(y_local, handle), handle, R

        step()
        dist.barrier()
        times = []
        for _ in range(args.iters):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            _, handle, R = step()
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        t = sorted(times)[len(times) // 2]
        elem = torch.finfo(dtype).bits // 8
        if C is None:
            sent, recv = sum(handle.send_splits), sum(handle.recv_splits)
        else:
            sent = recv = E * C
        rows[mode] = dict(
            seconds_p50=t,
            tokens_per_s=args.tokens / t,
            rows_sent=sent,
            rows_received=recv,
            bytes_exchanged=2 * H * elem * (sent + recv),
            local_rows=R,
            capacity=C,
        )
    Path(result_path).write_text(json.dumps(rows))
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--preset", default="qwen3-30b-a3b", choices=sorted(PRESETS))
    ap.add_argument("--tokens", type=int, default=None, help="tokens per rank")
    ap.add_argument("--scale", type=int, default=None, help="divide H and I by this")
    ap.add_argument("--capacity-factor", type=float, default=1.25)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--json", type=str, default=None)
    args = ap.parse_args()
    cuda = torch.cuda.is_available() and torch.cuda.device_count() >= args.world
    args.tokens = args.tokens or (4096 if cuda else 256)
    args.scale = args.scale or (1 if cuda else 8)
    with tempfile.TemporaryDirectory() as d:
        ctx = mp.get_context("spawn")
        procs = [
            ctx.Process(
                target=worker,
                args=(r, args.world, os.path.join(d, "init"), args, os.path.join(d, f"r{r}.json")),
            )
            for r in range(args.world)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=600)
        if any(p.exitcode != 0 for p in procs):
            sys.exit("a rank failed")
        ranks = [json.loads(Path(d, f"r{r}.json").read_text()) for r in range(args.world)]
    print(
        f"{args.preset}/{args.scale}, {args.world} ranks ({'nccl' if cuda else 'gloo'}), "
        f"{args.tokens} tokens per rank"
    )
    for r, res in enumerate(ranks):
        for mode, row in res.items():
            print(
                f"rank {r} {mode:9s} {row['tokens_per_s']:10.0f} tokens/s  "
                f"{row['bytes_exchanged'] / 1e6:8.2f} MB exchanged  "
                f"(sent {row['rows_sent']} rows, received {row['rows_received']})"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(dict(args=vars(args), ranks=ranks), indent=1))


if __name__ == "__main__":
    main()
