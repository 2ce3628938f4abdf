"""Performance proxies that need no GPU, from the built library and the SIMT emulator.

1. Per kernel and arch (sm_80, sm_90a), from the cubins in moe_ext._C (cuobjdump): registers,
   stack/local bytes (spills), static shared memory, the SASS instruction mix (HMMA / HGMMA,
   LDGSTS / UTMALDG / UTMASTG, LDSM / LDS, LDL / STL ...), and the theoretical occupancy on A100 and H100
   for the kernel's launch shape (threads and dynamic shared memory as the launchers choose them,
   listed in LAUNCH below), by the CUDA occupancy rules: registers allocated per warp in units of
   256, shared memory per block + 1 KB reserved, at most 32 blocks / 64 warps (2048 threads) per
   SM, 64 K registers per SM, 164 KB (A100) / 228 KB (H100) shared memory per SM.
2. From the emulator, per op at one shape: bytes moved / ideal bytes, coalescing (bytes moved /
   bytes of the 32-byte sectors touched), shared-memory bank conflicts, and the implied H100 time
   bound max(bytes / 3.35 TB/s, flops / 989 TFLOP/s) -- A MODEL, NOT A MEASUREMENT.

    python benchmarks/static_report.py [--json out.json] [--markdown out.md]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import sass as sass_tools  # noqa: E402

import moe_ext  # noqa: E402

GPUS = {  # per-SM limits
    "A100": dict(arch="sm_80", smem=164 * 1024, regs=65536, threads=2048, blocks=32),
    "H100": dict(arch="sm_90a", smem=228 * 1024, regs=65536, threads=2048, blocks=32),
}
H100_BW, H100_FLOPS = 3.35e12, 989e12

# kernel name pattern -> (threads per block, dynamic shared memory bytes) as launched on A100 /
# H100 (grouped GEMM: 5-stage pipeline or the 69.6 KB epilogue staging, whichever is larger)
LAUNCH = [
    # 1024 alignment + 4 x 32 KB stages + 8 x 9 KB warp stagings + 8 x 128 B row scales + 10 mbarriers
    (r"grouped_gemm_sm90_kernel", 384, 1024 + 131_072 + 73_728 + 1024 + 80),
    (r"grouped_gemm_tc_kernel.*TensorCoreTile<128, 128", 128, 81_920),
    (r"grouped_gemm_tc_kernel.*TensorCoreTile<32, 128", 128, 51_200),
    (r"grouped_gemm_simt_kernel", 256, 18_432),
    # 4 stages x (16 KB A + 8 KB B + 512 B row scales + 128 B) = 4 x 25.1 KB, one CTA per SM
    (r"grouped_mm_fp8_kernel", 256, 4 * 25_216),
    (r"wgmma_gemm_kernel<256", 160, 1024 + 2 * 40_960 + 4 * 4096 + 32),
    (r"wgmma_gemm_kernel", 160, 1024 + 2 * 24_576 + 4 * 4096 + 32),
    (r"tile_gemm_kernel", 128, 0),
    (r"sort_tokens", 256, 8192),
    (r"quantize_fp8_kernel|mlp_backward_rows_kernel", 256, 0),  # warp per (row, group) / row
    (r"route", 128, 0),
    (r"unpermute_kernel", 128, 64),
    (r"", 128, 0),
]


def launch_shape(name: str) -> tuple[int, int]:
    for pattern, threads, smem in LAUNCH:
        if re.search(pattern, name):
            return threads, smem
    return 128, 0


def occupancy(regs: int, threads: int, smem: int, gpu: dict) -> dict:
    warps = math.ceil(threads / 32)
    regs_per_warp = math.ceil(max(regs, 1) * 32 / 256) * 256
    by_regs = (gpu["regs"] // regs_per_warp) // warps
    by_threads = gpu["threads"] // (warps * 32)
    by_smem = gpu["smem"] // (smem + 1024) if smem + 1024 <= gpu["smem"] else 0
    blocks = min(by_regs, by_threads, by_smem, gpu["blocks"])
    limiter = min((by_regs, "registers"), (by_threads, "threads"), (by_smem, "shared memory"))[1]
    return dict(blocks_per_sm=blocks, occupancy=blocks * warps / 64, limiter=limiter)


def kernel_table() -> list[dict]:
    tool = sass_tools.cuobjdump()
    so = moe_ext._C.__file__
    if tool is None or not moe_ext.build_info().get("cuda"):
        return []
    usage = sass_tools.resource_usage(tool, so)
    sass = sass_tools.sass_by_kernel(tool, so)
    names = sass_tools.demangle(sorted({n for _, n in usage}))
    rows = []
    for (arch, name), u in sorted(usage.items()):
        pretty = names.get(name, name)
        if "ptx_selftest" in pretty:
            continue
        threads, smem = launch_shape(pretty)
        gpu = next((g for g, spec in GPUS.items() if spec["arch"] == arch), None)
        occ = (
            occupancy(u.get("REG", 0), threads, smem + u.get("SHARED", 0), GPUS[gpu]) if gpu else {}
        )
        rows.append(
            dict(
                arch=arch,
                kernel=pretty,
                regs=u.get("REG", 0),
                stack=u.get("STACK", 0),
                local=u.get("LOCAL", 0),
                static_smem=u.get("SHARED", 0),
                threads=threads,
                dynamic_smem=smem,
                gpu=gpu,
                **occ,
                mix=sass_tools.instruction_mix(sass.get((arch, name), "")),
            )
        )
    return rows


def emulator_proxies() -> list[dict]:
    """Bytes vs ideal, coalescing and bank conflicts of each op's kernel at one shape."""
    if not moe_ext.build_info().get("emulator"):
        return []
    E_ops = torch.ops.moe_ext_emu
    g = torch.Generator().manual_seed(0)
    T, k, E, H = 64, 2, 8, 2048
    N = T * k
    ids = torch.stack([torch.randperm(E, generator=g)[:k] for _ in range(T)]).int()
    order, slot, offsets = moe_ext.sort_tokens(ids, E)
    x = torch.randn(T, H, generator=g).bfloat16()
    yp = torch.randn(N, H, generator=g).bfloat16()
    w = torch.rand(T, k, generator=g)
    logits = torch.randn(4096, 64, generator=g)
    M, K, Nn, G = 512, 256, 256, 4
    a = torch.randn(M, K, generator=g).bfloat16()
    b = torch.randn(G, Nn, K, generator=g).bfloat16().transpose(-2, -1)
    offs = torch.tensor([128, 256, 384, 512], dtype=torch.int32)
    gemm_bytes = (M * K + G * K * Nn + M * Nn) * 2
    a_q, a_s = moe_ext.quantize_fp8(a)
    w_q, w_s = moe_ext.ops.quantize_weight_fp8(b.transpose(-2, -1).float())
    fp8 = (a_q, a_s, w_q, w_s)
    fp8_bytes = M * K + G * K * Nn + M * Nn * 2 + (a_s.numel() + w_s.numel()) * 4
    cases = [
        ("route", lambda: E_ops.route(logits, 8), 4096 * 64 * 4 + 4096 * 8 * 8, 0),
        ("sort_tokens", lambda: E_ops.sort_tokens(ids, E), N * 4 * 3 + E * 4, 0),
        ("permute", lambda: E_ops.permute(x, order, slot, k), 2 * N * H * 2 + 2 * N * 4, 0),
        (
            "unpermute",
            lambda: E_ops.unpermute(yp, order, slot, w),
            N * H * 2 + T * H * 2 + 8 * N,
            0,
        ),
        (
            "unpermute_backward",
            lambda: E_ops.unpermute_backward(x, yp, order, slot, w),
            3 * N * H * 2 + 16 * N,
            0,
        ),
        (
            "grouped_mm sm80",
            lambda: _with_path("sm80", lambda: E_ops.grouped_mm(a, b, offs)),
            gemm_bytes,
            2 * M * K * Nn,
        ),
        (
            "grouped_mm sm90",
            lambda: _with_path("sm90", lambda: E_ops.grouped_mm(a, b, offs)),
            gemm_bytes,
            2 * M * K * Nn,
        ),
        # block FP8: e4m3 operands (1 byte), fp32 scales per 128, bf16 output
        (
            "grouped_mm_fp8 f16",
            lambda: _with_fp8_mma("f16", lambda: E_ops.grouped_mm_fp8(*fp8, offs, torch.bfloat16)),
            fp8_bytes,
            2 * M * K * Nn,
        ),
        (
            "grouped_mm_fp8 e4m3",
            lambda: _with_fp8_mma("e4m3", lambda: E_ops.grouped_mm_fp8(*fp8, offs, torch.bfloat16)),
            fp8_bytes,
            2 * M * K * Nn,
        ),
        ("quantize_fp8", lambda: E_ops.quantize_fp8(a), M * K * 2 + M * K + M * K // 32, 0),
    ]
    rows = []
    for name, fn, ideal, flops in cases:
        fn()
        s = moe_ext.emu.last_launch_stats()
        moved = s["global_bytes_read"] + s["global_bytes_written"]
        rows.append(
            dict(
                op=name,
                bytes_moved=moved,
                ideal_bytes=ideal,
                moved_over_ideal=moved / ideal,
                coalescing=min(1.0, moved / max(1, 32 * s["global_sectors"])),  # >1: broadcasts
                bank_conflicts=s["bank_conflicts"],
                h100_model_us=max(ideal / H100_BW, flops / H100_FLOPS) * 1e6,
            )
        )
    return rows


def _with_fp8_mma(mma, fn):
    import os

    os.environ["MOE_EXT_FP8_MMA"] = mma
    try:
        return fn()
    finally:
        os.environ.pop("MOE_EXT_FP8_MMA")


def _with_path(path, fn):
    import os

    old = os.environ.get("MOE_EXT_GEMM_PATH")
    os.environ["MOE_EXT_GEMM_PATH"] = path
    try:
        return fn()
    finally:
        if old is None:
            os.environ.pop("MOE_EXT_GEMM_PATH")
        else:
            os.environ["MOE_EXT_GEMM_PATH"] = old


def markdown(kernels: list[dict], proxies: list[dict]) -> str:
    out = [
        "# Static performance report",
        "",
        "Kernels (cuobjdump of the built library; occupancy from the CUDA rules at the "
        "launchers' shapes):",
        "",
        "| arch | kernel | regs | spill (stack/local) | smem static+dyn | threads | blocks/SM | "
        "occupancy (limiter) | HMMA | HGMMA | LDGSTS | UTMALDG (multicast) | UTMASTG | LDSM | "
        "LDL+STL |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in kernels:
        m = r["mix"]
        short = re.sub(r"\(.*", "", r["kernel"]).replace("moe_ext::cuda::", "")
        out.append(
            f"| {r['arch']} | `{short}` | {r['regs']} | {r['stack']}/{r['local']} | "
            f"{r['static_smem']}+{r['dynamic_smem']} | {r['threads']} | "
            f"{r.get('blocks_per_sm', '')} | {r.get('occupancy', 0):.0%} ({r.get('limiter', '')}) | "
            f"{m['HMMA']} | {m['HGMMA']} | {m['LDGSTS']} | {m['UTMALDG']} ({m['UTMALDG_MC']}) | "
            f"{m['UTMASTG']} | {m['LDSM']} | "
            f"{m['LDL'] + m['STL']} |"
        )
    out += [
        "",
        "Emulator proxies (one shape per op; the H100 time is a MODEL: "
        "max(ideal bytes / 3.35 TB/s, flops / 989 TFLOP/s), not a measurement):",
        "",
        "| op | bytes moved / ideal | coalescing | bank conflicts | H100 model µs |",
        "|---|---|---|---|---|",
    ]
    for r in proxies:
        out.append(
            f"| {r['op']} | {r['moved_over_ideal']:.3f} | {r['coalescing']:.0%} | "
            f"{r['bank_conflicts']} | {r['h100_model_us']:.2f} |"
        )
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=str, default=None)
    ap.add_argument("--markdown", type=str, default=None)
    args = ap.parse_args()
    kernels, proxies = kernel_table(), emulator_proxies()
    md = markdown(kernels, proxies)
    print(md)
    if args.markdown:
        Path(args.markdown).write_text(md)
    if args.json:
        Path(args.json).write_text(json.dumps(dict(kernels=kernels, emulator=proxies), indent=1))


if __name__ == "__main__":
    main()
