"""Packaging as a user meets it: the sdist carries everything the build needs, a wheel built from
it (CPU-only, to keep CI short) installs and works outside the checkout, and the built package
records the torch it was compiled against."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_sdist_builds_a_working_wheel(tmp_path):
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "sdist")],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (sdist,) = (tmp_path / "sdist").glob("moe_ext-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in (
        "CMakeLists.txt",
        "cmake/torch.cmake",
        "cmake/build_info.h.in",
        "csrc/binding/registration.cpp",
        "csrc/kernels/grouped_gemm/hopper.cuh",
        "csrc/simt/runtime.cpp",
        "setup.py",
        "pyproject.toml",
    ):
        assert needed in names, f"{needed} missing from the sdist"
    env = dict(os.environ, MOE_EXT_CUDA="0", MOE_EXT_EMU="0")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-build-isolation",
            "--no-deps",
            "-w",
            str(tmp_path / "wheel"),
            str(sdist),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (wheel,) = (tmp_path / "wheel").glob("moe_ext-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "import moe_ext, torch, pathlib; "
        f"assert pathlib.Path(moe_ext.__file__).is_relative_to(pathlib.Path(r'{target}')); "
        "w, i = moe_ext.route(torch.randn(5, 8), 2); "
        "print(moe_ext.build_info()['torch_version'], "
        "(pathlib.Path(moe_ext.__file__).parent / '_build_torch.txt').read_text().strip())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(target)),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    import torch

    assert out.stdout.split() == [torch.__version__, torch.__version__]
