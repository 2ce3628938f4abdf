"""MoE layer benchmark: moe_ext.MoE forward and forward+backward against two torch pipelines
with the same weights, measured in the same run:

  eager loop     HF transformers' eager experts: per expert, gather its tokens, up/gate GEMM,
                 SwiGLU, down GEMM, weighted index_add back (a Python loop over experts)
  torch gmm      the torch._grouped_mm pipeline (HF's "grouped_mm" experts): torch.sort of the
                 expert ids, index gather, two torch._grouped_mm, SwiGLU, weighted scatter back
  dense mm       one torch.mm of the same FLOPs ([T*k, H] @ [H, 3I]; x3 FLOPs -- three mms --
                 for fwd+bwd): the roofline a grouped layer is held to

Router included in all three (the same linear + softmax/sigmoid top-k). FLOPs counted: the
experts' GEMMs, 2*T*k*H*2I + 2*T*k*I*H forward; x3 for forward+backward. Each row also reports,
per implementation, the GEMM FLOPs it executes over those counted (moe_ext's fwd+bwd: 1.0 with
the default "save_h" memory policy, 22/18 = 1.22 with --memory-policy recompute, the counts
tests/test_moe_mlp_backward.py asserts on the emulator; the torch pipelines save every GEMM
input: 1.0) and, for forward+backward, the activation memory the forward saves for the backward
(saved_activation_bytes: autograd's saved tensors, parameters and input excluded). Presets: Mixtral-8x7B,
Qwen3-30B-A3B (T=32768 on a GPU), DeepSeek-V3, OLMoE; uniform-ish routing from random router
weights. On CPU: T / --cpu-scale and H, I / 8 (unless --full-shape), and no eager-loop fwd+bwd
for E > 64 (minutes per call); the CPU numbers say nothing about GPU speed.

    python benchmarks/bench_moe_layer.py [--presets ...] [--json out.json] [--plot dir]
    # the CPU goal: Qwen3-30B-A3B expert shape, T = 1024, forward vs a dense mm of equal FLOPs
    python benchmarks/bench_moe_layer.py --presets qwen3-30b-a3b --tokens 1024 --full-shape \
        --modes fwd --dtype bfloat16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Row, add_common_args, device, measure, plot, profile, progress, write_json  # noqa: E402
from shapes import PRESETS  # noqa: E402

import moe_ext  # noqa: E402

CASES = [
    ("mixtral-8x7b", 4096),
    ("qwen3-30b-a3b", 32768),
    ("deepseek-v3", 4096),
    ("olmoe-1b-7b", 8192),
]


def torch_route(layer, x):
    logits = layer.router(x).float()
    ra = layer.route_args
    scores = torch.sigmoid(logits) if ra["score_func"] == "sigmoid" else torch.softmax(logits, -1)
    w, ids = torch.topk(scores, layer.top_k, dim=-1)
    if ra["renormalize"]:
        w = w / (w.sum(-1, keepdim=True) + 1e-20)
    return w * ra["scaling_factor"], ids


def eager_loop(layer, x):
    w, ids = torch_route(layer, x)
    I = layer.ffn_size
    y = torch.zeros_like(x, dtype=torch.float32)
    for e in range(layer.num_experts):
        tok, j = torch.where(ids == e)
        if tok.numel() == 0:
            continue
        h = x[tok] @ layer.gate_up_proj[e].t()
        a = torch.nn.functional.silu(h[:, :I]) * h[:, I:]
        out = (a @ layer.down_proj[e].t()).float() * w[tok, j].unsqueeze(1)
        y.index_add_(0, tok, out)
    return y.to(x.dtype)


def torch_gmm(layer, x):
    w, ids = torch_route(layer, x)
    I, k = layer.ffn_size, layer.top_k
    flat = ids.reshape(-1)
    sorted_ids, perm = torch.sort(flat, stable=True)
    counts = torch.bincount(sorted_ids, minlength=layer.num_experts)
    offs = torch.cumsum(counts, 0).to(torch.int32)
    xs = x[perm // k]
    h = torch._grouped_mm(xs, layer.gate_up_proj.transpose(-2, -1), offs=offs)
    a = torch.nn.functional.silu(h[:, :I]) * h[:, I:]
    out = torch._grouped_mm(a, layer.down_proj.transpose(-2, -1), offs=offs)
    out = out.float() * w.reshape(-1)[perm].unsqueeze(1)
    y = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    y.index_add_(0, perm // k, out)
    return y.to(x.dtype)


def executed_over_ideal(impl: str, mode: str) -> float:
    """Executed over counted expert-GEMM FLOPs (6 N H I forward, 12 N H I backward). Every
    implementation runs exactly the counted GEMMs, except moe_ext's backward under the
    "recompute" memory policy, which recomputes h = x w1ᵀ first (4 N H I more); moe_ext never
    re-runs the second forward GEMM."""
    recompute = moe_ext.get_moe_mlp_memory_policy() == "recompute"
    return 22 / 18 if (impl, mode) == ("moe_ext", "fwd+bwd") and recompute else 1.0


def saved_activation_bytes(fn, exclude=()) -> int:
    """Bytes of the tensors autograd saves for the backward during one forward ``fn()`` (its
    result's graph), each storage once, not counting ``exclude`` (the parameters and the input,
    alive anyway): the training memory a forward holds until its backward, measured through
    torch.autograd.graph.saved_tensors_hooks. Device-independent and exact, unlike a process
    memory peak on CPU."""
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(seen.values())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--presets", nargs="+", default=[c[0] for c in CASES], choices=[c[0] for c in CASES]
    )
    ap.add_argument("--cpu-scale", type=int, default=64, help="divide T by this on CPU")
    ap.add_argument("--tokens", type=int, default=None, help="T for every preset (overrides)")
    ap.add_argument("--full-shape", action="store_true", help="on CPU too, the presets' real H, I")
    ap.add_argument("--modes", nargs="+", default=["fwd", "fwd+bwd"], choices=["fwd", "fwd+bwd"])
    ap.add_argument(
        "--dtype",
        default=None,
        choices=["bfloat16", "float32"],
        help="default bf16 on CUDA, fp32 on CPU (no native bf16 GEMM on most CPUs)",
    )
    ap.add_argument(
        "--memory-policy",
        default=None,
        choices=["save_h", "recompute"],
        help="moe_ext.set_moe_mlp_memory_policy for the fwd+bwd rows (default: the library's)",
    )
    add_common_args(ap)
    args = ap.parse_args()
    if args.memory_policy:
        moe_ext.set_moe_mlp_memory_policy(args.memory_policy)
    dev = device()
    cuda = dev == "cuda"
    dtype = getattr(torch, args.dtype or ("bfloat16" if cuda else "float32"))
    iters = args.iters or (2 if args.smoke else 20 if cuda else 3)
    rows, profiled = [], False
    for name, T0 in progress(CASES, "moe layer"):
        if name not in args.presets:
            continue
        shape = PRESETS[name].scaled(1 if cuda or args.full_shape else 8)
        T = args.tokens or (T0 if cuda else max(64, T0 // args.cpu_scale))
        if args.smoke:
            shape, T = PRESETS[name].scaled(32), 32
        torch.manual_seed(0)
        layer = moe_ext.MoE(
            shape.hidden,
            shape.ffn,
            shape.num_experts,
            shape.top_k,
            **shape.route,
            dtype=dtype,
            device=dev,
        )
        x = torch.randn(T, shape.hidden, dtype=dtype, device=dev)
        has_gmm = hasattr(torch, "_grouped_mm")
        if has_gmm:
            try:
                torch_gmm(layer, x)
            except (RuntimeError, NotImplementedError):
                has_gmm = False
        impls = {"moe_ext": layer, "eager loop": lambda xx: eager_loop(layer, xx)}
        if has_gmm:
            impls["torch gmm"] = lambda xx: torch_gmm(layer, xx)
        flops = 2 * T * shape.top_k * shape.hidden * 3 * shape.ffn
        dense_a = torch.randn(T * shape.top_k, shape.hidden, dtype=dtype, device=dev)
        dense_b = torch.randn(shape.hidden, 3 * shape.ffn, dtype=dtype, device=dev)
        for mode in args.modes:
            measured = {}
            for bname, impl in impls.items():
                if (
                    mode == "fwd+bwd"
                    and bname == "eager loop"
                    and not cuda
                    and shape.num_experts > 64
                ):
                    continue  # minutes per call on a 2-core CPU (autograd through 256 gathers)
                if mode == "fwd":

                    def run(impl=impl):
                        with torch.no_grad():
                            impl(x)
                else:

                    def run(impl=impl):
                        impl(x.detach().requires_grad_(True)).float().sum().backward()

                measured[bname] = measure(run, iters, l2_flush=cuda)
                if mode == "fwd+bwd":
                    params = [*layer.parameters()]
                    xs = x.detach().requires_grad_(True)
                    saved = saved_activation_bytes(lambda impl=impl, xs=xs: impl(xs), params + [xs])
                    measured[bname]["saved_mb"] = saved / 2**20
                measured[bname]["executed_over_ideal"] = executed_over_ideal(bname, mode)
            reps = 3 if mode == "fwd+bwd" else 1
            measured["dense mm"] = measure(
                lambda reps=reps: [torch.mm(dense_a, dense_b) for _ in range(reps)],
                iters,
                l2_flush=cuda,
            )
            ours = measured.pop("moe_ext")
            row = Row(
                "moe_layer",
                dict(
                    preset=name,
                    tokens=T,
                    hidden=shape.hidden,
                    ffn=shape.ffn,
                    experts=shape.num_experts,
                    top_k=shape.top_k,
                    mode=mode,
                    dtype=str(dtype)[6:],
                    memory_policy=moe_ext.get_moe_mlp_memory_policy(),
                ),
                ours,
                measured,
                flops=flops * (3 if mode == "fwd+bwd" else 1),
            ).finish()
            rows.append(row)
            mem = lambda m: (  # noqa: E731
                f", {m['saved_mb']:.0f} MB saved for bwd, x{m['executed_over_ideal']:.2f} FLOPs"
                if "saved_mb" in m
                else ""
            )
            ratios = "  ".join(
                f"{b}: {m['tflops']:.3f} TF ({m['speedup']:.2f}x"
                f"{'' if m['speedup_reliable'] else ', noise floor'}{mem(m)})"
                for b, m in row["baselines"].items()
            )
            ours_m = row["ours"]
            print(
                f"{name:16s} T={T:6d} {mode:8s} moe_ext {ours_m['p50']:10.1f} us "
                f"{ours_m['tflops']:.3f} TF{mem(ours_m)} | {ratios}"
            )
        if args.profile and not profiled:
            profile(
                {"moe_ext.MoE": lambda: layer(x), "eager loop": lambda: eager_loop(layer, x)},  # noqa: B023
                args.profile,
            )
            profiled = True
    if args.json:
        write_json(args.json, "moe_layer", rows, iters=iters)
    if args.plot:
        plot(rows, args.plot, "tokens", ("preset", "mode"), "moe_layer")


if __name__ == "__main__":
    main()
