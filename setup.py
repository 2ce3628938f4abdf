"""Build moe_ext: setup.py drives CMake + Ninja (see DESIGN.md, Build).

Environment:
  MOE_EXT_CUDA=auto|0|1   auto (default): build the CUDA kernels when torch is a CUDA build and
                          nvcc is found; 1: require them; 0: CPU only.
  MOE_EXT_CUDA_ARCHS      e.g. "8.0;9.0a" (default; falls back to TORCH_CUDA_ARCH_LIST).
  MOE_EXT_EMU=auto|0|1    the CPU SIMT emulator backend (torch.ops.moe_ext_emu); auto: built
                          when the CUDA headers are found (it needs no nvcc and no GPU).
  MOE_EXT_TEST_KERNELS=1  also build the test-only kernels (emulator self-tests, tile/wgmma test
                          GEMMs, torch.ops.moe_ext_emu_test); scripts/test.sh sets it.
  CUDA_HOME / CUDA_PATH   toolkit root; default /usr/local/cuda when it exists.
  MAX_JOBS                parallel compile jobs (default: all cores).
The build never queries a GPU.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
DEFAULT_ARCHS = "8.0;9.0a"


def find_cuda_home():
    """Toolkit root: $CUDA_HOME, $CUDA_PATH, /usr/local/cuda, then nvcc on PATH (resolved)."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        home = os.environ.get(var)
        if home and (Path(home) / "bin" / "nvcc").exists():
            return Path(home)
    if Path("/usr/local/cuda/bin/nvcc").exists():
        return Path("/usr/local/cuda")
    nvcc = shutil.which("nvcc")
    if nvcc:
        # /usr/local/bin/nvcc may be a wrapper script: only trust a real toolkit layout.
        home = Path(nvcc).resolve().parent.parent
        if (home / "include" / "cuda_runtime.h").exists():
            return home
    return None


def choose_archs(env) -> tuple[str, str]:
    """The CUDA arch list and where it came from: MOE_EXT_CUDA_ARCHS, else TORCH_CUDA_ARCH_LIST
    (with 9.0 promoted to 9.0a: torch's "9.0" would build no wgmma/setmaxnreg code), else the
    default. Printed by the build, so an environment variable cannot silently drop 9.0a."""
    if env.get("MOE_EXT_CUDA_ARCHS"):
        return env["MOE_EXT_CUDA_ARCHS"].replace(" ", ";"), "from MOE_EXT_CUDA_ARCHS"
    if env.get("TORCH_CUDA_ARCH_LIST"):
        archs = [a for a in env["TORCH_CUDA_ARCH_LIST"].replace(" ", ";").split(";") if a]
        promoted = ["9.0a" if a.replace("+PTX", "") == "9.0" else a for a in archs]
        why = "from TORCH_CUDA_ARCH_LIST"
        if promoted != archs:
            why += ", 9.0 taken as 9.0a for the Hopper kernels"
        return ";".join(dict.fromkeys(promoted)), why
    return DEFAULT_ARCHS, "the default; set MOE_EXT_CUDA_ARCHS to change it"


def cuda_config():
    """Decide whether to build CUDA sources; returns (enabled, cuda_home, archs)."""
    mode = os.environ.get("MOE_EXT_CUDA", "auto").lower()
    if mode not in ("auto", "0", "1"):
        raise SystemExit(f"moe_ext: MOE_EXT_CUDA must be auto, 0 or 1, got {mode!r}")
    if mode == "0":
        return False, None, ""
    import torch

    torch_cuda = torch.version.cuda is not None
    home = find_cuda_home()
    archs, source = choose_archs(os.environ)
    if torch_cuda and home is not None:
        print(f"moe_ext: building CUDA kernels for {archs} ({source})", file=sys.stderr)
        if "9.0a" not in archs.split(";"):
            print(
                "moe_ext: WARNING: 9.0a is not in the arch list, so the Hopper kernels (TMA + "
                "wgmma) are NOT built; Hopper GPUs will run the Ampere kernel. Set "
                "MOE_EXT_CUDA_ARCHS to include 9.0a.",
                file=sys.stderr,
            )
        return True, home, archs
    why = "torch is a CPU build" if not torch_cuda else "nvcc not found (set CUDA_HOME)"
    if mode == "1":
        raise SystemExit(f"moe_ext: MOE_EXT_CUDA=1 but {why}")
    print(f"moe_ext: building without CUDA kernels: {why}", file=sys.stderr)
    return False, None, ""


