"""The goal figures of a GPU session in one driver, each case appended to a JSON-lines file the
moment it is measured (a timeout or a crash loses only the case in flight).

    python benchmarks/gpu_goals.py --out goals.jsonl [--only gemm decode layer permute route]
    python benchmarks/gpu_goals.py --smoke --out /tmp/goals.jsonl     # tiny sizes, any device

Every row is ``{"bench", "case", "family", "ours": {p50, p95, mean, samples, tflops|gbps},
"baselines": {name: {...}}, "goal": ..., "meets": bool|null}`` plus the device metadata in the
first line (``{"meta": ...}``). Timing: CUDA events (``_harness.measure``), 256 MB L2 flush
before each sample for the GEMMs and the layer, CUDA-graph replay for the µs-scale ops; wall
time on CPU (smoke sizes only: they exercise the driver, they measure nothing).

What is measured (the goals are those of issue 17, H200 bf16):

  gemm     grouped GEMM fwd / dA / dB (bench_grouped_gemm's forms) per kernel family
           (MOE_EXT_GEMM_PATH=sm80; sm90 with MOE_EXT_GEMM_CONFIG=sm90, one CTA per tile, and
           sm90_cluster, 2x2 clusters) at Qwen3-30B-A3B (T=32768), Mixtral-8x7B (T=16384)
           and DeepSeek-V3 (T=8192), uniform routing, vs torch._grouped_mm and one dense
           torch.mm of equal FLOPs. Goal: >= 0.9 x dense and faster than torch._grouped_mm.
  decode   the fwd GEMM at 1 and 8 rows per expert, E=128 (Qwen3-30B-A3B's w1): TB/s of
           weights read (E*K*N*2 bytes / time), as the launcher chooses and with each candidate
           forced (sm80 swap_ab, sm80 small_m, sm90). Goal: >= 2.5 TB/s.
  layer    moe_ext.MoE at Qwen3-30B-A3B, T=32768: fwd and fwd+bwd TFLOP/s of the experts'
           GEMMs (2*T*k*H*3I, x3 with the backward) vs the torch._grouped_mm pipeline.
           Goal: >= 600 TFLOP/s fwd, >= 500 fwd+bwd.
  permute  permute and unpermute at Qwen3-30B-A3B, T=32768 (H=2048, k=8), uniform and Zipf
           ids, vs a device copy (torch.Tensor.copy_) of the same bytes. Goal: >= 0.85 x copy.
  fp8      grouped_mm_fp8 (DeepSeek-V3 block FP8, MOE_EXT_FP8_MMA=f16 and e4m3) vs moe_ext's
           bf16 grouped_mm on the same fwd GEMM at DeepSeek-V3 (T=8192) and Qwen3-30B-A3B
           (T=32768); decode (1 and 8 rows per expert, E=128): TB/s of FP8 weights.
           Goals (issue 21): >= 1.6 x bf16; decode >= 2.5 TB/s.
  route    DeepSeek-V3 routing (E=256, top-8, sigmoid, 8 groups / top-4, correction bias,
           scale 2.5) at T=1 and T=64 under CUDA-graph replay, vs the torch router.
           Goal: <= 3 µs.

``family`` says which kernel ran: the CUDA kernels a torch.profiler trace of one call shows
(``sm90`` = grouped_gemm_sm90_kernel, ``sm80`` = grouped_gemm_tc_kernel, ...), or ``cpu``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Row, measure, metadata  # noqa: E402
from bench_grouped_gemm import group_rows  # noqa: E402
from bench_grouped_gemm import make_problem as bench_make_problem  # noqa: E402
from bench_moe_layer import torch_gmm  # noqa: E402
from bench_permute import make_ids, op_bytes, torch_unpermute_gather  # noqa: E402
from bench_route import torch_router  # noqa: E402
from shapes import PRESETS  # noqa: E402

import moe_ext  # noqa: E402

CUDA = torch.cuda.is_available()
DEV = "cuda" if CUDA else "cpu"
GEMM_TOKENS = {"qwen3-30b-a3b": 32768, "mixtral-8x7b": 16384, "deepseek-v3": 8192}
FAMILIES = {
    "grouped_gemm_sm90_kernel": "sm90",
    "grouped_gemm_tc_kernel": "sm80",
    "grouped_gemm_simt_kernel": "sm80-fp32",
    "grouped_mm_fp8_kernel": "fp8-mma",
}


def make_problem(form, E, K, N, rows, dtype, device, seed):
    """bench_grouped_gemm.make_problem with a generator on the device (GB-sized operands drawn
    on the host would spend the lease in the CPU's randn)."""
    return bench_make_problem(
        form, E, K, N, rows, dtype, device, torch.Generator(device=device).manual_seed(seed)
    )


def family_of(fn) -> str:
    """Which kernel family one call of fn ran: from a profiler trace on CUDA, 'cpu' on CPU."""
    if not CUDA:
        return "cpu"
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    names = {e.name for e in prof.events() if e.device_type.name == "CUDA"}
    fams = sorted({f for n in names for k, f in FAMILIES.items() if k in n})
    return "+".join(fams) or "other: " + ",".join(sorted(names))[:200]


class Sink:
    """Appends one JSON line per measured case and keeps the rows for the closing table."""

    def __init__(self, path: str, smoke: bool):
        self.path, self.rows = Path(path), []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        meta = metadata(smoke=smoke)
        self.path.write_text(json.dumps({"meta": meta}) + "\n")

    def add(self, row: dict, goal: str, meets) -> None:
        row.update(goal=goal, meets=meets)
        self.rows.append(row)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        ours = row["ours"]
        fig = (
            f"{ours['tflops']:.1f} TFLOP/s"
            if "tflops" in ours
            else f"{ours['gbps']:.0f} GB/s"
            if "gbps" in ours
            else ""
        )
        mark = {True: "meets", False: "MISSES", None: ""}[meets]
        print(
            f"{row['bench']:8s} {json.dumps(row['case'])[:90]:90s} {ours['p50']:10.1f} us "
            f"{fig:>16s}  [{row['family']}] {goal} {mark}",
            flush=True,
        )


def bench_gemm(sink, smoke, iters):
    for preset, T in GEMM_TOKENS.items():
        s = PRESETS[preset]
        E, K, N = s.num_experts, s.hidden, 2 * s.ffn
        if smoke:
            E, K, N, T = min(E, 8), 64, 128, 64
        rows = group_rows(T * s.top_k, E, "uniform", torch.Generator().manual_seed(0))
        for form in ("fwd", "dA", "dB"):
            a, b, offs = make_problem(form, E, K, N, rows, torch.bfloat16, DEV, 1)
            M = sum(rows)
            flops = 2 * M * K * N
            base = {}
            try:
                torch._grouped_mm(a, b, offs=offs)
                base["torch._grouped_mm"] = measure(
                    lambda: torch._grouped_mm(a, b, offs=offs), iters, l2_flush=CUDA
                )
            except (RuntimeError, NotImplementedError, AttributeError) as e:
                print(f"  torch._grouped_mm does not take {preset} {form}: {str(e)[:100]}")
            if form == "dB":
                da, db = a.contiguous(), b
            else:
                da, db = a, torch.randn(a.shape[1], b.shape[-1], device=DEV, dtype=a.dtype)
            base["dense torch.mm"] = measure(lambda: torch.mm(da, db), iters, l2_flush=CUDA)
            # sm90: one CTA per tile; sm90_cluster: 2x2 clusters multicasting A and B
            for path in ("sm80", "sm90", "sm90_cluster") if CUDA else ("auto",):
                os.environ["MOE_EXT_GEMM_PATH"] = "sm90" if path.startswith("sm90") else path
                os.environ["MOE_EXT_GEMM_CONFIG"] = path if path.startswith("sm90") else "auto"
                try:
                    fn = lambda: moe_ext.grouped_mm(a, b, offs)  # noqa: E731
                    family = family_of(fn)
                    ours = measure(fn, iters, l2_flush=CUDA)
                except RuntimeError as e:
                    print(f"  {path} does not take {preset} {form}: {str(e)[:120]}")
                    continue
                finally:
                    os.environ.pop("MOE_EXT_GEMM_PATH", None)
                    os.environ.pop("MOE_EXT_GEMM_CONFIG", None)
                row = Row(
                    "gemm",
                    dict(preset=preset, form=form, path=path, E=E, M=M, K=K, N=N),
                    ours,
                    dict(base),
                    flops=flops,
                ).finish()
                row["family"] = family
                r_dense = row["ours"]["tflops"] / row["baselines"]["dense torch.mm"]["tflops"]
                tg = row["baselines"].get("torch._grouped_mm")
                meets = r_dense >= 0.9 and (tg is None or tg["speedup"] > 1)
                row["ratio_to_dense"] = r_dense
                sink.add(row, ">= 0.9 x dense, > torch._grouped_mm", meets if CUDA else None)


def bench_decode(sink, smoke, iters):
    s = PRESETS["qwen3-30b-a3b"]
    E, K, N = s.num_experts, s.hidden, 2 * s.ffn
    if smoke:
        E, K, N = 8, 64, 128
    # the launcher's choice, then each candidate forced: swap-AB (the heuristic's pick at <= 16
    # rows per expert), the 32-row small_m tile, the Hopper kernel
    choices = [("auto", "auto")]
    if CUDA:
        choices += [("sm80", "swap_ab"), ("sm80", "small_m")]
        if torch.cuda.get_device_capability()[0] == 9:
            choices.append(("sm90", "sm90"))
    for r in (1, 8):
        rows = [r] * E
        a, b, offs = make_problem("fwd", E, K, N, rows, torch.bfloat16, DEV, 2)
        base = {}
        try:
            torch._grouped_mm(a, b, offs=offs)
            base["torch._grouped_mm"] = measure(
                lambda: torch._grouped_mm(a, b, offs=offs), iters, l2_flush=CUDA
            )
        except (RuntimeError, NotImplementedError, AttributeError):
            pass
        for path, config in choices:
            os.environ.update(MOE_EXT_GEMM_PATH=path, MOE_EXT_GEMM_CONFIG=config)
            try:
                fn = lambda: moe_ext.grouped_mm(a, b, offs)  # noqa: E731
                family = family_of(fn)
                ours = measure(fn, iters, l2_flush=CUDA, graph_iters=0)
            finally:
                os.environ.pop("MOE_EXT_GEMM_PATH", None)
                os.environ.pop("MOE_EXT_GEMM_CONFIG", None)
            case = dict(preset="qwen3-30b-a3b", rows_per_expert=r, E=E, K=K, N=N, path=path)
            case["config"] = config
            row = Row("decode", case, ours, base, bytes=E * K * N * 2).finish()  # weights once
            row["family"] = family
            tbps = row["ours"]["gbps"] / 1e3
            sink.add(row, ">= 2.5 TB/s of weights", tbps >= 2.5 if CUDA else None)


def bench_fp8(sink, smoke, iters):
    cases = [("deepseek-v3", 8192, None), ("qwen3-30b-a3b", 32768, None)]  # prefill
    cases += [("qwen3-30b-a3b", None, 1), ("qwen3-30b-a3b", None, 8)]  # decode rows per expert
    for preset, T, per_expert in cases:
        s = PRESETS[preset]
        E, K, N = s.num_experts, s.hidden, 2 * s.ffn
        if smoke:
            E, K, N, T = min(E, 8), 128, 128, 64
        decode = per_expert is not None
        if not decode:  # prefill: the model's rows per expert, at most 32 experts (the weights
            per_expert = -(-T * s.top_k // E)  # are quantized here, through fp32 temporaries)
            E = min(E, 32)
        rows = [per_expert] * E
        M = sum(rows)
        offs = torch.tensor(rows).cumsum(0).to(torch.int32).to(DEV)
        a = torch.randn(M, K, device=DEV).bfloat16()
        w = torch.randn(E, N, K, device=DEV) * K**-0.5
        a_q, a_s = moe_ext.quantize_fp8(a)
        w_q, w_s = moe_ext.ops.quantize_weight_fp8(w)
        wb = w.bfloat16().transpose(-2, -1)
        del w
        base = {
            "moe_ext bf16": measure(lambda: moe_ext.grouped_mm(a, wb, offs), iters, l2_flush=CUDA)
        }
        for mma in ("f16", "e4m3") if CUDA else ("auto",):
            os.environ["MOE_EXT_FP8_MMA"] = mma
            try:
                fn = lambda: moe_ext.grouped_mm_fp8(a_q, a_s, w_q, w_s, offs)  # noqa: E731
                family = family_of(fn)
                ours = measure(fn, iters, l2_flush=CUDA)
            finally:
                os.environ.pop("MOE_EXT_FP8_MMA", None)
            case = dict(preset=preset, M=M, E=E, K=K, N=N, mma=mma, rows_per_expert=per_expert)
            row = Row("fp8", case, ours, dict(base), flops=2 * M * K * N, bytes=E * K * N)
            row = row.finish()
            row["family"] = family
            if decode:
                sink.add(
                    row, ">= 2.5 TB/s of FP8 weights", row["ours"]["gbps"] >= 2500 if CUDA else None
                )
            else:
                speedup = row["baselines"]["moe_ext bf16"]["speedup"]
                sink.add(row, ">= 1.6 x moe_ext bf16", speedup >= 1.6 if CUDA else None)


def bench_layer(sink, smoke, iters):
    s = PRESETS["qwen3-30b-a3b"]
    H, I, E, k, T = s.hidden, s.ffn, s.num_experts, s.top_k, 32768
    if smoke:
        H, I, E, T = 64, 32, 8, 32
    torch.manual_seed(0)
    layer = moe_ext.MoE(H, I, E, k, dtype=torch.bfloat16, device=DEV)
    x = torch.randn(T, H, dtype=torch.bfloat16, device=DEV)
    flops = 2 * T * k * H * 3 * I
    for mode, goal in (("fwd", 600), ("fwd+bwd", 500)):
        if mode == "fwd":

            def run(impl):
                with torch.no_grad():
                    impl(x)
        else:

            def run(impl):
                impl(x.detach().requires_grad_(True)).float().sum().backward()

        family = family_of(lambda: run(layer))
        ours = measure(lambda: run(layer), iters, l2_flush=CUDA)
        base = {}
        try:
            run(lambda xx: torch_gmm(layer, xx))
            base["torch gmm pipeline"] = measure(
                lambda: run(lambda xx: torch_gmm(layer, xx)), iters, l2_flush=CUDA
            )
        except (RuntimeError, NotImplementedError):
            pass
        row = Row(
            "layer",
            dict(preset="qwen3-30b-a3b", tokens=T, mode=mode),
            ours,
            base,
            flops=flops * (3 if mode == "fwd+bwd" else 1),
        ).finish()
        row["family"] = family
        row["peak_memory_bytes"] = torch.cuda.max_memory_allocated() if CUDA else None
        sink.add(row, f">= {goal} TFLOP/s", row["ours"]["tflops"] >= goal if CUDA else None)


def bench_permute(sink, smoke, iters):
    s = PRESETS["qwen3-30b-a3b"]
    T, k, E, H = 32768, s.top_k, s.num_experts, s.hidden
    if smoke:
        T, E, H = 64, 8, 64
    for routing in ("uniform", "zipf"):
        ids = make_ids(T, k, E, routing, 1.2, DEV)
        order, slot, offsets = moe_ext.sort_tokens(ids, E)
        x = torch.randn(T, H, dtype=torch.bfloat16, device=DEV)
        w = torch.rand(T, k, device=DEV)
        yp = torch.randn(T * k, H, dtype=torch.bfloat16, device=DEV)
        for name, fn in (
            ("permute", lambda: moe_ext.permute(x, order, slot, k)),
            ("unpermute", lambda: moe_ext.unpermute(yp, order, slot, w)),
        ):
            nbytes = op_bytes(name, T, k, E, H, 2)
            src = torch.empty(nbytes // 2, dtype=torch.uint8, device=DEV)
            dst = torch.empty_like(src)  # copy_ reads half, writes half: the same bytes in all
            base = {
                "device copy": measure(lambda: dst.copy_(src), iters, graph_iters=10 if CUDA else 0)
            }
            if name == "unpermute":
                base["torch gather+sum"] = measure(
                    lambda: torch_unpermute_gather(yp, slot, w),
                    iters,
                    graph_iters=10 if CUDA else 0,
                )
            ours = measure(fn, iters, graph_iters=10 if CUDA else 0)
            row = Row(
                "permute", dict(op=name, routing=routing, T=T, k=k, H=H), ours, base, bytes=nbytes
            ).finish()
            row["family"] = "cuda" if CUDA else "cpu"
            frac = row["ours"]["gbps"] / row["baselines"]["device copy"]["gbps"]
            row["fraction_of_copy"] = frac
            sink.add(row, ">= 0.85 x copy", frac >= 0.85 if CUDA else None)


def bench_route(sink, smoke, iters):
    s = PRESETS["deepseek-v3"]
    E, k = s.num_experts, s.top_k
    bias = torch.randn(E, device=DEV) * 0.01
    for T in (1, 64):
        logits = torch.randn(T, E, device=DEV)
        kw = dict(s.route, correction_bias=bias)
        fn = lambda: moe_ext.route(logits, k, **kw)  # noqa: E731
        ours = measure(fn, iters, graph_iters=20 if CUDA else 0)
        base = {
            "torch router": measure(
                lambda: torch_router(logits, k, **kw), iters, graph_iters=20 if CUDA else 0
            )
        }
        row = Row(
            "route", dict(preset="deepseek-v3", T=T, E=E, k=k, graph_replay=CUDA), ours, base
        ).finish()
        row["family"] = "cuda" if CUDA else "cpu"
        sink.add(row, "<= 3 us", row["ours"]["p50"] <= 3.0 if CUDA else None)


BENCHES = {
    "gemm": bench_gemm,
    "decode": bench_decode,
    "layer": bench_layer,
    "permute": bench_permute,
    "route": bench_route,
    "fp8": bench_fp8,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON-lines file, appended case by case")
    ap.add_argument("--only", nargs="+", default=list(BENCHES), choices=list(BENCHES))
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, 2 samples")
    ap.add_argument("--iters", type=int, default=None)
    args = ap.parse_args()
    if not CUDA and not args.smoke:
        raise SystemExit("gpu_goals.py: no CUDA device; on a CPU use --smoke (it measures nothing)")
    iters = args.iters or (2 if args.smoke else 20)
    sink = Sink(args.out, args.smoke)
    t0, failed = time.perf_counter(), []
    for name in args.only:
        try:
            BENCHES[name](sink, args.smoke, iters)
        except Exception as e:  # noqa: BLE001  (recorded; the next bench still runs)
            failed.append(name)
            with sink.path.open("a") as f:
                f.write(json.dumps({"bench": name, "error": f"{type(e).__name__}: {e}"}) + "\n")
            print(f"{name}: FAILED {type(e).__name__}: {e}", flush=True)
            if CUDA:
                torch.cuda.synchronize()  # a sticky CUDA error ends the run here, loudly
    n_meet = sum(r["meets"] is True for r in sink.rows)
    n_goal = sum(r["meets"] is not None for r in sink.rows)
    print(
        f"\n{len(sink.rows)} rows in {time.perf_counter() - t0:.0f} s -> {sink.path}; "
        f"goals met: {n_meet}/{n_goal}" + (f"; FAILED: {failed}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
