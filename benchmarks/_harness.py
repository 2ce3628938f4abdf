"""The benchmark harness every bench_*.py uses: timing, rows with same-run baselines, metadata,
--json / --plot / --profile / --smoke, and a progress bar.

Timing (``measure``):
  * CUDA: CUDA events; optional 256 MB L2 flush before every sample (GEMMs: timings then include
    reading the operands from HBM, as in a real layer); optional CUDA-graph replay of
    ``graph_iters`` calls per sample (µs-scale ops: launch overhead amortised, as inside a
    captured model); warm-up calls first.
  * CPU: time.perf_counter around each call after the warm-up.
  Returns p50 / p95 / mean in µs over ``iters`` samples.

Rows (``Row``): one measured case; ``ours`` and every baseline measured in the same run, with the
op's FLOP and byte counts next to them, so TFLOP/s, GB/s and the ratio baseline / ours (> 1:
we are faster) are derived, never typed in. ``write_json`` adds torch / CUDA / device / commit /
date metadata; ``plot`` draws TFLOP/s (or GB/s) against a size column, ours vs baselines, one
PNG per (bench, case); ``profile`` writes a torch.profiler Chrome trace whose kernel names
identify our kernels.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

L2_FLUSH_BYTES = 256 * 2**20


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", type=str, default=None, help="write machine-readable results here")
    p.add_argument("--plot", type=str, default=None, help="directory for PNG plots (matplotlib)")
    p.add_argument(
        "--profile",
        type=str,
        default=None,
        help="write a torch.profiler Chrome trace of one call of each op here",
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes, 2 samples: exercise only")
    p.add_argument("--iters", type=int, default=None, help="timed samples per measurement")


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def time_cuda(
    fn, iters: int, graph_iters: int = 0, l2_flush: bool = False, warmup: int = 3
) -> list[float]:
    """µs per call, one sample per replay (CUDA graph of graph_iters calls) or per call."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device="cuda") if l2_flush else None
    graph = None
    if graph_iters:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            fn()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(graph_iters):
                fn()
    times = []
    for _ in range(iters):
        if flush is not None:
            flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        if graph is not None:
            graph.replay()
        else:
            fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / max(graph_iters, 1))
    return times


def time_cpu(fn, iters: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e6)
    return times


def percentile(times: list[float], q: float) -> float:
    """The q-quantile with linear interpolation between order statistics (numpy's default), so
    p95 >= p50 for any sample count."""
    s = sorted(times)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


NOISE_MIN_SAMPLES = 5


def summarize(times: list[float]) -> dict:
    """p50 / p95 / mean µs; ``noisy`` when the figure cannot carry a ratio: fewer than
    NOISE_MIN_SAMPLES samples (smoke runs), or a p95 more than 1.5x the p50."""
    p50, p95 = percentile(times, 0.5), percentile(times, 0.95)
    return dict(
        p50=p50,
        p95=p95,
        mean=statistics.fmean(times),
        samples=len(times),
        noisy=len(times) < NOISE_MIN_SAMPLES or p95 > 1.5 * p50,
    )


def measure(fn, iters: int, *, graph_iters: int = 0, l2_flush: bool = False) -> dict:
    if device() == "cuda":
        return summarize(time_cuda(fn, iters, graph_iters, l2_flush))
    return summarize(time_cpu(fn, iters))


@dataclass
class Row:
    bench: str
    case: dict
    ours: dict  # measure() of our op
    baselines: dict = field(default_factory=dict)  # name -> measure()
    flops: float | None = None
    bytes: float | None = None

    def finish(self) -> dict:
        d = asdict(self)
        for m in [d["ours"], *d["baselines"].values()]:
            if self.flops:
                m["tflops"] = self.flops / m["p50"] / 1e6
            if self.bytes:
                m["gbps"] = self.bytes / m["p50"] / 1e3
        for m in d["baselines"].values():
            m["speedup"] = m["p50"] / d["ours"]["p50"]  # > 1: ours is faster
            # a ratio of two figures at the noise floor is not a speedup: say so in the row
            m["speedup_reliable"] = not (m.get("noisy") or d["ours"].get("noisy"))
        return d


def progress(items, desc: str):
    try:
        from tqdm import tqdm

        return tqdm(list(items), desc=desc, leave=False)
    except ImportError:
        return items


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except OSError:
        return ""


def metadata(**extra) -> dict:
    cuda = torch.cuda.is_available()
    import moe_ext

    return dict(
        torch=torch.__version__,
        cuda=torch.version.cuda,
        device=torch.cuda.get_device_name() if cuda else (platform.processor() or "cpu"),
        threads=torch.get_num_threads(),
        commit=commit(),
        date=time.strftime("%Y-%m-%d"),
        build=moe_ext.build_info(),
        timing="cuda events" if cuda else "cpu wall time",
        **extra,
    )


def write_json(path: str, bench: str, rows: list[dict], **meta) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(dict(bench=bench, meta=metadata(**meta), rows=rows), indent=1))
    print(f"wrote {path}")


def plot(rows: list[dict], out_dir: str, x: str, group: tuple[str, ...], bench: str) -> list[str]:
    """One PNG per `group` value combination: TFLOP/s (or GB/s) of ours and each baseline
    against case[x]. Returns the files written (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plots")
        return []
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    keyed: dict[tuple, list[dict]] = {}
    for r in rows:
        keyed.setdefault(tuple(r["case"].get(g) for g in group), []).append(r)
    files = []
    for key, rs in keyed.items():
        metric = "tflops" if "tflops" in rs[0]["ours"] else "gbps"
        rs = sorted(rs, key=lambda r: r["case"][x])
        xs = [r["case"][x] for r in rs]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(xs, [r["ours"][metric] for r in rs], "o-", label="moe_ext")
        for b in rs[0]["baselines"]:
            ax.plot(
                xs,
                [r["baselines"].get(b, {}).get(metric, float("nan")) for r in rs],
                "s--",
                label=b,
            )
        ax.set_xlabel(x)
        ax.set_ylabel("TFLOP/s" if metric == "tflops" else "GB/s")
        dev = (
            torch.cuda.get_device_name()
            if torch.cuda.is_available()
            else f"CPU ({platform.processor() or 'x86_64'}, {torch.get_num_threads()} threads)"
        )
        dtype = rs[0]["case"].get("dtype", "")
        ax.set_title(f"{bench} " + " ".join(str(k) for k in key) + f"\n{dev} {dtype}", fontsize=9)
        if len(xs) < 2:
            ax.text(
                0.5,
                0.02,
                "one size only (smoke run?)",
                transform=ax.transAxes,
                ha="center",
                fontsize=7,
                color="gray",
            )
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        name = Path(out_dir) / (
            f"{bench}_" + "_".join(str(k) for k in key).replace("/", "-") + ".png"
        )
        fig.tight_layout()
        fig.savefig(name, dpi=100)
        plt.close(fig)
        files.append(str(name))
    return files


def profile(fns: dict, path: str) -> None:
    """A torch.profiler Chrome trace of one call of each named function (after a warm-up)."""
    from torch.profiler import ProfilerActivity, record_function
    from torch.profiler import profile as tprofile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    for fn in fns.values():
        fn()
    with tprofile(activities=acts) as prof:
        for name, fn in fns.items():
            with record_function(name):
                fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(path)
    print(f"wrote {path}")
