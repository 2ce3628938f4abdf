"""moe_mlp's training step (forward + backward) against its own forward, the previous backward,
the torch._grouped_mm pipeline and a dense torch.mm of equal FLOPs, in one run (issue 22).

Rows, at one preset's expert shape (no router: the expert MLP alone, uniform routing):

  forward            moe_mlp under no_grad (the fused forward)
  fwd+bwd save_h     the default memory policy: h kept, 4 backward GEMMs (6 per step)
  fwd+bwd recompute  h recomputed: 5 backward GEMMs (7 per step)
  fwd+bwd composite  the backward before issue 22, rebuilt here from the public ops: permute, both
                     forward GEMMs recomputed, eager fp32 autograd through the activation,
                     unpermute_backward for the routing-weight gradient, 4 gradient GEMMs (8)
  torch gmm          torch._grouped_mm pipeline: gather, 2 grouped GEMMs, SwiGLU, weighted
                     scatter; autograd saves every intermediate
  dense mm           torch.mm [N, H] @ [H, 3I], x3 for fwd+bwd: the roofline

Per row: median seconds over interleaved repetitions, TFLOP/s of the counted expert GEMM FLOPs
(6 N H I forward, x3 with the backward), the executed/counted GEMM FLOP ratio, and the activation memory the forward saves for the
backward (bench_moe_layer.saved_activation_bytes: autograd's saved tensors, parameters excluded). CPU figures depend on the CPU (state it) and on
the machine's noise; compare ratios from one run.

    python benchmarks/bench_moe_mlp_backward.py [--preset qwen3-30b-a3b] [--tokens 1024]
        [--dtype float32] [--reps 5] [--markdown out.md] [--smoke]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_moe_layer import saved_activation_bytes  # noqa: E402
from shapes import PRESETS  # noqa: E402

import moe_ext  # noqa: E402
from moe_ext.reference import apply_activation  # noqa: E402

ops = torch.ops.moe_ext


class CompositeBackward(torch.autograd.Function):
    """moe_mlp with the backward it had before issue 22 (8 GEMMs per step)."""

    @staticmethod
    def forward(ctx, x, w1, w2, weights, order, slot, offsets):
        ctx.save_for_backward(x, w1, w2, weights, order, slot, offsets)
        return ops.moe_mlp(x, w1, w2, weights, order, slot, offsets, "swiglu", None)

    @staticmethod
    def backward(ctx, dy):
        x, w1, w2, weights, order, slot, offsets = ctx.saved_tensors
        k = weights.shape[1]
        xp = ops.permute(x, order, slot, k)
        h = ops.grouped_mm(xp, w1.transpose(-2, -1), offsets)
        with torch.enable_grad():
            hh = h.float().detach().requires_grad_(True)
            a_acc = apply_activation(hh, "swiglu")
        a = a_acc.detach().to(x.dtype)
        z = ops.grouped_mm(a, w2.transpose(-2, -1), offsets)
        dz, dweights = ops.unpermute_backward(dy.to(x.dtype).contiguous(), z, order, slot, weights)
        da = ops.grouped_mm(dz, w2, offsets)
        dw2 = ops.grouped_mm(dz.t(), a, offsets)
        (dh,) = torch.autograd.grad(a_acc, hh, da.float())
        dh = dh.to(x.dtype)
        dw1 = ops.grouped_mm(dh.t(), xp, offsets)
        dxp = ops.grouped_mm(dh, w1, offsets)
        dx = ops.unpermute(dxp, order, slot, torch.ones_like(weights, dtype=torch.float32))
        return dx, dw1, dw2, dweights, None, None, None


def torch_gmm(x, w1, w2, weights, ids, E):
    """HF's grouped_mm experts: sort, gather, two torch._grouped_mm, SwiGLU, weighted scatter."""
    k = ids.shape[1]
    flat = ids.reshape(-1)
    perm = torch.argsort(flat, stable=True)
    offs = torch.bincount(flat, minlength=E).cumsum(0).to(torch.int32)
    xs = x[perm // k]
    h = torch._grouped_mm(xs, w1.transpose(-2, -1), offs=offs)
    inner = h.shape[-1] // 2
    a = torch.nn.functional.silu(h[:, :inner]) * h[:, inner:]
    z = torch._grouped_mm(a, w2.transpose(-2, -1), offs=offs)
    z = z * weights.reshape(-1)[perm].unsqueeze(1).to(z.dtype)
    return torch.zeros_like(x).index_add_(0, perm // k, z)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="qwen3-30b-a3b", choices=sorted(PRESETS))
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--smoke", action="store_true", help="a tiny shape (exercises the script)")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    s = PRESETS[args.preset].scaled(32) if args.smoke else PRESETS[args.preset]
    T = 32 if args.smoke else args.tokens
    H, I, E, k = s.hidden, s.ffn, s.num_experts, s.top_k
    g = torch.Generator().manual_seed(0)
    x = torch.randn(T, H, generator=g).to(dtype)
    w1 = (torch.randn(E, 2 * I, H, generator=g) * H**-0.5).to(dtype)
    w2 = (torch.randn(E, H, I, generator=g) * I**-0.5).to(dtype)
    weights, ids = moe_ext.route(torch.randn(T, E, generator=g), k)
    order, slot, offsets = moe_ext.sort_tokens(ids, E)
    N = T * k
    flops = 6 * N * H * I
    params = [t.requires_grad_(True) for t in (x.clone(), w1.clone(), w2.clone(), weights.clone())]

    def step(fn):
        def run():
            for t in params:
                t.grad = None
            fn(*params).float().sum().backward()

        return run

    def moe(policy):
        def fn(*ts):
            moe_ext.set_moe_mlp_memory_policy(policy)
            return moe_ext.moe_mlp(*ts, order, slot, offsets)

        return fn

    def forward():
        with torch.no_grad():
            moe_ext.moe_mlp(x, w1, w2, weights, order, slot, offsets)

    # the training rows: their forward of the params, executed/counted GEMM FLOPs
    training = {
        "fwd+bwd save_h": (moe("save_h"), 1.0),
        "fwd+bwd recompute": (moe("recompute"), 22 / 18),
        "fwd+bwd composite (before)": (
            lambda *ts: CompositeBackward.apply(*ts, order, slot, offsets),
            24 / 18,
        ),
        "torch gmm fwd+bwd": (lambda *ts: torch_gmm(*ts, ids, E), 1.0),
    }
    dense_a = torch.randn(N, H, dtype=dtype)
    dense_b = torch.randn(H, 3 * I, dtype=dtype)
    rows = {  # name: (timed call, counted FLOPs / forward's, executed/counted GEMM FLOPs)
        "forward": (forward, 1, 1.0),
        **{name: (step(f), 3, executed) for name, (f, executed) in training.items()},
        "dense mm x3": (lambda: [torch.mm(dense_a, dense_b) for _ in range(3)], 3, 1.0),
    }
    policy = moe_ext.get_moe_mlp_memory_policy()
    times = {name: [] for name in rows}
    try:
        for fn, _, _ in rows.values():  # warm-up
            fn()
        for _ in range(args.reps):  # interleaved: drift hits every row alike
            for name, (fn, _, _) in rows.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        saved = {
            name: saved_activation_bytes(lambda f=f: f(*params), params)
            for name, (f, _) in training.items()
        }
    finally:
        moe_ext.set_moe_mlp_memory_policy(policy)
    med = {name: statistics.median(v) for name, v in times.items()}
    fwd = med["forward"]
    gmm = med["torch gmm fwd+bwd"]
    dense = med["dense mm x3"]
    cpu = platform.processor() or platform.machine()
    out = [
        f"# moe_mlp training step, {args.preset} expert shape (H={H}, I={I}, E={E}, k={k}), "
        f"T={T}, {args.dtype}, CPU ({cpu}, {torch.get_num_threads()} threads), "
        f"median of {args.reps} interleaved runs",
        "",
        "| row | s | TFLOP/s (counted) | x own forward | vs torch gmm fwd+bwd | vs dense mm | "
        "executed/counted GEMM FLOPs | saved for bwd MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, (_, mult, executed) in rows.items():
        t = med[name]
        kept = f"{saved[name] / 2**20:.1f}" if name in saved else "-"
        out.append(
            f"| {name} | {t:.3f} | {mult * flops / t / 1e12:.3f} | {t / fwd:.2f} | "
            f"{gmm / t:.2f} | {(dense * mult / 3) / t:.2f} | {executed:.2f} | {kept} |"
        )
    md = "\n".join(out) + "\n"
    print(md)
    if args.markdown:
        Path(args.markdown).write_text(md)


if __name__ == "__main__":
    main()
