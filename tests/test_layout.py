"""The include layering of csrc/ (no build needed).

- csrc/kernels and csrc/common never include the emulator (a path with `simt/`): the emulator's
  side of the common headers is `<moe_emu/...>`, resolved only by the emulator build's include
  path (csrc/simt/include, cmake/emu.cmake).
- csrc/kernels, csrc/common and csrc/cuda are torch-free (no torch/, ATen/ or c10/ headers).
- csrc/cpu includes nothing from csrc/binding/ (it receives checked tensors).

Each failure names file:line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
SOURCE_SUFFIXES = {".h", ".hpp", ".cuh", ".cu", ".cpp", ".cc", ".inl"}
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def includes(*dirs: str):
    """(file, line number, include path, resolved path or None) for every #include under dirs."""
    out = []
    for d in dirs:
        base = CSRC / d
        assert base.is_dir(), f"{base} is missing"
        for f in sorted(base.rglob("*")):
            if f.suffix not in SOURCE_SUFFIXES or not f.is_file():
                continue
            for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
                m = INCLUDE.match(line)
                if m is None:
                    continue
                quoted, path = m.group(1) == '"', m.group(2)
                resolved = (f.parent / path).resolve() if quoted else None
                out.append((f, n, path, resolved))
    return out


def where(f: Path, n: int, path: str) -> str:
    return f"{f.relative_to(ROOT)}:{n}: #include {path}"


def under(p: Path | None, d: str) -> bool:
    return p is not None and p.is_relative_to(CSRC / d)


def test_scanner_sees_includes():
    # guard against a scanner that silently matches nothing
    found = includes("kernels", "common")
    assert any(path.endswith("common/portable.h") for _, _, path, _ in found)
    assert any(path == "moe_emu/ptx.h" for _, _, path, _ in found)


def test_kernels_and_common_do_not_include_the_emulator():
    bad = [
        where(f, n, path)
        for f, n, path, res in includes("kernels", "common")
        if "simt/" in path or under(res, "simt")
    ]
    assert not bad, (
        "csrc/kernels and csrc/common must not include csrc/simt (use <moe_emu/...>"
        " from a common header):\n" + "\n".join(bad)
    )


@pytest.mark.parametrize("d", ["kernels", "common", "cuda"])
def test_torch_free(d):
    bad = [
        where(f, n, path) for f, n, path, _ in includes(d) if re.match(r"(torch|ATen|c10)/", path)
    ]
    assert not bad, f"csrc/{d} must be torch-free:\n" + "\n".join(bad)


def test_cpu_does_not_include_binding():
    bad = [
        where(f, n, path)
        for f, n, path, res in includes("cpu")
        if "binding/" in path or under(res, "binding")
    ]
    assert not bad, "csrc/cpu must not include csrc/binding:\n" + "\n".join(bad)
