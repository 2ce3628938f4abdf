"""The build: what moe_ext._C reports, and (when CI demands it) that the CUDA kernels really
were compiled to SASS for every requested arch plus PTX for the lowest one."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import moe_ext

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import sass as sass_tools  # noqa: E402

REQUIRE_CUDA = os.environ.get("MOE_EXT_REQUIRE_CUDA_BUILD") == "1"
_cuobjdump = sass_tools.cuobjdump


def test_build_info_fields():
    info = moe_ext.build_info()
    assert info["torch_version"] == torch.__version__
    assert isinstance(info["cuda"], bool)
    assert info["emulator"] in (True, False)
    assert info["test_kernels"] in (True, False)
    if info["cuda"]:
        assert info["cuda_archs"], "a CUDA build must list its archs"
    else:
        assert info["cuda_archs"] == []


def test_ops_registered():
    for name in ("route", "sort_tokens", "permute", "unpermute", "grouped_mm"):
        assert hasattr(torch.ops.moe_ext, name)


@pytest.mark.skipif(not REQUIRE_CUDA, reason="set MOE_EXT_REQUIRE_CUDA_BUILD=1 to require CUDA")
def test_cuda_kernels_compiled_for_every_arch():
    info = moe_ext.build_info()
    assert info["cuda"], "MOE_EXT_REQUIRE_CUDA_BUILD=1 but the CUDA kernels were not built"
    # the SASS checks below read the test GEMMs: the test command builds them
    assert info["test_kernels"], (
        "the test command builds the test-only kernels (MOE_EXT_TEST_KERNELS=1)"
    )
    assert {"8.0", "9.0a"} <= set(info["cuda_archs"])
    tool = _cuobjdump()
    assert tool, "cuobjdump is needed to inspect the fatbinary (pip install nvidia-cuda-cuobjdump)"
    so = moe_ext._C.__file__
    elf = subprocess.run([tool, "--list-elf", so], capture_output=True, text=True, check=True)
    ptx = subprocess.run([tool, "--list-ptx", so], capture_output=True, text=True, check=True)
    assert ".sm_80.cubin" in elf.stdout and ".sm_90a.cubin" in elf.stdout, elf.stdout
    assert ".sm_80.ptx" in ptx.stdout, ptx.stdout


def _sass(tool, so):
    """{(arch, mangled kernel): SASS text} of the CUDA kernels in the library (tools/sass.py)."""
    return sass_tools.sass_by_kernel(tool, so)


@pytest.mark.slow
@pytest.mark.skipif(not REQUIRE_CUDA, reason="set MOE_EXT_REQUIRE_CUDA_BUILD=1 to require CUDA")
def test_sass_main_loops_and_no_local_memory():
    tool = _cuobjdump()
    assert tool, "cuobjdump is needed (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)"
    sass = _sass(tool, moe_ext._C.__file__)
    archs = {arch for arch, _ in sass}
    assert {"sm_80", "sm_90a"} <= archs, archs
    for arch in ("sm_80", "sm_90a"):
        gemm = [text for (a, n), text in sass.items() if a == arch and "tile_gemm_kernel" in n]
        assert len(gemm) == 1, f"tile_gemm_kernel missing for {arch}"
        # the tensor-core mainloop: mma.sync -> HMMA, ldmatrix -> LDSM, cp.async -> LDGSTS
        for op in ("HMMA.16816.F32.BF16", "LDSM", "LDGSTS"):
            assert op in gemm[0], f"{op} not in tile_gemm_kernel for {arch}"
        # the grouped GEMM: every tensor-core instantiation (2 dtypes x (2 configs x (4 operand
        # layouts + 2 gated fused-MLP ones) + swap-AB's 4 K-major-A ones)) issues HMMA from LDSM-read, LDGSTS-filled shared memory; the fp32 kernel is FFMA
        tc = {n: t for (a, n), t in sass.items() if a == arch and "grouped_gemm_tc_kernel" in n}
        assert len(tc) == 32, (
            f"{arch}: expected 32 grouped_gemm_tc_kernel instantiations, got {len(tc)}"
        )
        for n, text in tc.items():
            for op in ("HMMA.16816.F32", "LDSM", "LDGSTS"):
                assert op in text, f"{op} not in {n} for {arch}"
        # the block-FP8 grouped GEMM: e4m3 converted to f16 in registers (integer ops, no fp8
        # cvt), f16 HMMA, cp.async-filled stages read with 8-byte LDS (no ldmatrix)
        # (<false>: integer conversion; <true>: the e4m3 mma.sync, which ptxas lowers on sm_90a
        # to hardware e4m3 -> f16 unpacks + f16 HMMA; the sm_80 build computes it the f16 way)
        fp8 = {n: t for (a, n), t in sass.items() if a == arch and "grouped_mm_fp8_kernel" in n}
        assert len(fp8) == 2, f"grouped_mm_fp8_kernel<false/true> missing for {arch}"
        for n, text in fp8.items():
            for op in ("HMMA.16816.F32", "LDGSTS", "LDS.64"):
                assert op in text, f"{op} not in {n} for {arch}"
            assert "HMMA.16816.F32.BF16" not in text and "LDSM" not in text
            e4m3 = arch == "sm_90a" and "ILb1E" in n
            assert ("F2FP.F16.E4M3.UNPACK_B" in text) == e4m3, f"{n} for {arch}"
        simt = {n: t for (a, n), t in sass.items() if a == arch and "grouped_gemm_simt_kernel" in n}
        assert len(simt) == 4, f"{arch}: expected 4 grouped_gemm_simt_kernel instantiations"
        for n, text in simt.items():
            assert "FFMA" in text and "HMMA" not in text, n
    # the Hopper layer (sm_90a only): TMA loads, mbarrier waits and wgmma in the test GEMM
    # (64 x 128 and 64 x 256 tiles: HGMMA.64x128x16 and HGMMA.64x256x16)
    hopper = {n: t for (a, n), t in sass.items() if a == "sm_90a" and "wgmma_gemm_kernel" in n}
    assert len(hopper) == 3, "wgmma_gemm_kernel<128> / <256> / <128, e4m3> missing from sm_90a"
    for width in (128, 256):
        text = next(t for n, t in hopper.items() if f"ILi{width}ELb0E" in n)
        for op in (f"HGMMA.64x{width}x16.F32.BF16", "UTMALDG.2D", "SYNCS.PHASECHK"):
            assert op in text, f"{op} not in wgmma_gemm_kernel<{width}>"
    # the e4m3 variant (wgmma_gemm_kernel<128, true>): the FP8 warpgroup MMA
    fp8 = next(t for n, t in hopper.items() if "ILi128ELb1E" in n)
    assert "QGMMA.64x128x32.F32.E4M3.E4M3" in fp8 and "HGMMA" not in fp8
    assert not any("wgmma_gemm_kernel" in n for (a, n) in sass if a == "sm_80")
    # the Hopper grouped GEMM (bf16, fp16) x (TMA A with K-major/K-major, K-major/MN-major and
    # MN-major/MN-major operands; gathered A; gathered A + gated epilogue) x (one CTA per tile,
    # 2x2 cluster): TMA loads and stores, mbarriers and wgmma in every instantiation, cp.async for
    # the gathered A rows, multicast TMA loads, cluster barriers and remote mbarrier arrivals
    # (SYNCS...RED) in the cluster ones only
    sm90 = {n: t for (a, n), t in sass.items() if a == "sm_90a" and "grouped_gemm_sm90_kernel" in n}
    assert len(sm90) == 20, f"expected 20 grouped_gemm_sm90_kernel instantiations, got {len(sm90)}"
    for n, text in sm90.items():
        for op in ("HGMMA.64x128x16.F32", "UTMALDG", "UTMASTG", "SYNCS.PHASECHK"):
            assert op in text, f"{op} not in {n}"
        # grouped_gemm_sm90_kernel<T, kAKMajor, kBKMajor, kGather, kGated, kCluster>, mangled:
        # ...kernelI<T>Lb<kAKMajor>ELb<kBKMajor>ELb<kGather>ELb<kGated>ELb<kCluster>E...
        flags = re.search(
            r"grouped_gemm_sm90_kernelI.*?Lb([01])ELb([01])ELb([01])ELb([01])ELb([01])E", n
        ).groups()
        gathers, cluster = flags[2] == "1", flags[4] == "1"
        assert ("LDGSTS" in text) == gathers, f"LDGSTS {'missing from' if gathers else 'in'} {n}"
        for op in (
            "UTMALDG.2D.MULTICAST",
            "UCGABAR_ARV",
            "UCGABAR_WAIT",
            "SYNCS.ARRIVE.TRANS64.RED",
        ):
            assert (op in text) == cluster, f"{op} {'missing from' if cluster else 'in'} {n}"
        # the ragged-K tensor-map rewrites (a run-time branch of every instantiation): the acquire
        assert "UTMACCTL" in text, f"no tensor-map fence in {n}"
        # bounded mbarrier waits (ptx_sm90.h): the cold loop reads %globaltimer and traps
        assert "SR_GLOBALTIMER" in text and "BPT.TRAP" in text, f"unbounded waits in {n}"
    # no library kernel touches local memory (spills or runtime-indexed register arrays); the
    # PTX self-test kernels (namespace ptx_selftest, runtime-shaped fragment arrays) are exempt
    local = sorted(
        n
        for (a, n), text in sass.items()
        if ("STL" in text or "LDL" in text) and "ptx_selftest" not in n
    )
    assert not local, f"kernels using local memory: {local}"


def test_arch_choice_is_explicit_and_keeps_hopper():
    """setup.py's arch list: MOE_EXT_CUDA_ARCHS wins, a TORCH_CUDA_ARCH_LIST "9.0" becomes 9.0a
    (else the Hopper kernels would silently not build), and the source is said out loud."""
    import ast
    from pathlib import Path

    src = (Path(__file__).resolve().parent.parent / "setup.py").read_text()
    fn = next(n for n in ast.parse(src).body if getattr(n, "name", "") == "choose_archs")
    ns = {"DEFAULT_ARCHS": "8.0;9.0a"}
    exec(compile(ast.Module([fn], []), "setup.py", "exec"), ns)
    choose = ns["choose_archs"]
    assert choose({"MOE_EXT_CUDA_ARCHS": "9.0a", "TORCH_CUDA_ARCH_LIST": "8.0"}) == (
        "9.0a",
        "from MOE_EXT_CUDA_ARCHS",
    )
    archs, why = choose({"TORCH_CUDA_ARCH_LIST": "8.0 9.0+PTX"})
    assert archs == "8.0;9.0a" and "9.0 taken as 9.0a" in why
    assert choose({})[0] == "8.0;9.0a"
