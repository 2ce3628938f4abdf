"""Emulator counters of the permutation kernels (sort_tokens, permute, unpermute, unpermute_backward).

Runs each op once on the CPU SIMT emulator under ``moe_ext.emu.launch_log()`` and prints one row
per kernel launch: bytes read/written, global requests and 32-byte sectors, coalescing (bytes
moved / (sectors x 32): 100 % when every sector a request touches is fully used), shared
requests, wavefronts and bank conflicts, barriers and warp collectives. sort_tokens at N <= 4096
assignments is one launch (the single-block scatter kernel); above, three (histogram, scan,
scatter). Counters are exact and deterministic; they are not times.

    PYTHONPATH=python python benchmarks/emu_permutation_counters.py [--markdown]
"""

from __future__ import annotations

import argparse

import torch

import moe_ext

KEYS = (
    "global_bytes_read",
    "global_bytes_written",
    "global_requests",
    "global_sectors",
    "shared_requests",
    "shared_wavefronts",
    "bank_conflicts",
    "barriers",
    "warp_collectives",
)

# (T, H, k, E): realistic k/E (Qwen3-30B-A3B, DeepSeek-V3), H scaled down so the emulator finishes
# in seconds. T*k = 2048 takes sort_tokens' one-launch path, 8192 and 65536 its three-launch path.
SHAPES = ((256, 1024, 8, 128), (1024, 512, 8, 128), (8192, 64, 8, 256))


def coalescing(s: dict) -> float:
    moved = s["global_bytes_read"] + s["global_bytes_written"]
    return moved / max(1, 32 * s["global_sectors"])


def rows(ops_filter: set[str] | None = None) -> list[dict]:
    ops = torch.ops.moe_ext_emu
    out = []
    for T, H, k, E in SHAPES:
        g = torch.Generator().manual_seed(0)
        N = T * k
        ids = torch.stack([torch.randperm(E, generator=g)[:k] for _ in range(T)]).int()
        order, slot, offsets = moe_ext.sort_tokens(ids, E)
        x = torch.randn(T, H, generator=g).bfloat16()
        yp = torch.randn(N, H, generator=g).bfloat16()
        w = torch.rand(T, k, generator=g)
        gy = torch.randn(T, H, generator=g).bfloat16()
        cases = [
            ("sort_tokens", lambda: ops.sort_tokens(ids, E)),
            ("permute", lambda: ops.permute(x, order, slot, k)),
            ("unpermute", lambda: ops.unpermute(yp, order, slot, w)),
            ("unpermute_backward", lambda: ops.unpermute_backward(gy, yp, order, slot, w)),
        ]
        for name, fn in cases:
            if ops_filter and name not in ops_filter:
                continue
            with moe_ext.emu.launch_log() as log:
                fn()
            for s in log:
                r = dict(op=name, kernel=s["kernel"], shape=f"T={T} H={H} k={k} E={E}")
                r.update({key: s[key] for key in KEYS})
                r["coalescing"] = coalescing(s)
                out.append(r)
    return out


def markdown(table: list[dict]) -> str:
    cols = ["op", "kernel", "shape", *KEYS, "coalescing"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in table:
        cells = [f"{100 * r[c]:.1f} %" if c == "coalescing" else str(r[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--ops", nargs="*", help="only these ops")
    args = ap.parse_args()
    if not moe_ext.emu.available():
        raise SystemExit("moe_ext was built without the emulator")
    table = rows(set(args.ops) if args.ops else None)
    if args.markdown:
        print(markdown(table))
    else:
        for r in table:
            print(r)


if __name__ == "__main__":
    main()