def emu_config():
    """Decide whether to build the emulator backend; returns (enabled, cuda_include_dir)."""
    mode = os.environ.get("MOE_EXT_EMU", "auto").lower()
    if mode not in ("auto", "0", "1"):
        raise SystemExit(f"moe_ext: MOE_EXT_EMU must be auto, 0 or 1, got {mode!r}")
    if mode == "0":
        return False, None
    home = find_cuda_home()
    include = home / "include" if home else None
    if include is not None and (include / "cuda_fp16.h").exists():
        return True, include
    if mode == "1":
        raise SystemExit("moe_ext: MOE_EXT_EMU=1 but the CUDA headers were not found (CUDA_HOME)")
    print(
        "moe_ext: building without the emulator backend: CUDA headers not found (set CUDA_HOME)",
        file=sys.stderr,
    )
    return False, None


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


def torch_to_build_against():
    """The torch the extension is compiled against, which must be the one it will run with (its
    C++ ABI and its CUDA libraries are linked in). pip's build isolation installs a second torch
    into a throw-away environment; an extension built against it may not even load beside the
    user's torch. So: stop before compiling, with the command that works."""
    fix = (
        "install torch first, then build in that environment: "
        "pip install --no-build-isolation .  (or -e . for a checkout)"
    )
    try:
        import torch
    except ImportError:
        raise SystemExit(
            f"moe_ext: torch is not importable in the build environment; {fix}"
        ) from None
    where = str(Path(torch.__file__).resolve())
    if "pip-build-env" in where or os.environ.get("PIP_BUILD_TRACKER") and "overlay" in where:
        raise SystemExit(
            f"moe_ext: pip's build isolation gave the build its own torch "
            f"{torch.__version__} ({where}), not the torch you will run with; {fix}"
        )
    print(
        f"moe_ext: compiling against torch {torch.__version__} at {Path(where).parent}",
        file=sys.stderr,
    )
    return torch


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        torch = torch_to_build_against()

        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        py_tag = f"py{sys.version_info.major}{sys.version_info.minor}"
        build_dir = ROOT / "build" / f"cmake-{py_tag}-torch{torch.__version__}"
        build_dir.mkdir(parents=True, exist_ok=True)
        enabled, home, archs = cuda_config()
        cmake_bin, ninja_bin = _tool("cmake"), _tool("ninja")
        args = [
            "-G",
            "Ninja",
            f"-DCMAKE_MAKE_PROGRAM={ninja_bin}",
            f"-DCMAKE_BUILD_TYPE={os.environ.get('MOE_EXT_BUILD_TYPE', 'Release')}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DMOE_EXT_CUDA={'ON' if enabled else 'OFF'}",
        ]
        emu, emu_include = emu_config()
        args.append(f"-DMOE_EXT_EMU={'ON' if emu else 'OFF'}")
        # test-only kernels (scripts/test.sh sets MOE_EXT_TEST_KERNELS=1; a user install has none)
        test_kernels = os.environ.get("MOE_EXT_TEST_KERNELS", "0") == "1"
        args.append(f"-DMOE_EXT_TEST_KERNELS={'ON' if test_kernels else 'OFF'}")
        if emu:
            args.append(f"-DMOE_EXT_CUDA_INCLUDE_DIR={emu_include}")
        env = dict(os.environ)
        if enabled:
            args += [
                f"-DMOE_EXT_CUDA_ARCHS={archs}",
                f"-DCMAKE_CUDA_COMPILER={home / 'bin' / 'nvcc'}",
                f"-DCUDAToolkit_ROOT={home}",
            ]
            env["CUDA_HOME"] = str(home)
            env["PATH"] = f"{home / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        subprocess.check_call([cmake_bin, str(ROOT), *args], cwd=build_dir, env=env)
        jobs = os.environ.get("MAX_JOBS") or str(os.cpu_count() or 1)
        print(
            f"moe_ext: compiling with {jobs} jobs (CUDA: {archs if enabled else 'off'}, "
            f"emulator: {'on' if emu else 'off'}); a 2-core machine takes ~4 min with CUDA, "
            f"~1 min without",
            file=sys.stderr,
            flush=True,
        )
        subprocess.check_call([cmake_bin, "--build", ".", "-j", jobs], cwd=build_dir, env=env)
        # which torch this build needs: moe_ext/__init__.py names it if the library fails to load
        (out_dir / "_build_torch.txt").write_text(torch.__version__ + "\n")


def _tool(name):
    """cmake/ninja from their pip packages (build requirements), else from PATH."""
    try:
        mod = __import__(name)
        attr = "CMAKE_BIN_DIR" if name == "cmake" else "BIN_DIR"
        path = Path(getattr(mod, attr)) / name
        if path.exists():
            return str(path)
    except (ImportError, AttributeError):
        pass
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"moe_ext: {name} not found; pip install {name}")
    return found


setup(
    packages=find_packages("python"),
    package_dir={"": "python"},
    ext_modules=[CMakeExtension("moe_ext._C")],
    cmdclass={"build_ext": CMakeBuild},
)
