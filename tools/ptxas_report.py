#!/usr/bin/env python3
"""Summarise `ptxas -v` output (nvcc -Xptxas -v): registers, stack and spills per kernel.

Usage: nvcc ... -Xptxas -v -c file.cu 2>&1 | python3 tools/ptxas_report.py [--fail-on-spill]
"""

import re
import subprocess
import sys


def parse(text):
    rows, cur = [], None
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '(\S+)' for '(\w+)'", line)
        if m:
            cur = {"kernel": m.group(1), "arch": m.group(2)}
            rows.append(cur)
            continue
        if cur is None:
            continue
        m = re.search(
            r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line
        )
        if m:
            cur.update(
                stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3))
            )
        m = re.search(r"Used (\d+) registers", line)
        if m:
            cur["registers"] = int(m.group(1))
    return rows


def demangle(names):
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True)
        return out.stdout.splitlines()
    except OSError:
        return names


def main():
    rows = parse(sys.stdin.read())
    names = demangle([r["kernel"] for r in rows])
    spills = 0
    for r, n in zip(rows, names):
        spills += r.get("spill_stores", 0) + r.get("spill_loads", 0)
        print(
            f"{r['arch']:7s} regs {r.get('registers', 0):3d} stack {r.get('stack', 0):4d} "
            f"spill st/ld {r.get('spill_stores', 0)}/{r.get('spill_loads', 0)}  {n}"
        )
    if "--fail-on-spill" in sys.argv and spills:
        sys.exit(f"ptxas_report: {spills} bytes of spills")


if __name__ == "__main__":
    main()
