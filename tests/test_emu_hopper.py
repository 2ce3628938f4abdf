"""The emulator's sm_90 layer (csrc/common/ptx_sm90.h): TMA tile loads with the 128-byte swizzle,
mbarrier transaction barriers, wgmma.m64n128k16 from shared-memory descriptors -- driven by the
Hopper test GEMM (csrc/kernels/testing/wgmma_gemm.cuh: a producer warp, a consumer warpgroup,
full/empty mbarriers per stage) against torch, and with planted synchronisation bugs that the
emulator must report rather than compute through.

The same kernel is compiled for sm_90a in the CUDA build; tests/test_build.py checks its SASS
(HGMMA, UTMALDG, mbarrier SYNCS instructions, no local memory).
"""

from __future__ import annotations

import pytest
import torch
from conftest import _has_op

import moe_ext

pytestmark = pytest.mark.skipif(
    not _has_op("moe_ext_emu_test", "wgmma_gemm"), reason="needs the emulator backend"
)


def wgmma_gemm(a, b, stages=2, fault=0, tma_store=False, block_n=128, cluster_m=1):
    return torch.ops.moe_ext_emu_test.wgmma_gemm(a, b, stages, fault, tma_store, block_n, cluster_m)


@pytest.mark.parametrize("stages", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(64, 128, 64), (128, 256, 256), (64, 128, 512)])
def test_matches_torch(shape, stages):
    """Every pipeline depth, with more K steps than stages (each stage reused, parities flip)."""
    M, N, K = shape
    g = torch.Generator().manual_seed(M + N + K + stages)
    a = torch.randn(M, K, generator=g).to(torch.bfloat16)
    b = torch.randn(N, K, generator=g).to(torch.bfloat16)
    c = wgmma_gemm(a, b, stages)
    ref = a.double() @ b.double().t()
    # fp32 accumulation of exact bf16 products: error ~ K * 2^-24 * |terms|
    torch.testing.assert_close(c.double(), ref, rtol=0, atol=K * 2**-20 * 4)


