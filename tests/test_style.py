"""The lint rules in pyproject.toml ([tool.ruff.lint]) and .clang-format hold for every source
file, and the generated GEMM units match their script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_check_passes():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    assert Path(ruff).exists(), "ruff is needed (scripts/test.sh installs it)"
    res = subprocess.run(
        [ruff, "check", "--output-format", "concise", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


def _tool(name: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).with_name(name))
    assert Path(path).exists(), f"{name} is needed (scripts/test.sh installs it)"
    return path


def test_ruff_format_clean():
    """Python is formatted by ruff format (pyproject.toml [tool.ruff], 100 columns)."""
    res = subprocess.run(
        [_tool("ruff"), "format", "--check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert res.returncode == 0, "run `ruff format .`:\n" + res.stdout[-4000:] + res.stderr[-2000:]


def test_clang_format_clean():
    """C++/CUDA is formatted by clang-format (.clang-format: Google base, 100 columns)."""
    files = subprocess.run(
        ["git", "ls-files", "csrc/*.h", "csrc/*.cpp", "csrc/*.cu", "csrc/*.cuh"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert files, "no C++ sources found (not a git checkout?)"
    res = subprocess.run(
        [_tool("clang-format"), "--dry-run", "-Werror", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    bad = sorted({line.split(":")[0] for line in res.stderr.splitlines() if ": error:" in line})
    assert res.returncode == 0, "run `clang-format -i` on: " + " ".join(bad)


def test_generated_gemm_units_match_their_script():
    """csrc/cuda/gemm_instances/*.cu and instances.h are exactly what generate_kernels.py
    writes (a config added to the script but not regenerated, or a hand edit, fails here)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate_kernels.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
