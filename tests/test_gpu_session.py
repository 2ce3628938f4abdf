"""The GPU session cannot rot between leases: its dry run (the same drivers at smoke sizes on the
CPU and the emulator) passes, packs one archive, and its supervisor survives hangs and crashes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import moe_ext

ROOT = Path(__file__).resolve().parent.parent
SESSION = ROOT / "benchmarks" / "gpu_session.sh"
SMOKE = ROOT / "benchmarks" / "gpu_smoke.py"


@pytest.mark.slow
@pytest.mark.skipif(not moe_ext.emu.available(), reason="the dry run needs the emulator backend")
def test_dry_run_passes_and_packs_one_archive(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable)
    res = subprocess.run(
        ["bash", str(SESSION), "--dry-run"], env=env, capture_output=True, text=True, timeout=900
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    with tarfile.open(tmp_path / "dry-run.tar.gz") as tar:
        names = set(tar.getnames())
    for f in ("smoke-emu.jsonl", "smoke-cpu.jsonl", "goals.jsonl", "smoke-emu.log", "goals.log"):
        assert f"session/{f}" in names, names
    smoke = [json.loads(line) for line in (tmp_path / "session" / "smoke-emu.jsonl").open()]
    listed = subprocess.run(
        [sys.executable, str(SMOKE), "--backend", "emu", "--list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert [r["case"] for r in smoke] == listed and all(r["status"] == "PASS" for r in smoke)
    # every kernel family the GPU smoke covers is in the emulator's list
    for family in (
        "grouped_mm/sm80/large",
        "grouped_mm/sm80/small_m",
        "grouped_mm/sm80/swap_ab",
        "grouped_mm/sm90/dB",
        "grouped_mm/sm90_cluster/dB",
        "moe_mlp/sm90/swiglu",
        "moe_mlp/sm90_cluster/swiglu",
        "grouped_mm/fp32",
        "route/",
        "sort_tokens",
        "permute+unpermute",
        "grouped_mm_fp8/e4m3",
        "moe_mlp_fp8",
    ):
        assert any(n.startswith(family) for n in listed), family
    goals = [json.loads(line) for line in (tmp_path / "session" / "goals.jsonl").open()]
    assert "meta" in goals[0]
    benches = {r["bench"] for r in goals[1:]}
    assert benches == {"gemm", "decode", "layer", "permute", "route", "fp8"}, benches
    assert not any("error" in r for r in goals[1:])
    assert all(r["family"] for r in goals[1:])


@pytest.mark.slow
def test_smoke_supervisor_survives_a_hang_and_a_crash(tmp_path):
    out = tmp_path / "smoke.jsonl"
    res = subprocess.run(
        [
            sys.executable,
            str(SMOKE),
            "--backend",
            "cpu",
            "--plant",
            "hang",
            "--plant",
            "crash",
            "--case-timeout",
            "3",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 1, res.stdout[-2000:]
    rows = [json.loads(line) for line in out.open()]
    status = {r["case"]: r["status"] for r in rows}
    assert status.pop("planted/hang") == "TIMEOUT"
    assert status.pop("planted/crash") == "CRASH"
    assert status and all(s == "PASS" for s in status.values()), status  # the rest still ran


def test_session_script_fits_the_lease():
    """Call 1's step limits add to <= 6 min minus start-up slack, call 2's to <= 5 min."""
    import re

    text = SESSION.read_text()

    def limits(fn):
        body = text[text.index(f"{fn}() {{") :]
        body = body[: body.index("\n}\n")]
        return sum(int(x) for x in re.findall(r"step \w+ (\d+) ", body))

    assert limits("call1") <= 360, limits("call1")
    assert limits("call2") <= 300 + 150, limits(
        "call2"
    )  # the 150 s rebuild only if call 1's is gone
    assert limits("call2") - 150 <= 300


def test_no_wait_timeout_report_without_a_hang():
    assert moe_ext._C.device_wait_timeout_report() == ""
