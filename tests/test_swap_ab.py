"""Swap-AB, the decode tile of the Ampere grouped GEMM (tensor_core.cuh, kGemmConfigSwapAb): the
weights' 128 columns on the MMA's M side, 16 tokens on its N side, run on the SIMT emulator.

Forced with MOE_EXT_GEMM_CONFIG=swap_ab it must give what the reference gives for every edge the
normal tiles handle (1-16 rows per group, empty groups, partial n tiles, k tails, unaligned
element-wise loads, both B majors, bf16/fp16, bias, the fused MLP's gather, gated activation and
row scale) with no bank conflicts; exact on small integers (the transposed accumulator mapping);
the emulator's counters show half the MMAs of small_m for the same output; the heuristic picks it
at <= 16 rows per group, ahead of the Hopper kernel, and small_m / large above.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import backends_for
from test_grouped_mm import check_gemm, make_inputs, make_offs
from test_moe_mlp import check, make_case

import moe_ext

pytestmark = pytest.mark.skipif(
    "emu" not in backends_for("grouped_mm"), reason="needs the emulator backend (MOE_EXT_EMU)"
)

BM, BN, BK = 16, 128, 64  # TensorCoreSwapAb
THREADS = 128


def emu_mm():
    return torch.ops.moe_ext_emu.grouped_mm


@pytest.fixture
def swap_ab(monkeypatch):
    monkeypatch.setenv("MOE_EXT_GEMM_CONFIG", "swap_ab")


# (id, form, G, M, K, N, group kind, a layout, b layout)
SHAPES = [
    ("decode_hf_weights", "2x3", 8, 40, 64, 256, "uneven", "contig", "t"),  # b K-major
    ("decode_b_n_major", "2x3", 8, 40, 64, 256, "uneven", "contig", "contig"),
    ("rows_16_exact", "2x3", 4, 64, 128, 128, "even", "contig", "t"),  # full 16-row tiles
    ("rows_17_two_tiles", "2x3", 2, 34, 64, 128, "even", "contig", "t"),  # 16 + 1 rows
    ("n_tail_k_tail", "2x3", 5, 30, 72, 136, "uneven", "contig", "t"),  # n tile of 8, k tail 8
    ("k_shorter_than_bk", "2x3", 3, 12, 24, 64, "uneven", "contig", "contig"),
    ("odd_k_unaligned", "2x3", 3, 20, 37, 24, "uneven", "contig", "t"),  # element-wise loads
    ("many_empty_experts", "2x3", 64, 48, 64, 64, "skewed", "contig", "t"),
    ("rows_past_offs", "2x3", 6, 40, 64, 128, "empty_tail", "contig", "t"),
    ("ragged_n", "3x2", 3, 12, 48, 200, "uneven", "contig", "contig"),
    ("batched", "3x3", 3, 9, 80, 50, "even", "contig", "t"),
    ("ragged_k_m_major_a_runs_small_m", "2x2", 4, 12, 200, 40, "uneven", "t", "contig"),
]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("shape", SHAPES, ids=[s[0] for s in SHAPES])
def test_forced_swap_ab_matches_reference(swap_ab, shape, dtype):
    _, form, G, M, K, N, kind, a_lay, b_lay = shape
    torch.manual_seed(0)
    a, b, offs = make_inputs(form, G, M, K, N, kind, dtype, "cpu", a_lay, b_lay)
    out = emu_mm()(a, b, offs)
    s = moe_ext.emu.last_launch_stats()
    assert s["bank_conflicts"] == 0 and s["threads"] == s["blocks"] * THREADS
    check_gemm(form, out, a, b, offs)


@pytest.mark.parametrize("b_lay", ["t", "contig"], ids=["b_k_major", "b_n_major"])
def test_exact_on_integers(swap_ab, b_lay):
    """Small integers make every product and sum exact in fp32: any mix-up of the transposed
    accumulator mapping (row m / column n of each fragment register) shows as a wrong value."""
    g = torch.Generator().manual_seed(1)
    sizes = [3, 16, 0, 1, 9, 16]
    M, K, N = sum(sizes), 96, 192
    a = torch.randint(-3, 4, (M, K), generator=g).to(torch.bfloat16)
    b = torch.randint(-3, 4, (len(sizes), K, N), generator=g).to(torch.bfloat16)
    if b_lay == "t":
        b = b.transpose(-2, -1).contiguous().transpose(-2, -1)
    offs = make_offs(sizes, "cpu")
    out = emu_mm()(a, b, offs)
    expect = torch.cat(
        [a[e - n : e].float() @ b[i].float() for i, (n, e) in enumerate(zip(sizes, offs.tolist()))]
    )
    assert torch.equal(out.float(), expect)


def test_bias_and_out_dtype(swap_ab):
    torch.manual_seed(2)
    a, b, offs = make_inputs("2x3", 6, 50, 64, 136, "uneven", torch.bfloat16, "cpu", "contig", "t")
    bias = torch.randn(6, 136).to(torch.bfloat16)
    check_gemm("2x3", emu_mm()(a, b, offs, bias), a, b, offs, bias)
    out32 = emu_mm()(a, b, offs, None, torch.float32)
    check_gemm("2x3", out32, a, b, offs, out_dtype=torch.float32)


def tiles(extent, size):
    return math.ceil(extent / size)


def test_counters_half_the_mmas_of_small_m(monkeypatch):
    """Same decode problem (8 experts x 1-16 rows, K = 128, N = 256): swap-AB issues exactly the
    MMAs its 16 x 128 tiles need, half of small_m's (32-row MMA tiles), reads every weight byte
    once per 16-row tile, and has no bank conflicts (transposed staging stores included)."""
    torch.manual_seed(3)
    sizes = [5, 16, 1, 0, 8, 3, 12, 2]
    M, K, N = sum(sizes), 128, 256
    a = torch.randn(M, K).to(torch.bfloat16)
    b = torch.randn(len(sizes), N, K).to(torch.bfloat16).transpose(-2, -1)
    offs = make_offs(sizes, "cpu")
    stats = {}
    for config in ("swap_ab", "small_m"):
        monkeypatch.setenv("MOE_EXT_GEMM_CONFIG", config)
        out = emu_mm()(a, b, offs)
        stats[config] = moe_ext.emu.last_launch_stats()
        check_gemm("2x3", out, a, b, offs)
    s = stats["swap_ab"]
    m_tiles, n_tiles = sum(tiles(r, BM) for r in sizes), tiles(N, BN)
    assert s["mma"] == m_tiles * n_tiles * (BN // 16) * (BM // 8) * (K // 16)
    assert stats["small_m"]["mma"] == 2 * s["mma"]
    assert s["bank_conflicts"] == 0
    # every A row once per n tile, every weight tile once per 16-row tile; the rest is offs
    # (<= 2 entries per thread per tile lookup, as test_grouped_gemm_kernel.py bounds it)
    operand_bytes = M * K * 2 * n_tiles + m_tiles * n_tiles * BN * K * 2
    offs_bound = (m_tiles * n_tiles * 2 + s["blocks"]) * THREADS * 8
    assert operand_bytes <= s["global_bytes_read"] <= operand_bytes + offs_bound, s
    assert s["global_bytes_written"] == M * N * 2


@pytest.mark.parametrize(
    "rows,expect",
    [(1, "swap_ab"), (16, "swap_ab"), (17, "small_m"), (48, "small_m")],
)
def test_heuristic_picks_swap_ab_at_decode_sizes(rows, expect, monkeypatch):
    """MOE_EXT_GEMM_CONFIG unset: <= 16 rows per expert runs swap-AB, ahead of the Hopper kernel
    the emulator's sm_90 would otherwise take (384-thread CTAs); above, the sm80 small_m tile
    (forced sm80 path so the Hopper kernel does not take it). Identified by the MMA count and
    the bytes read, which differ between the tiles (and bit-identical output to the forced one)."""
    torch.manual_seed(4)
    G, K, N = 4, 64, 128
    a = torch.randn(G * rows, K).to(torch.bfloat16)
    b = torch.randn(G, N, K).to(torch.bfloat16).transpose(-2, -1)
    offs = make_offs([rows] * G, "cpu")
    if expect != "swap_ab":
        monkeypatch.setenv("MOE_EXT_GEMM_PATH", "sm80")
    auto = emu_mm()(a, b, offs)
    s_auto = moe_ext.emu.last_launch_stats()
    assert s_auto["threads"] == s_auto["blocks"] * THREADS  # not the Hopper kernel
    monkeypatch.setenv("MOE_EXT_GEMM_CONFIG", expect)
    forced = emu_mm()(a, b, offs)
    s_forced = moe_ext.emu.last_launch_stats()
    for counter in ("mma", "global_bytes_read"):
        assert s_forced[counter] == s_auto[counter], counter
    other = "small_m" if expect == "swap_ab" else "swap_ab"
    monkeypatch.setenv("MOE_EXT_GEMM_CONFIG", other)
    emu_mm()(a, b, offs)
    s_other = moe_ext.emu.last_launch_stats()
    assert (s_other["mma"], s_other["global_bytes_read"]) != (
        s_auto["mma"],
        s_auto["global_bytes_read"],
    )
    assert torch.equal(auto, forced)


def test_forced_sm90_path_still_takes_decode_sizes(monkeypatch):
    """MOE_EXT_GEMM_PATH=sm90 overrides the heuristic's swap-AB choice (the Hopper kernel runs)."""
    monkeypatch.setenv("MOE_EXT_GEMM_PATH", "sm90")
    torch.manual_seed(5)
    a, b, offs = make_inputs("2x3", 4, 20, 64, 128, "uneven", torch.bfloat16, "cpu", "contig", "t")
    out = emu_mm()(a, b, offs)
    assert moe_ext.emu.last_launch_stats()["threads"] % 384 == 0
    check_gemm("2x3", out, a, b, offs)


