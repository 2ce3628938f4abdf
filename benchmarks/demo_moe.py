"""The main job: one MoE layer (router -> sort -> permute -> grouped GEMMs with SwiGLU ->
weighted combine), forward and backward, through torch.ops.moe_ext, timed next to the plain
PyTorch loop over experts that HF transformers' eager Mixtral block runs. Both compute the same
function from the same weights; the demo checks they agree, then prints timings.

On a machine without a GPU it runs on the CPU (bf16 there uses AVX-512 BF16 where present); by
default H and I are divided by 4 on CPU so the run takes seconds (the shape is labelled).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shapes import PRESETS  # noqa: E402

import moe_ext  # noqa: E402
from moe_ext import reference  # noqa: E402


def moe_ext_layer(x, router_w, w1, w2, shape):
    """MoE forward through moe_ext ops. w1: [E, 2I, H] (HF gate_up_proj), w2: [E, H, I]."""
    E, k, inter = shape.num_experts, shape.top_k, shape.ffn
    logits = x @ router_w.t()
    weights, ids = moe_ext.route(logits, k, **shape.route)
    order, slot, offsets = moe_ext.sort_tokens(ids, E)
    xp = moe_ext.permute(x, order, slot, k)  # [N, H] grouped by expert
    h = moe_ext.grouped_mm(xp, w1.transpose(-2, -1), offsets)  # [N, 2I]
    act = F.silu(h[:, :inter]) * h[:, inter:]
    yp = moe_ext.grouped_mm(act, w2.transpose(-2, -1), offsets)  # [N, H]
    return moe_ext.unpermute(yp, order, slot, weights)


def torch_layer(x, router_w, w1, w2, shape):
    """The same layer as a plain PyTorch loop over experts (HF eager style)."""
    k, inter = shape.top_k, shape.ffn
    logits = (x @ router_w.t()).float()
    weights, ids = reference.route(logits, k, **shape.route)  # pure torch
    y = torch.zeros_like(x, dtype=torch.float32)
    for e in range(shape.num_experts):
        tok, j = torch.where(ids == e)
        if tok.numel() == 0:
            continue
        h = x[tok] @ w1[e].t()
        out = (F.silu(h[:, :inter]) * h[:, inter:]) @ w2[e].t()
        y.index_add_(0, tok, out.float() * weights[tok, j, None])
    return y.to(x.dtype)


def timed(fn, iters, device):
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="mixtral-8x7b", choices=sorted(PRESETS))
    p.add_argument("--tokens", type=int, default=None, help="T (default 4096 GPU / 512 CPU)")
    p.add_argument("--scale", type=int, default=None, help="divide H and I (default 1 GPU / 4 CPU)")
    p.add_argument(
        "--dtype",
        default=None,
        choices=["bfloat16", "float16", "float32"],
        help="default bfloat16, or float32 on a CPU without native bf16 GEMM",
    )
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    shape = PRESETS[args.preset].scaled(args.scale or (1 if on_gpu else 4))
    T = args.tokens or (4096 if on_gpu else 256)
    if args.dtype is None:
        native_bf16 = on_gpu or torch.ops.mkldnn._is_mkldnn_bf16_supported()
        args.dtype = "bfloat16" if native_bf16 else "float32"
        if not native_bf16:
            print("note: this CPU has no native bf16 GEMM (no AVX-512 BF16/AMX); using float32")
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    H, inter, E = shape.hidden, shape.ffn, shape.num_experts
    init = dict(device=device, dtype=dtype)
    x = torch.randn(T, H, **init)
    router_w = torch.randn(E, H, **init) * H**-0.5
    w1 = (torch.randn(E, 2 * inter, H, **init) * H**-0.5).requires_grad_()
    w2 = (torch.randn(E, H, inter, **init) * inter**-0.5).requires_grad_()
    xg = x.clone().requires_grad_()
    dy = torch.randn(T, H, **init)

    print(
        f"moe_ext demo: {shape.name} (H={H}, I={inter}, E={E}, k={shape.top_k}), T={T}, "
        f"{args.dtype} on {device}"
    )
    print(f"build: {moe_ext.build_info()}")

    ours = moe_ext_layer(x, router_w, w1, w2, shape)
    base = torch_layer(x, router_w, w1, w2, shape)
    err = (ours.float() - base.float()).abs().max().item()
    scale = base.float().abs().max().item()
    print(f"max |moe_ext - torch loop| = {err:.3e} (output max {scale:.3e})")

    flops_fwd = 2 * T * shape.top_k * 3 * H * inter  # two GEMMs: H x 2I and I x H per assignment

    def fwd(layer):
        return lambda: layer(x, router_w, w1, w2, shape)

    def fwd_bwd(layer):
        def run():
            y = layer(xg, router_w, w1, w2, shape)
            torch.autograd.grad(y, (xg, w1, w2), dy)

        return run

    rows = []
    for label, layer in (("moe_ext", moe_ext_layer), ("torch loop", torch_layer)):
        with torch.no_grad():
            fwd(layer)()  # warm-up
            t_f = timed(fwd(layer), args.iters, device)
        fwd_bwd(layer)()
        t_fb = timed(fwd_bwd(layer), args.iters, device)
        rows.append((label, t_f, t_fb))
    base_f, base_fb = rows[1][1], rows[1][2]
    print(
        f"{'':12s} {'fwd ms':>10s} {'TFLOP/s':>8s} {'fwd+bwd ms':>11s} {'TFLOP/s':>8s} "
        f"{'x torch (fwd, fwd+bwd)':>24s}"
    )
    for label, t_f, t_fb in rows:
        print(
            f"{label:12s} {t_f:10.2f} {flops_fwd / t_f / 1e9:8.3f} {t_fb:11.2f} "
            f"{3 * flops_fwd / t_fb / 1e9:8.3f} {base_f / t_f:11.2f}x {base_fb / t_fb:11.2f}x"
        )
    print(
        "(median of",
        args.iters,
        "runs; TFLOP/s counts the expert GEMMs only; fwd+bwd = 3x the forward FLOPs)",
    )


if __name__ == "__main__":
    main()
