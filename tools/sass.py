"""Reading the CUDA kernels a built library holds, with cuobjdump (pip: nvidia-cuda-cuobjdump,
nvidia-cuda-nvdisasm): per (arch, kernel) SASS text and resource usage. Used by
tests/test_build.py and benchmarks/static_report.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path


def cuobjdump() -> str | None:
    """cuobjdump from the pip wheel (next to nvdisasm) or PATH."""
    purelib = Path(sysconfig.get_paths()["purelib"])
    for cand in (
        purelib / "nvidia" / "cu13" / "bin" / "cuobjdump",
        purelib / "nvidia" / "cuda_cuobjdump" / "bin" / "cuobjdump",
    ):
        if cand.exists():
            return str(cand)
    return shutil.which("cuobjdump")


def _run(tool: str, args: list[str]) -> str:
    env = dict(os.environ)
    env["PATH"] = f"{Path(tool).parent}{os.pathsep}{env.get('PATH', '')}"  # finds nvdisasm
    out = subprocess.run([tool, *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return out.stdout


def sass_by_kernel(tool: str, so: str) -> dict[tuple[str, str], str]:
    """{(arch, mangled kernel name): SASS text}."""
    kernels, arch, name = {}, None, None
    for line in _run(tool, ["-sass", so]).splitlines():
        if "arch = " in line:
            arch, name = line.split("arch = ")[1].strip(), None
        elif "Function : " in line:
            name = line.split("Function : ")[1].strip()
            kernels[(arch, name)] = []
        elif name is not None:
            kernels[(arch, name)].append(line)
    return {k: "\n".join(v) for k, v in kernels.items()}


def resource_usage(tool: str, so: str) -> dict[tuple[str, str], dict[str, int]]:
    """{(arch, mangled kernel name): {REG, STACK, SHARED, LOCAL, ...}}."""
    usage, arch, name = {}, None, None
    for line in _run(tool, ["--dump-resource-usage", so]).splitlines():
        if "arch = " in line:
            arch = line.split("arch = ")[1].strip()
        elif line.strip().startswith("Function "):
            name = line.strip()[len("Function ") :].rstrip(":")
        elif name is not None and "REG:" in line:
            usage[(arch, name)] = {
                k: int(v) for k, v in re.findall(r"(\w+(?:\[\d+\])?):(\d+)", line)
            }
            name = None
    return usage


def demangle(names: list[str]) -> dict[str, str]:
    filt = shutil.which("c++filt")
    if not filt or not names:
        return {n: n for n in names}
    out = subprocess.run([filt], input="\n".join(names), capture_output=True, text=True).stdout
    return dict(zip(names, out.splitlines()))


INSTRUCTION_CLASSES = {
    "HMMA": r"\bHMMA\b",
    "HGMMA": r"\bHGMMA\b",
    "LDGSTS": r"\bLDGSTS\b",
    "UTMALDG": r"\bUTMALDG\b",
    "UTMASTG": r"\bUTMASTG\b",
    "UTMALDG_MC": r"\bUTMALDG\.\w+\.MULTICAST\b",  # multicast TMA loads (a cluster)
    "UCGABAR": r"\bUCGABAR_",  # cluster barrier arrive / wait
    "LDSM": r"\bLDSM\b",
    "LDS": r"\bLDS\b",
    "STS": r"\bSTS\b",
    "LDG": r"\bLDG\b",
    "STG": r"\bSTG\b",
    "FFMA": r"\bFFMA\b",
    "SHFL": r"\bSHFL\b",
    "BAR": r"\bBAR\b",
    "SYNCS": r"\bSYNCS\b",
    "LDL": r"\bLDL\b",
    "STL": r"\bSTL\b",
}


def instruction_mix(sass: str) -> dict[str, int]:
    """Static counts of the instruction classes that matter for our kernels."""
    ops = [
        line.split("*/", 1)[1]
        for line in sass.splitlines()
        if re.match(r"\s+/\*[0-9a-f]{4,}\*/", line)
    ]
    mix = {k: sum(1 for o in ops if re.search(p, o)) for k, p in INSTRUCTION_CLASSES.items()}
    mix["total"] = len(ops)
    return mix