def test_swap_ab_same_bits_as_small_m_and_large(monkeypatch):
    """The tile choice does not enter a row's accumulation order: swap-AB, small_m and large give
    identical bits (the batch invariance of test_batch_invariance.py covers the auto switch)."""
    monkeypatch.setenv("MOE_EXT_GEMM_PATH", "sm80")
    torch.manual_seed(6)
    a, b, offs = make_inputs("2x3", 5, 60, 160, 136, "uneven", torch.bfloat16, "cpu", "contig", "t")
    outs = []
    for config in ("swap_ab", "small_m", "large"):
        monkeypatch.setenv("MOE_EXT_GEMM_CONFIG", config)
        outs.append(emu_mm()(a, b, offs))
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


# (id, T, H, I, E, k, activation, extra make_case arguments): decode-sized fused MLPs
MLP_CASES = [
    ("swiglu_decode", 8, 64, 48, 8, 2, "swiglu", {}),
    ("geglu_w1_n_major", 6, 48, 40, 4, 2, "geglu", {"w1_layout": "t"}),  # N-major gated B
    ("gelu_not_gated", 8, 64, 48, 8, 2, "gelu", {}),
    ("many_experts", 16, 72, 16, 64, 4, "swiglu", {}),  # K = 72: k tail 8
    ("sentinels", 12, 32, 24, 4, 2, "swiglu", {"sentinels": True}),
    ("odd_h_unaligned", 7, 37, 20, 5, 2, "swiglu", {}),
]


@pytest.mark.parametrize("case", MLP_CASES, ids=[c[0] for c in MLP_CASES])
def test_fused_mlp_decode(swap_ab, case):
    """moe_mlp on swap-AB tiles: x gathered into the token tile, the gated activation and the
    routing-weight row scale in the unchanged epilogue."""
    _, T, H, I, E, k, activation, extra = case
    args = make_case(T, H, I, E, k, torch.bfloat16, "cpu", activation, **extra)
    check(torch.ops.moe_ext_emu.moe_mlp(*args, activation), args, activation)
