"""Emulator counters of the router kernel per token, at decode batch sizes.

Runs ``torch.ops.moe_ext_emu.route`` (the CUDA router kernel on the CPU SIMT emulator) for the
routers of ``shapes.ROUTERS`` at T = 1, 16 and 64 tokens and prints, per token, the warp-level
instructions the emulator counts: warp collectives (each one SHFL / VOTE / MATCH of one warp),
shared-memory requests and wavefronts, global requests. The router is one warp per token, so at
T <= 64 its latency is the length of that warp's dependent chain, which these counts bound.
They are counts, not times.

    PYTHONPATH=python python benchmarks/emu_route_counters.py [--markdown] [--routers NAME ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shapes import ROUTERS  # noqa: E402

import moe_ext  # noqa: E402

KEYS = (
    "warp_collectives",
    "collective_instrs",
    "shared_requests",
    "shared_wavefronts",
    "global_requests",
)
DEFAULT = ("deepseek-v3", "deepseek-v4", "kimi-k2", "qwen3-next-80b-a3b", "e1024-top8-grouped")


def rows(names, tokens=(1, 16, 64)) -> list[dict]:
    out = []
    for name in names:
        r = ROUTERS[name]
        kw = dict(r.route)
        bias = kw.pop("bias", False)
        for T in tokens:
            g = torch.Generator().manual_seed(T)
            logits = torch.randn(T, r.num_experts, generator=g).bfloat16()
            b = torch.randn(r.num_experts, generator=g) * 0.1 if bias else None
            with moe_ext.emu.launch_log() as log:
                torch.ops.moe_ext_emu.route(
                    logits,
                    r.top_k,
                    kw.get("score_func", "softmax"),
                    kw.get("renormalize", True),
                    b,
                    kw.get("num_groups", 1),
                    kw.get("topk_groups", 1),
                    kw.get("scaling_factor", 1.0),
                )
            row = dict(router=name, E=r.num_experts, k=r.top_k, T=T)
            groups = kw.get("num_groups", 1)
            row["groups"] = f"{groups}/{kw.get('topk_groups', 1)}" if groups > 1 else "-"
            for key in KEYS:
                row[key + "_per_token"] = sum(s[key] for s in log) / T
            out.append(row)
    return out


def markdown(table: list[dict]) -> str:
    cols = list(table[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in table:
        lines.append(
            "| "
            + " | ".join(f"{r[c]:.1f}" if isinstance(r[c], float) else str(r[c]) for c in cols)
            + " |"
        )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--routers", nargs="*", default=list(DEFAULT))
    args = ap.parse_args()
    if not moe_ext.emu.available():
        raise SystemExit("moe_ext was built without the emulator")
    table = rows(args.routers)
    print(markdown(table) if args.markdown else "\n".join(map(str, table)))


if __name__ == "__main__":
    main()
