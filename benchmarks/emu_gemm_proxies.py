"""Roofline proxies of the grouped GEMM's tile configs, from the SIMT emulator and ptxas.

No GPU measures these kernels here, so issue 20's goals are tracked through counts that the
emulator takes while it runs the CUDA source (``torch.ops.moe_ext_emu.grouped_mm``, one config at
a time through ``MOE_EXT_GEMM_PATH`` / ``MOE_EXT_GEMM_CONFIG``), per output tile:

- global bytes read per FLOP (every byte the CTAs load, TMA boxes included; a 2-CTA multicast
  would count its box once) and that figure over the 128x128 kernel's;
- shared-memory operand bytes per tensor-core instruction (wgmma: A and B once per warpgroup
  instruction; mma.sync: the ldmatrix/lds bytes per mma) and per FLOP;
- the epilogue's memory instructions per tile (warp-level global + shared requests the tensor-core
  warps issue after handing on the MMA turn) and the memory instructions issued while holding
  the turn -- the proxy for "a tensor-core warp waits on an epilogue": 0 means no epilogue
  instruction sits between two of the CTA's MMA groups;
- registers and spills of the config's sm_90a / sm_80 instantiations (cuobjdump of the build).

Counts and ratios, not times. The Hopper grouped GEMM runs as single CTAs (config sm90) and in
2x2 clusters multicasting A and B (sm90_cluster, csrc/kernels/grouped_gemm/sm90_cluster.cuh);
the analytic rows compare them with the 128x256 tiles of issue 20 item 2 (not built). The
multicast is also measured on the Hopper test GEMM (64 x BN tiles, 2-CTA clusters sharing B).

    PYTHONPATH=python python benchmarks/emu_gemm_proxies.py [--markdown out.md]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import sass as sass_tools  # noqa: E402

import moe_ext  # noqa: E402

# (label, MOE_EXT_GEMM_PATH, MOE_EXT_GEMM_CONFIG, tile M, tile N, kernel-name pattern)
CONFIGS = [
    (
        "sm90 128x128 ping-pong (TMA, wgmma)",
        "sm90",
        "sm90",
        128,
        128,
        r"grouped_gemm_sm90_kernel<.*, false>",
    ),
    (
        "sm90 128x128 ping-pong, 2x2 cluster multicasting A and B",
        "sm90",
        "sm90_cluster",
        128,
        128,
        r"grouped_gemm_sm90_kernel<.*, true>",
    ),
    (
        "sm80 large 128x128 (cp.async, mma.sync)",
        "sm80",
        "large",
        128,
        128,
        r"TensorCoreTile<128, 128",
    ),
    (
        "sm80 small_m 32x128 (cp.async, mma.sync)",
        "sm80",
        "small_m",
        32,
        128,
        r"TensorCoreTile<32, 128",
    ),
]


def _problem(m_per_group: int, groups: int, n: int, k: int):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(m_per_group * groups, k, generator=g).bfloat16()
    b = torch.randn(groups, n, k, generator=g).bfloat16().transpose(-2, -1)  # HF [E, N, K]
    offs = torch.arange(1, groups + 1, dtype=torch.int32) * m_per_group
    return a, b, offs


def forced_stats(path: str, config: str, a, b, offs, m_per_group: int, what: str) -> dict:
    """The emulator's counters of one grouped_mm forced onto (MOE_EXT_GEMM_PATH, _CONFIG), after
    checking its result against torch (equal groups of m_per_group rows)."""
    old = {key: os.environ.get(key) for key in ("MOE_EXT_GEMM_PATH", "MOE_EXT_GEMM_CONFIG")}
    os.environ.update(MOE_EXT_GEMM_PATH=path, MOE_EXT_GEMM_CONFIG=config)
    try:
        out = torch.ops.moe_ext_emu.grouped_mm(a, b, offs)
        s = moe_ext.emu.last_launch_stats()
    finally:
        for key, v in old.items():
            os.environ.pop(key) if v is None else os.environ.__setitem__(key, v)
    ref = torch.cat(
        [
            a[i * m_per_group : (i + 1) * m_per_group].float() @ b[i].float()
            for i in range(b.shape[0])
        ]
    )
    assert torch.allclose(out.float(), ref, rtol=2e-2, atol=2e-1), f"{what}: wrong result"
    return s


def run_config(path: str, config: str, tm: int, tn: int, shape) -> dict:
    m_per_group, groups, n, k = shape
    s = forced_stats(path, config, *_problem(*shape), m_per_group, f"{path} {config}")
    flops = 2 * m_per_group * groups * n * k
    tiles = groups * -(-m_per_group // tm) * -(-n // tn)
    tc = s["wgmma"] or s["mma"]
    tc_bytes = s["wgmma_shared_bytes"] if s["wgmma"] else s["shared_bytes_read"]
    return dict(
        global_bytes_per_flop=s["global_bytes_read"] / flops,
        tma_bytes_per_flop=s["tma_load_bytes"] / flops,
        shared_bytes_per_mma=tc_bytes / max(1, tc),
        shared_bytes_per_flop=tc_bytes / flops,
        tc_instructions=tc,
        tiles=tiles,
        epilogue_requests_per_tile=s["epilogue_requests"] / tiles,
        turn_requests=s["tc_turn_requests"],
        warp_specialised=s["wgmma"] > 0,
    )


def test_gemm_rows(m=256, k=512) -> list[dict]:
    """The Hopper test GEMM (csrc/kernels/testing/wgmma_gemm.cuh: 64 x BN CTA tiles, one consumer
    warpgroup) with and without the 2-CTA cluster multicasting B: the multicast mechanism the
    128x256 grouped GEMM will use, measured on the emulator."""
    if not hasattr(torch.ops.moe_ext_emu_test, "wgmma_gemm"):
        return []
    out = []
    for block_n in (128, 256):
        n = 2 * block_n
        g = torch.Generator().manual_seed(block_n)
        a = torch.randn(m, k, generator=g).bfloat16()
        b = torch.randn(n, k, generator=g).bfloat16()
        for cluster_m in (1, 2):
            torch.ops.moe_ext_emu_test.wgmma_gemm(a, b, 3, 0, True, block_n, cluster_m)
            s = moe_ext.emu.last_launch_stats()
            flops = 2 * m * n * k
            out.append(
                dict(
                    label=f"test GEMM 64x{block_n}"
                    + (", 2x1 cluster multicasting B" if cluster_m == 2 else ""),
                    global_bytes_per_flop=s["global_bytes_read"] / flops,
                    model=(64 + block_n / cluster_m) / (64 * block_n),
                    multicast_bytes_per_flop=s["tma_multicast_bytes"] / flops,
                    shared_bytes_per_mma=s["wgmma_shared_bytes"] / max(1, s["wgmma"]),
                )
            )
    return out


# decode-sized problems (issue 20 item 4): (label, path, config, kernel-name pattern)
DECODE_CONFIGS = [
    (
        "sm80 swap_ab 16x128 (weights on the MMA's M side)",
        "sm80",
        "swap_ab",
        r"TensorCoreTile<16, 128",
    ),
    ("sm80 small_m 32x128", "sm80", "small_m", r"TensorCoreTile<32, 128"),
    ("sm90 128x128 ping-pong", "sm90", "sm90", r"grouped_gemm_sm90_kernel<.*, false>"),
]
MMA_FLOPS = 2 * 16 * 8 * 16  # mma.sync.m16n8k16
WGMMA_FLOPS = 2 * 64 * 128 * 16  # wgmma.m64n128k16 (the grouped GEMM's instruction)


def decode_rows(shape=(4, 16, 512, 1024)) -> list[dict]:
    """Per config at a decode shape (rows per expert, experts, N, K): tensor-core FLOPs issued
    over useful FLOPs (the MMA padding), global bytes read per useful FLOP, and shared-memory
    operand bytes per useful FLOP."""
    m_per_group, groups, n, k = shape
    a, b, offs = _problem(*shape)
    flops = 2 * m_per_group * groups * n * k
    out = []
    for label, path, config, pattern in DECODE_CONFIGS:
        s = forced_stats(path, config, a, b, offs, m_per_group, label)
        issued = s["wgmma"] * WGMMA_FLOPS if s["wgmma"] else s["mma"] * MMA_FLOPS
        tc_bytes = s["wgmma_shared_bytes"] if s["wgmma"] else s["shared_bytes_read"]
        out.append(
            dict(
                label=label,
                issued_over_useful=issued / flops,
                global_bytes_per_flop=s["global_bytes_read"] / flops,
                shared_bytes_per_flop=tc_bytes / flops,
                threads_per_cta=s["threads"] // max(1, s["blocks"]),
                **registers(pattern),
            )
        )
    return out


def registers(pattern: str) -> dict:
    tool = sass_tools.cuobjdump()
    if tool is None or not moe_ext.build_info().get("cuda"):
        return {}
    usage = sass_tools.resource_usage(tool, moe_ext._C.__file__)
    names = sass_tools.demangle(sorted({n for _, n in usage}))
    regs, spills = set(), 0
    for (_arch, name), u in usage.items():
        if re.search(pattern, names.get(name, name)):
            regs.add(u.get("REG", 0))
            spills += u.get("LOCAL", 0) + u.get("STACK", 0)
    return dict(
        regs=f"{min(regs)}-{max(regs)}" if len(regs) > 1 else str(next(iter(regs), "")),
        spills=spills,
    )


def markdown(shape, rows, test_rows=(), decode=(), decode_shape=(4, 16, 512, 1024)) -> str:
    m, g, n, k = shape
    base = rows[0]["global_bytes_per_flop"]
    out = [
        "# Grouped GEMM roofline proxies (SIMT emulator + cuobjdump; counts, not times)",
        "",
        f"Shape: {g} groups x {m} rows, N={n}, K={k}, bf16, weights in the HF [E, N, K] layout. "
        "`global B/FLOP`: bytes the CTAs read from global memory per FLOP (TMA boxes included); "
        "`shared B/MMA`: operand bytes the tensor-core instructions read from shared memory "
        "(wgmma: A + B once per warpgroup instruction; mma.sync: the warps' ldmatrix/lds bytes per "
        "mma); `epilogue mem/tile`: warp-level memory instructions of the epilogue per tile; "
        "`mem in MMA turn`: memory instructions issued by a warp holding the CTA's MMA turn (0: no "
        "epilogue instruction between two MMA groups).",
        "",
        "| config | global B/FLOP | vs sm90 128x128 | TMA B/FLOP | shared B/MMA | shared B/FLOP | "
        "epilogue mem/tile | mem in MMA turn | regs | spills |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        turn = r["turn_requests"] if r["warp_specialised"] else "all (no warp specialisation)"
        epi = f"{r['epilogue_requests_per_tile']:.1f}" if r["warp_specialised"] else "n/a"
        out.append(
            f"| {r['label']} | {r['global_bytes_per_flop']:.5f} | "
            f"{r['global_bytes_per_flop'] / base:.2f}x | {r['tma_bytes_per_flop']:.5f} | "
            f"{r['shared_bytes_per_mma']:.0f} | {r['shared_bytes_per_flop']:.4f} | {epi} | {turn} | "
            f"{r.get('regs', '')} | {r.get('spills', '')} |"
        )
    out += [
        "",
        "The multicast mechanism, measured: the Hopper test GEMM (64 x BN CTA tiles, one consumer "
        "warpgroup, TMA-store epilogue), M=256, N=2 BN, K=512:",
        "",
        "| config | global B/FLOP (emulator) | model (64 + BN/c) / (64 BN) | multicast B/FLOP | shared B/MMA |",
        "|---|---|---|---|---|",
    ]
    for r in test_rows:
        out.append(
            f"| {r['label']} | {r['global_bytes_per_flop']:.5f} | {r['model']:.5f} | "
            f"{r['multicast_bytes_per_flop']:.5f} | {r['shared_bytes_per_mma']:.0f} |"
        )
    if decode:
        dm, dg, dn, dk = decode_shape
        out += [
            "",
            f"Decode ({dg} experts x {dm} rows, N={dn}, K={dk}; issue 20 item 4): tensor-core "
            "FLOPs issued per useful FLOP (the MMA padding), global and shared-memory operand "
            "bytes per useful FLOP:",
            "",
            "| config | issued / useful FLOPs | global B/FLOP | shared B/FLOP | threads/CTA | regs | spills |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in decode:
            out.append(
                f"| {r['label']} | {r['issued_over_useful']:.2f} | {r['global_bytes_per_flop']:.4f} | "
                f"{r['shared_bytes_per_flop']:.4f} | {r['threads_per_cta']} | {r.get('regs', '')} | "
                f"{r.get('spills', '')} |"
            )

    # the analytic model: per CTA and k step, A (BM x 2 B) + B (BN x 2 B) per 2 BM BN FLOPs; a
    # cluster loads 1/share_a of A and 1/share_b of B per CTA (multicast to the others)
    def model(bm, bn, share_a, share_b):
        return (bm * 2 / share_a + bn * 2 / share_b) / (2 * bm * bn)

    ref = model(128, 128, 1, 1)
    out += [
        "",
        "Analytic model (per CTA, full tiles; issue 20's goal is <= 0.55x on the large GEMMs):",
        "",
        "| tile | global B/FLOP | vs 128x128 |",
        "|---|---|---|",
    ]
    for label, bm, bn, share_a, share_b in (
        ("128x128", 128, 128, 1, 1),
        ("128x128, 2x2 cluster multicasting A and B (built: sm90_cluster)", 128, 128, 2, 2),
        ("128x128, 2x2 cluster, gathered A (moe_mlp's first GEMM: B only)", 128, 128, 1, 2),
        ("128x256", 128, 256, 1, 1),
        ("128x256, 2x1 cluster multicasting B (not built)", 128, 256, 1, 2),
    ):
        r = model(bm, bn, share_a, share_b)
        out.append(f"| {label} | {r:.5f} | {r / ref:.2f}x |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--markdown", type=str, default=None)
    ap.add_argument(
        "--shape", type=int, nargs=4, default=(256, 2, 256, 512), metavar=("M", "G", "N", "K")
    )
    args = ap.parse_args()
    if not moe_ext.build_info().get("emulator"):
        sys.exit("the emulator is not built (MOE_EXT_EMU=0)")
    shape = tuple(args.shape)
    rows = []
    for label, path, config, tm, tn, pattern in CONFIGS:
        r = run_config(path, config, tm, tn, shape)
        rows.append(dict(label=label, **r, **registers(pattern)))
    md = markdown(shape, rows, test_gemm_rows(), decode_rows())
    print(md)
    if args.markdown:
        Path(args.markdown).write_text(md)


if __name__ == "__main__":
    main()