@pytest.mark.parametrize(
    "stages, tma_store, cluster_m", [(1, False, 1), (2, True, 1), (3, False, 2)]
)
@pytest.mark.parametrize("shape", [(128, 128, 128), (128, 256, 512)])
def test_m64n128k32_e4m3_matches_torch(shape, stages, tma_store, cluster_m):
    """wgmma.m64n128k32.e4m3 (the FP8 Hopper instruction): e4m3 operands in the same 128-byte
    swizzled stages (128 elements of K per row, 4 instructions per stage at the same 32-byte
    descriptor advance), exact on small integers; the emulator decodes 1-byte K-major
    descriptors (core-matrix rows of 16 elements)."""
    M, N, K = shape
    g = torch.Generator().manual_seed(M + N + K)
    a = torch.randint(-6, 7, (M, K), generator=g).to(torch.float8_e4m3fn)
    b = torch.randint(-6, 7, (N, K), generator=g).to(torch.float8_e4m3fn)
    c = wgmma_gemm(a, b, stages, tma_store=tma_store, cluster_m=cluster_m)
    assert torch.equal(c, a.float() @ b.float().t())
    s = moe_ext.emu.last_launch_stats()
    assert s["wgmma"] == (M // 64) * (N // 128) * (K // 32)
    assert s["wgmma_shared_bytes"] == s["wgmma"] * (64 + 128) * 32
    with pytest.raises(RuntimeError, match="e4m3 test GEMM takes block_n 128"):
        wgmma_gemm(a, b, block_n=256)


@pytest.mark.parametrize("tma_store", [False, True])
@pytest.mark.parametrize("shape", [(64, 256, 64), (128, 512, 192)])
def test_m64n256k16_matches_torch(shape, tma_store):
    """wgmma.m64n256k16 (the 128x256 tile's instruction): 64 x 256 CTA tiles, d[128] per thread,
    exact on small integers (every product and sum representable), so a misplaced element of
    the 256-column fragment layout cannot hide in a tolerance."""
    M, N, K = shape
    g = torch.Generator().manual_seed(M + N + K)
    a = torch.randint(-4, 5, (M, K), generator=g).to(torch.bfloat16)
    b = torch.randint(-4, 5, (N, K), generator=g).to(torch.bfloat16)
    assert torch.equal(
        wgmma_gemm(a, b, 2, tma_store=tma_store, block_n=256), a.float() @ b.float().t()
    )
    s = moe_ext.emu.last_launch_stats()
    assert s["wgmma"] == (M // 64) * (N // 256) * (K // 16)
    assert s["wgmma_shared_bytes"] == s["wgmma"] * (64 + 256) * 16 * 2


@pytest.mark.parametrize("block_n", [128, 256])
@pytest.mark.parametrize("tma_store", [False, True])
def test_two_cta_cluster_multicasts_b(block_n, tma_store):
    """CTA pairs along M share the B tile: each loads half of it multicast into both (2-CTA
    cluster, remote arrivals on the peer's empty barriers). Exact on integers; the global reads
    of B halve (global bytes per FLOP (64 + BN/2) / (64 BN) instead of (64 + BN) / (64 BN))."""
    M, N, K = 256, 2 * block_n, 192
    g = torch.Generator().manual_seed(block_n)
    a = torch.randint(-4, 5, (M, K), generator=g).to(torch.bfloat16)
    b = torch.randint(-4, 5, (N, K), generator=g).to(torch.bfloat16)
    ref = a.float() @ b.float().t()
    stats = {}
    for cluster_m in (1, 2):
        c = wgmma_gemm(a, b, 3, tma_store=tma_store, block_n=block_n, cluster_m=cluster_m)
        assert torch.equal(c, ref), cluster_m
        stats[cluster_m] = moe_ext.emu.last_launch_stats()
    ctas, k_steps = (M // 64) * (N // block_n), K // 64
    a_bytes, b_bytes = 64 * 64 * 2, block_n * 64 * 2  # per CTA and k step
    assert stats[1]["global_bytes_read"] == ctas * k_steps * (a_bytes + b_bytes)
    assert stats[2]["global_bytes_read"] == ctas * k_steps * (a_bytes + b_bytes // 2)
    assert stats[2]["tma_multicast_bytes"] == ctas * k_steps * b_bytes  # both halves, both CTAs
    assert stats[1]["tma_multicast_bytes"] == 0
    assert stats[2]["cluster_barriers"] == 2 * (ctas // 2)  # start and exit, per pair


def test_cluster_m_is_checked():
    a = torch.zeros(64, 64, dtype=torch.bfloat16)
    b = torch.zeros(128, 64, dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="multiple of 128 with cluster_m 2"):
        wgmma_gemm(a, b, cluster_m=2)
    with pytest.raises(RuntimeError, match="cluster_m must be 1 or 2"):
        wgmma_gemm(a, b, cluster_m=4)


def test_block_n_is_checked():
    a = torch.zeros(64, 64, dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="block_n must be 128 or 256"):
        wgmma_gemm(a, torch.zeros(128, 64, dtype=torch.bfloat16), block_n=64)


def test_layout_is_exact_on_integers():
    """Small integers make every product and sum exact: any mis-placed element of the TMA
    swizzle, the wgmma descriptors or the D fragment shows up as a wrong value."""
    g = torch.Generator().manual_seed(0)
    a = torch.randint(-3, 4, (128, 128), generator=g).to(torch.bfloat16)
    b = torch.randint(-3, 4, (256, 128), generator=g).to(torch.bfloat16)
    assert torch.equal(wgmma_gemm(a, b, 2), (a.float() @ b.float().t()))


def test_consumer_skipping_the_full_barrier_is_caught():
    a = torch.randn(64, 64).to(torch.bfloat16)
    b = torch.randn(128, 64).to(torch.bfloat16)
    with pytest.raises(RuntimeError, match="wgmma operand reads uninitialized shared memory"):
        wgmma_gemm(a, b, 2, fault=1)


def test_producer_that_never_loads_deadlocks_with_a_diagnosis():
    a = torch.randn(64, 64).to(torch.bfloat16)
    b = torch.randn(128, 64).to(torch.bfloat16)
    # the report names the wait's site (kernel, role, barrier), as a GPU's bounded wait does
    with pytest.raises(
        RuntimeError,
        match=r"deadlock.*waits on the mbarrier wgmma_gemm_kernel "
        r"consumer, mbarrier full\[stage\] at shared offset .*1 arrivals",
    ):
        wgmma_gemm(a, b, 2, fault=2)


def test_bad_shapes_are_rejected():
    a = torch.randn(64, 48).to(torch.bfloat16)
    b = torch.randn(128, 48).to(torch.bfloat16)
    with pytest.raises(RuntimeError, match="rejected its arguments"):
        wgmma_gemm(a, b)


def test_tma_store_epilogue_is_exact():
    """The swizzled staging + TMA store epilogue (two 64-column halves through one buffer per
    warp) writes exactly what the fragments hold."""
    g = torch.Generator().manual_seed(1)
    a = torch.randint(-3, 4, (128, 128), generator=g).to(torch.bfloat16)
    b = torch.randint(-3, 4, (256, 128), generator=g).to(torch.bfloat16)
    assert torch.equal(wgmma_gemm(a, b, 2, tma_store=True), a.float() @ b.float().t())


def test_staging_reused_before_the_store_read_it_is_caught():
    """Hardware may read a TMA store's shared source at any moment until the wait_group.read that
    retires it: rewriting the staging before that wait (here: the second half's values) is
    reported, not computed through."""
    a = torch.randn(64, 64).to(torch.bfloat16)
    b = torch.randn(128, 64).to(torch.bfloat16)
    with pytest.raises(RuntimeError, match="shared source changed while the store was in flight"):
        wgmma_gemm(a, b, 2, fault=3, tma_store=True)


def test_store_issued_before_the_warp_staged_everything_is_caught():
    """Without the __syncwarp after the staging writes, lane 0 issues the store while the other
    lanes' values are not yet written."""
    a = torch.randn(64, 64).to(torch.bfloat16)
    b = torch.randn(128, 64).to(torch.bfloat16)
    with pytest.raises(RuntimeError, match="uninitialized shared memory|source changed"):
        wgmma_gemm(a, b, 2, fault=5, tma_store=True)


def test_exit_with_stores_never_waited_for_is_caught():
    a = torch.randn(64, 64).to(torch.bfloat16)
    b = torch.randn(128, 64).to(torch.bfloat16)
    with pytest.raises(RuntimeError, match="TMA stores never waited for"):
        wgmma_gemm(a, b, 2, fault=4, tma_store=True)
