"""Fingerprint of the CUDA kernels in a built moe_ext._C: per (arch, kernel) registers, stack,
shared memory, spills and the full SASS opcode histogram, as JSON; or the difference of two
fingerprints. Refactors that must not change the generated code ("the SASS instruction mix and
register counts stay as they are") are checked with it:

    python tools/sass_fingerprint.py dump  build/_C.so > before.json
    python tools/sass_fingerprint.py dump  python/moe_ext/_C*.so > after.json
    python tools/sass_fingerprint.py diff  before.json after.json   # exit 1 if they differ

Kernel names are demangled and normalised (whitespace; anonymous-namespace spellings), so a
kernel that moved between files or namespaces with unchanged code still matches by name only
if its name is unchanged: a renamed kernel shows as one removed + one added, with both
fingerprints printed, so the reader can see the code is the same.
"""

from __future__ import annotations

import collections
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sass as sass_tools  # noqa: E402


def _opcodes(sass: str) -> dict[str, int]:
    hist: collections.Counter[str] = collections.Counter()
    for line in sass.splitlines():
        m = re.match(r"\s+/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", line)
        if m:
            hist[m.group(1)] += 1
    return dict(sorted(hist.items()))


def dump(so: str) -> dict[str, dict]:
    tool = sass_tools.cuobjdump()
    if tool is None:
        raise SystemExit("cuobjdump not found (pip install nvidia-cuda-cuobjdump)")
    sass = sass_tools.sass_by_kernel(tool, so)
    usage = sass_tools.resource_usage(tool, so)
    names = sass_tools.demangle(sorted({n for _, n in sass}))
    out = {}
    for (arch, name), text in sorted(sass.items()):
        pretty = re.sub(r"\s+", " ", names.get(name, name))
        key = f"{arch} {pretty}"
        out[key] = {"usage": usage.get((arch, name), {}), "opcodes": _opcodes(text)}
    return out


def diff(a: dict, b: dict) -> list[str]:
    lines = []
    for k in sorted(set(a) | set(b)):
        if k not in b:
            lines.append(f"- removed: {k}  {a[k]['usage']}")
        elif k not in a:
            lines.append(f"+ added:   {k}  {b[k]['usage']}")
        elif a[k] != b[k]:
            ua, ub = a[k]["usage"], b[k]["usage"]
            ops = sorted(set(a[k]["opcodes"]) | set(b[k]["opcodes"]))
            delta = {o: b[k]["opcodes"].get(o, 0) - a[k]["opcodes"].get(o, 0) for o in ops}
            delta = {o: d for o, d in delta.items() if d}
            lines.append(f"~ changed: {k}\n    usage {ua} -> {ub}\n    opcodes {delta}")
    return lines


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "dump":
        json.dump(dump(sys.argv[2]), sys.stdout, indent=1)
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "diff":
        a, b = (json.loads(Path(p).read_text()) for p in sys.argv[2:])
        lines = diff(a, b)
        print("\n".join(lines) if lines else f"identical: {len(a)} kernels")
        return 1 if lines else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
