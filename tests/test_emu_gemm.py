"""End-to-end tensor-core GEMM on the emulator: the test tile GEMM
(csrc/kernels/testing/tile_gemm.cuh: cp.async double buffering, XOR-swizzled shared memory,
ldmatrix, mma.sync m16n8k16) against torch, with its memory counters checked exactly."""

import pytest
import torch

import moe_ext

pytestmark = pytest.mark.skipif(
    not moe_ext.build_info()["test_kernels"],
    reason="moe_ext built without the test-only kernels (MOE_EXT_TEST_KERNELS=1)",
)


def tile_gemm(a, b):
    return torch.ops.moe_ext_emu_test.tile_gemm(a, b)


@pytest.mark.parametrize("M,N,K", [(64, 64, 32), (128, 64, 96), (64, 192, 64), (256, 256, 256)])
def test_tile_gemm_matches_torch(M, N, K):
    torch.manual_seed(M + N + K)
    a = torch.randn(M, K, dtype=torch.bfloat16)
    b = torch.randn(N, K, dtype=torch.bfloat16)
    c = tile_gemm(a, b)
    ref = a.double() @ b.double().t()  # bf16 products are exact; only the fp32 sum rounds
    torch.testing.assert_close(c.double(), ref, atol=1e-4 * K**0.5, rtol=1e-5)


def test_tile_gemm_counters():
    M, N, K = 128, 128, 64
    a = torch.randn(M, K, dtype=torch.bfloat16)
    b = torch.randn(N, K, dtype=torch.bfloat16)
    tile_gemm(a, b)
    s = moe_ext.emu.last_launch_stats()
    assert s["mma"] == (M // 16) * (N // 8) * (K // 16)
    assert s["blocks"] == (M // 64) * (N // 64)
    # every block reads its 64-row strips of A and B once (2 bytes each) and writes its tile once
    assert s["global_bytes_read"] == ((M * K) * (N // 64) + (N * K) * (M // 64)) * 2
    assert s["global_bytes_written"] == M * N * 4
    # the XOR swizzle makes every ldmatrix phase hit 8 distinct 16-byte bank groups
    assert s["shared_requests"] > 0 and s["bank_conflicts"] == 0
    # fully coalesced: every 32-byte sector touched is used whole (cp.async rows of 64 bytes,
    # float2 epilogue stores of 4 lanes per 32-byte row segment)
    assert s["global_sectors"] * 32 == s["global_bytes_read"] + s["global_bytes_written"]
    assert s["barriers"] == (M // 64) * (N // 64) * 2 * (K // 32)


def test_tile_gemm_rejects_unsupported_shapes():
    a = torch.randn(65, 32, dtype=torch.bfloat16)
    b = torch.randn(64, 32, dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="tile_gemm"):
        tile_gemm(a, b)
