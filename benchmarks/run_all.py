"""Runs every benchmark relevant to this machine and writes one JSON (+ PNG plots, + the static
report) into an output directory:

    python benchmarks/run_all.py [--out benchmarks/results/<date>-<device>] [--smoke]

On a GPU: bench_route, bench_permute, bench_grouped_gemm (both kernel families on Hopper),
bench_moe_layer at full size, bench_expert_parallel (with >= 2 GPUs), and the static report.
On a CPU-only machine: the same scripts at reduced sizes (they exercise the code; their times
say nothing about a GPU) and the static report, whose kernel table and emulator proxies are the
performance evidence a CPU can give, plus the layer forward at the real Qwen3-30B-A3B expert
shape (T = 1024, bf16 and fp32) against a dense mm of equal FLOPs (moe_layer_cpu_*).

Reading the output: `results.json` holds {bench: {meta, rows}}; each row has `ours` and every
baseline measured in the same run (p50/p95 µs, TFLOP/s or GB/s) and `speedup` = baseline p50 /
ours p50 (> 1: moe_ext is faster). `static_report.md` has registers, spills, occupancy and the
SASS instruction mix per kernel, and the emulator's traffic proxies with an H100 time MODEL.
`plots/*.png`: TFLOP/s or GB/s against T, ours vs baselines.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def run(script: str, args: list[str], timeout: int) -> bool:
    cmd = [sys.executable, str(HERE / script), *args]
    print("$", " ".join(cmd), flush=True)
    try:
        return subprocess.run(cmd, timeout=timeout).returncode == 0
    except subprocess.TimeoutExpired:
        print(f"{script}: timed out after {timeout} s")
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cuda = torch.cuda.is_available()
    dev = torch.cuda.get_device_name().replace(" ", "-") if cuda else "cpu"
    ap.add_argument(
        "--out",
        default=None,
        help="default: benchmarks/results/<date>-<device>; "
        "with --smoke a temporary directory (smoke figures are not results)",
    )
    ap.add_argument("--smoke", action="store_true", help="smallest sizes (CI)")
    args = ap.parse_args()
    if args.out is None:
        import tempfile

        args.out = (
            tempfile.mkdtemp(prefix="moe_ext-smoke-")
            if args.smoke
            else str(HERE / "results" / f"{time.strftime('%Y-%m-%d')}-{dev}")
        )
    out = Path(args.out)
    print(
        f"run_all: writing to {out}"
        + (" (smoke: sizes too small to mean anything)" if args.smoke else "")
    )
    (out / "plots").mkdir(parents=True, exist_ok=True)
    t = 900 if cuda else 600
    small = ["--iters", "2"] if args.smoke else []
    jobs = {
        "route": (
            "bench_route.py",
            (["--tokens", "64", "1024"] if not cuda else [])
            + ["--plot", str(out / "plots")]
            + small,
        ),
        "permute": (
            "bench_permute.py",
            ([] if cuda else ["--tokens-scale", "64" if args.smoke else "16"])
            + ["--plot", str(out / "plots")]
            + small,
        ),
        "grouped_gemm": (
            "bench_grouped_gemm.py",
            (
                ["--paths", "sm80", "sm90"]
                if cuda and torch.cuda.get_device_capability()[0] == 9
                else []
            )
            + ([] if cuda else ["--cpu-scale", "32", "--routing", "zipf"])
            + (
                ["--presets", "qwen3-30b-a3b", "--no-decode", "--forms", "fwd"]
                if args.smoke
                else []
            )
            + ["--plot", str(out / "plots")]
            + small,
        ),
        "moe_layer": (
            "bench_moe_layer.py",
            (["--smoke", "--presets", "qwen3-30b-a3b"] if args.smoke else [])
            + ["--plot", str(out / "plots")]
            + small,
        ),
    }
    if not cuda and not args.smoke:  # the CPU goal: real Qwen3-30B-A3B expert shape, T = 1024
        for dt in ("bfloat16", "float32"):
            jobs[f"moe_layer_cpu_{dt}"] = (
                "bench_moe_layer.py",
                [
                    "--presets",
                    "qwen3-30b-a3b",
                    "--tokens",
                    "1024",
                    "--full-shape",
                    "--modes",
                    "fwd",
                    "--dtype",
                    dt,
                    "--iters",
                    "5",
                ],
            )
    if not cuda or torch.cuda.device_count() >= 2:  # expert parallelism needs 2 ranks
        jobs["expert_parallel"] = (
            "bench_expert_parallel.py",
            ["--iters", "2" if args.smoke else "5"] + (["--tokens", "64"] if args.smoke else []),
        )
    results, failed = {}, []
    for name, (script, extra) in jobs.items():
        path = out / f"{name}.json"
        if run(script, [*extra, "--json", str(path)], t) and path.exists():
            results[name] = json.loads(path.read_text())
        else:
            failed.append(name)
    ok = run(
        "static_report.py",
        ["--json", str(out / "static_report.json"), "--markdown", str(out / "static_report.md")],
        t,
    )
    if ok:
        results["static_report"] = json.loads((out / "static_report.json").read_text())
    else:
        failed.append("static_report")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {out / 'results.json'}" + (f"; FAILED: {failed}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
