"""The benchmark suite runs (smoke sizes: the scripts, JSON and plots are exercised; CPU times mean
nothing) and the static performance report holds what must hold in CI: every library kernel
listed for sm_80 and sm_90a with no spills and no local memory, the tensor-core and Hopper GEMM
instruction mix, the occupancy arithmetic, and the emulator's traffic proxies."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import moe_ext

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import static_report  # noqa: E402

REQUIRE_CUDA = os.environ.get("MOE_EXT_REQUIRE_CUDA_BUILD") == "1"


def run_script(args, tmp_path, timeout=240):
    out = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout


def test_occupancy_rules():
    a100, h100 = static_report.GPUS["A100"], static_report.GPUS["H100"]
    # 255 registers x 128 threads: 8 KB-register warps, 8 warps per SM -> 2 blocks, 12.5 %
    occ = static_report.occupancy(255, 128, 0, a100)
    assert occ["blocks_per_sm"] == 2 and occ["occupancy"] == pytest.approx(0.125)
    # 32 registers, 128 threads, no smem: the 2048-thread limit, 100 %
    assert static_report.occupancy(32, 128, 0, a100)["occupancy"] == 1.0
    # the Hopper GEMM: 384 threads x 168 registers and 198 KB of shared memory -> one CTA
    occ = static_report.occupancy(168, 384, 207_168, h100)
    assert occ["blocks_per_sm"] == 1 and occ["limiter"] in ("registers", "shared memory")


@pytest.mark.slow
@pytest.mark.skipif(not REQUIRE_CUDA, reason="set MOE_EXT_REQUIRE_CUDA_BUILD=1 to require CUDA")
def test_static_report_kernels():
    rows = static_report.kernel_table()
    assert rows, "no kernels found in the built library"
    for r in rows:
        assert r["stack"] == 0 and r["local"] == 0, f"{r['arch']} {r['kernel']} spills"
        assert r["mix"]["LDL"] + r["mix"]["STL"] == 0, r["kernel"]
    by = lambda arch, pat: [r for r in rows if r["arch"] == arch and pat in r["kernel"]]  # noqa: E731
    for arch in ("sm_80", "sm_90a"):
        tc = by(arch, "grouped_gemm_tc_kernel")
        assert len(tc) == 32 and all(r["mix"]["HMMA"] > 0 and r["mix"]["LDGSTS"] > 0 for r in tc)
        assert all(r["blocks_per_sm"] >= 1 for r in tc)
    sm90 = by("sm_90a", "grouped_gemm_sm90_kernel")
    assert len(sm90) == 20  # 2 dtypes x 5 operand variants x {one CTA per tile, 2x2 cluster}
    for r in sm90:
        assert r["mix"]["HGMMA"] > 0 and r["mix"]["UTMALDG"] > 0 and r["mix"]["UTMASTG"] > 0, r
        # the cluster instantiations (last template argument kCluster) load by multicast TMA
        # and bracket the kernel with cluster barriers; the others do neither
        cluster = re.search(r"grouped_gemm_sm90_kernel<.*, true>", r["kernel"]) is not None
        assert (r["mix"]["UTMALDG_MC"] > 0) == cluster, r["kernel"]
        assert (r["mix"]["UCGABAR"] > 0) == cluster, r["kernel"]
    assert sum(1 for r in sm90 if r["mix"]["UTMALDG_MC"] > 0) == 10
    assert all(r["blocks_per_sm"] == 1 for r in sm90)


@pytest.mark.skipif(not moe_ext.build_info()["emulator"], reason="needs the emulator")
def test_static_report_emulator_proxies():
    rows = {r["op"]: r for r in static_report.emulator_proxies()}
    for op in ("route", "permute", "unpermute", "unpermute_backward"):
        assert rows[op]["moved_over_ideal"] <= 1.05, rows[op]
        assert rows[op]["coalescing"] >= 0.9, rows[op]
    for op in ("grouped_mm sm80", "grouped_mm sm90", "grouped_mm_fp8 f16", "grouped_mm_fp8 e4m3"):
        assert rows[op]["bank_conflicts"] == 0
        assert rows[op]["h100_model_us"] > 0
    # the FP8 GEMM reads its 1-byte operands: fewer bytes than the bf16 GEMM of the same shape
    assert rows["grouped_mm_fp8 f16"]["ideal_bytes"] < rows["grouped_mm sm80"]["ideal_bytes"]


@pytest.mark.skipif(not moe_ext.build_info()["emulator"], reason="needs the emulator")
def test_gemm_proxy_table(tmp_path):
    """benchmarks/emu_gemm_proxies.py runs every config (each checked against torch inside)."""
    out = tmp_path / "proxies.md"
    run_script(["benchmarks/emu_gemm_proxies.py", "--markdown", str(out)], tmp_path)
    rows = [line for line in out.read_text().splitlines() if line.startswith("| sm")]
    assert len(rows) == 7  # 4 configs at the large shape, 3 at the decode shape
    hopper, cluster = rows[0].split("|"), rows[1].split("|")
    assert hopper[2].strip() != "" and hopper[8].strip() == "0"  # no memory op in the MMA turn
    # the 2x2 cluster: half the global bytes per FLOP, still no memory op in the MMA turn
    assert cluster[3].strip() == "0.50x" and cluster[8].strip() == "0", cluster
    decode = {r.split("|")[1].split()[1]: float(r.split("|")[2]) for r in rows[4:]}
    # 4 rows per expert: swap-AB pads 16-row tiles (4x), small_m 32-row MMAs (8x)
    assert decode["swap_ab"] == 4.0 and decode["small_m"] == 8.0, decode


@pytest.mark.slow
def test_bench_scripts_smoke(tmp_path):
    b = "benchmarks/"
    run_script([b + "bench_route.py", "--tokens", "64", "--iters", "2"], tmp_path)
    run_script(
        [
            b + "bench_permute.py",
            "--tokens-scale",
            "256",
            "--iters",
            "2",
            "--routing",
            "zipf",
            "--json",
            str(tmp_path / "p.json"),
        ],
        tmp_path,
    )
    run_script(
        [
            b + "bench_grouped_gemm.py",
            "--presets",
            "olmoe-1b-7b",
            "--forms",
            "fwd",
            "--routing",
            "zipf",
            "--iters",
            "1",
            "--cpu-scale",
            "64",
            "--json",
            str(tmp_path / "g.json"),
            "--plot",
            str(tmp_path),
        ],
        tmp_path,
    )
    run_script(
        [
            b + "bench_moe_layer.py",
            "--smoke",
            "--presets",
            "mixtral-8x7b",
            "--json",
            str(tmp_path / "l.json"),
            "--plot",
            str(tmp_path),
            "--profile",
            str(tmp_path / "trace.json"),
        ],
        tmp_path,
    )
    run_script([b + "tune_grouped_gemm.py", "--emu", "--out", str(tmp_path / "t.json")], tmp_path)
    g = json.loads((tmp_path / "g.json").read_text())
    assert g["meta"]["commit"] is not None and g["runs"]
    for r in g["runs"]:
        assert r["ours_tflops"] > 0 and "torch.mm loop" in r["baselines"]
    layer = json.loads((tmp_path / "l.json").read_text())
    assert {r["case"]["mode"] for r in layer["rows"]} == {"fwd", "fwd+bwd"}
    assert all("speedup" in m for r in layer["rows"] for m in r["baselines"].values())
    assert (tmp_path / "trace.json").stat().st_size > 0
    try:  # the tuner's table is what the launcher reads (4 keys: the up/gate and down GEMMs at
        # a prefill-like and a decode-sized token count)
        assert moe_ext.load_gemm_tuning(tmp_path / "t.json") == 4
    finally:
        moe_ext.clear_gemm_tuning()
    pngs = list(tmp_path.glob("*.png"))
    try:
        import matplotlib  # noqa: F401

        assert pngs, "no plots written"
    except ImportError:
        pass
    table = json.loads((tmp_path / "t.json").read_text())["table"]
    assert table and all(v for v in table.values())


def test_percentiles_are_ordered_and_noise_is_marked():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from _harness import Row, percentile, summarize

    assert percentile([1.0, 3.0], 0.95) == 2.9 and percentile([1.0, 3.0], 0.5) == 2.0
    two = summarize([10.0, 30.0])
    assert two["p95"] >= two["p50"] and two["noisy"]  # 2 samples: no ratio worth printing
    many = summarize([10.0 + 0.1 * i for i in range(20)])
    assert not many["noisy"]
    row = Row("b", {}, many, {"base": two}).finish()
    assert row["baselines"]["base"]["speedup_reliable"] is False


def test_moe_mlp_backward_bench_smoke(tmp_path):
    """benchmarks/bench_moe_mlp_backward.py at a tiny shape: every row runs (the composite
    backward rebuilt from the public ops included) and the table has the executed-FLOP column."""
    out = tmp_path / "bwd.md"
    run_script(
        ["benchmarks/bench_moe_mlp_backward.py", "--smoke", "--reps", "1", "--markdown", str(out)],
        tmp_path,
    )
    rows = {
        r.split("|")[1].strip(): r.split("|")
        for r in out.read_text().splitlines()
        if r.startswith("| ") and "---" not in r
    }
    assert float(rows["fwd+bwd save_h"][7]) == 1.0 and float(rows["fwd+bwd recompute"][7]) == 1.22
    assert float(rows["fwd+bwd composite (before)"][7]) == 1.33


def test_fp8_bench_smoke(tmp_path):
    """benchmarks/bench_fp8.py at tiny shapes: GEMM (prefill, decode) and layer rows, FP8 and
    bf16 measured in the same run, in the JSON."""
    out = tmp_path / "fp8.json"
    run_script(
        ["benchmarks/bench_fp8.py", "--smoke", "--presets", "qwen3-30b-a3b", "--json", str(out)],
        tmp_path,
    )
    rows = json.loads(out.read_text())["rows"]
    kinds = {(r["case"]["kind"], r["case"]["phase"]) for r in rows}
    assert {("gemm", "prefill"), ("gemm", "decode1"), ("layer", "prefill")} <= kinds
    assert all("moe_ext_bf16" in r["baselines"] and r["ours"]["p50"] > 0 for r in rows)
