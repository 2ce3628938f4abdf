"""The emulator's roofline proxies of the grouped GEMM (benchmarks/emu_gemm_proxies.py): the
tensor-core and TMA counters equal what the tile shape implies, and the Hopper kernel's
ping-pong consumers issue no memory instruction while holding the MMA turn (no epilogue
instruction between two of the CTA's MMA groups), bias and row loads included.
"""

from __future__ import annotations

import pytest
import torch
from conftest import _has_op

import moe_ext

pytestmark = pytest.mark.skipif(
    not _has_op("moe_ext_emu", "grouped_mm"), reason="needs the emulator backend"
)


def _run(monkeypatch, path, m, groups, n, k, bias=False):
    monkeypatch.setenv("MOE_EXT_GEMM_PATH", path)
    g = torch.Generator().manual_seed(m + n + k)
    a = torch.randn(m * groups, k, generator=g).bfloat16()
    b = torch.randn(groups, n, k, generator=g).bfloat16().transpose(-2, -1)
    offs = torch.arange(1, groups + 1, dtype=torch.int32) * m
    bias_t = torch.randn(groups, n, generator=g).bfloat16() if bias else None
    out = torch.ops.moe_ext_emu.grouped_mm(a, b, offs, bias_t)
    ref = torch.cat([a[i * m : (i + 1) * m].float() @ b[i].float() for i in range(groups)])
    if bias:
        ref += bias_t.float().repeat_interleave(m, dim=0)
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-1)
    return moe_ext.emu.last_launch_stats()


@pytest.mark.parametrize("bias", [False, True])
def test_hopper_counters_match_the_tile_shape(monkeypatch, bias):
    m, groups, n, k = 128, 2, 256, 128  # 4 tiles of 128 x 128, 2 k steps of 64 each
    s = _run(monkeypatch, "sm90", m, groups, n, k, bias)
    tiles, k_steps = groups * (n // 128), k // 64
    # per tile and 64-wide k step: 2 row halves x 4 k16 steps of wgmma.m64n128k16
    assert s["wgmma"] == tiles * k_steps * 8
    assert s["wgmma_shared_bytes"] == s["wgmma"] * (64 * 16 + 128 * 16) * 2
    # each k step loads the tile's A (128 x 64) and B (128 x 64) boxes once, no halo
    assert s["tma_load_bytes"] == tiles * k_steps * 2 * 128 * 64 * 2
    assert s["tc_turn_requests"] == 0  # the epilogue runs after the handoff
    assert s["epilogue_requests"] > 0  # ... and is counted there
    assert s["mma"] == 0


def test_ampere_kernel_counts_mma_sync_not_wgmma(monkeypatch):
    s = _run(monkeypatch, "sm80", 128, 2, 256, 128)
    # m16n8k16: 128 x 256 x 128 per group / (16 x 8 x 16)
    assert s["mma"] == 2 * (128 // 16) * (256 // 8) * (128 // 16)
    assert s["wgmma"] == 0 and s["tma_load_bytes"] == 0
    assert s["tc_turn_requests"] == 0 and s["epilogue_requests"] == 0  # no turns marked
    assert s["shared_bytes_read"] > 0
