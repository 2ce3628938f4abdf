"""The Hopper grouped GEMM in 2x2 thread-block clusters (csrc/kernels/grouped_gemm/sm90_cluster.cuh,
MOE_EXT_GEMM_CONFIG=sm90_cluster), run on the emulator: the four CTAs of a cluster take a 2x2
block of 128x128 tiles of one group, each loads half of its A and half of its B tile and
multicasts them to the partner that shares them.

Forced onto every shape and form the single-CTA Hopper tests cover (and a randomized sweep), it
must give the reference's result; phantom CTAs (a block at a group's edge with an odd tile
count) must store nothing; the emulator's cluster checkers (a peer's shared memory touched
before a cluster barrier, a CTA exiting while a peer may still arrive on it) run on every launch.
The counters show the multicast at work: global bytes per FLOP half the single-CTA kernel's.
"""

from __future__ import annotations

import pytest
import torch
from conftest import backends_for
from test_grouped_gemm_kernel import SM90_SHAPES, emu_mm, random_sm90_problem
from test_grouped_mm import check_gemm, make_inputs

import moe_ext

pytestmark = pytest.mark.skipif(
    "emu" not in backends_for("grouped_mm"), reason="needs the emulator backend (MOE_EXT_EMU)"
)


@pytest.fixture
def cluster(monkeypatch):
    monkeypatch.setenv("MOE_EXT_GEMM_PATH", "sm90")
    monkeypatch.setenv("MOE_EXT_GEMM_CONFIG", "sm90_cluster")


def assert_cluster_ran(s, conflict_free=True):
    """(conflict_free=False: fp32 outputs, whose TMA-store staging has 2-way bank conflicts in
    the single-CTA kernel too -- the float2 fragment writes of stage_pair)"""
    assert s["threads"] % (4 * 384) == 0 and s["blocks"] % 4 == 0, s
    assert s["cluster_barriers"] >= 2 * s["blocks"] // 4  # after init and before exit
    assert s["tma_multicast_bytes"] > 0
    assert s["bank_conflicts"] == 0 or not conflict_free, s["bank_conflicts"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", SM90_SHAPES, ids=[s[0] for s in SM90_SHAPES])
def test_cluster_kernel(shape, dtype, cluster):
    _, form, G, M, K, N, kind, a_layout, b_layout = shape
    torch.manual_seed(8)
    a, b, offs = make_inputs(form, G, M, K, N, kind, dtype, "cpu", a_layout, b_layout)
    out = emu_mm()(a, b, offs)
    assert_cluster_ran(moe_ext.emu.last_launch_stats())
    check_gemm(form, out, a, b, offs)


@pytest.mark.parametrize("seed", range(8))
def test_cluster_random_problems(seed, cluster):
    """Random forms, operand majors, group splits (empty groups, tails), dims with 16-byte
    pitches, bias and output dtype, forced onto the 2x2-cluster kernel, against the reference."""
    form, a, b, offs, bias, out_dtype = random_sm90_problem(100 + seed, max_groups=7, max_dim8=48)
    out = emu_mm()(a, b, offs, bias, out_dtype)
    assert_cluster_ran(moe_ext.emu.last_launch_stats(), conflict_free=out_dtype is None)
    check_gemm(form, out, a, b, offs, bias, out_dtype)


def _int_mat(*shape, gen):
    return torch.randint(-2, 3, shape, generator=gen).to(torch.bfloat16)


@pytest.mark.parametrize(
    "rows",
    [
        [128, 0, 300, 5, 129],  # 1, 0, 3, 1 and 2 m-tiles: phantom m partners
        [512],  # one group, an even block count
        [0, 0, 700],  # leading empty groups
    ],
)
@pytest.mark.parametrize("n", [128, 200, 384])  # 1 n-tile (phantom n partners), 2 ragged, 3
def test_phantoms_store_nothing_exact(rows, n, cluster):
    """Small integers make every product and sum exact. A phantom CTA (its tile past the
    group's rows or columns) still loads and multicasts its halves; if it stored, or a partner
    took the wrong half, a neighbouring group's rows or the poison in c's padding would show."""
    g = torch.Generator().manual_seed(sum(rows) + n)
    M, K, G = sum(rows), 192, len(rows)
    a = _int_mat(M, K, gen=g)
    b = _int_mat(G, n, K, gen=g).transpose(-2, -1)  # HF [E, N, K], read in place
    offs = torch.tensor(rows).cumsum(0).to(torch.int32)
    out = emu_mm()(a, b, offs)
    assert_cluster_ran(moe_ext.emu.last_launch_stats())
    lo = 0
    for e, r in enumerate(rows):
        assert torch.equal(out[lo : lo + r].float(), a[lo : lo + r].float() @ b[e].float()), e
        lo += r


def test_ragged_k_exact(cluster):
    """dB = xᵀ dy per group (ragged K, MN-major operands, the prologue's per-group maps), in
    clusters: exact on integers, tokens of a neighbouring group never leak in."""
    g = torch.Generator().manual_seed(3)
    x = _int_mat(333, 264, gen=g)
    dy = _int_mat(333, 136, gen=g)
    offs = torch.tensor([0, 7, 7, 64, 65, 200, 333], dtype=torch.int32)
    out = emu_mm()(x.t(), dy, offs)
    assert_cluster_ran(moe_ext.emu.last_launch_stats())
    bounds = [0, *offs.tolist()]
    for e in range(len(offs)):
        lo, hi = bounds[e], bounds[e + 1]
        assert torch.equal(out[e].float(), x[lo:hi].float().t() @ dy[lo:hi].float()), e


def _stats(config, a, b, offs, monkeypatch):
    monkeypatch.setenv("MOE_EXT_GEMM_PATH", "sm90")
    monkeypatch.setenv("MOE_EXT_GEMM_CONFIG", config)
    out = emu_mm()(a, b, offs)
    return out, moe_ext.emu.last_launch_stats()


def test_multicast_halves_global_bytes_per_flop(monkeypatch):
    """2 groups x 512 rows, N = 512, K = 256: whole 2x2 blocks, so every CTA loads exactly half of
    its A and B tiles. Global bytes per FLOP are (64 + 64) / (128 x 128) = 0.0078 against the
    single-CTA kernel's (128 + 128) / (128 x 128) = 0.0156; the multicast lands each box in two
    CTAs; the tensor-core work and the result are the same."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(1024, 256, generator=g).bfloat16()
    b = torch.randn(2, 512, 256, generator=g).bfloat16().transpose(-2, -1)
    offs = torch.tensor([512, 1024], dtype=torch.int32)
    one, s1 = _stats("sm90", a, b, offs, monkeypatch)
    four, s4 = _stats("sm90_cluster", a, b, offs, monkeypatch)
    flops = 2 * 1024 * 512 * 256
    assert s1["tma_multicast_bytes"] == 0 and s4["tma_load_bytes"] == 0
    # (besides the operands both read offs in the schedulers and epilogues: ~0.0003 B/FLOP at
    # this K; the operand bytes halve exactly)
    assert s1["global_bytes_read"] / flops == pytest.approx(1 / 64, rel=0.03)
    assert s4["global_bytes_read"] / flops == pytest.approx(1 / 128, rel=0.05)
    saved = (s1["global_bytes_read"] - s4["global_bytes_read"]) / flops
    assert saved == pytest.approx(1 / 128, rel=0.01)
    # every CTA still receives whole stages: half from its own loads, half from a partner's
    assert s4["tma_multicast_bytes"] == s1["tma_load_bytes"]
    assert s4["wgmma"] == s1["wgmma"] and s4["tc_turn_requests"] == 0
    assert torch.equal(one, four)  # the same MMAs in the same order: the same bits


def test_gathered_first_gemm_multicasts_b_only(monkeypatch):
    """moe_mlp's first GEMM gathers A with cp.async (which cannot write a peer's shared memory):
    each CTA loads its whole A, B is multicast -- (128 + 64) / (128 x 128) bytes per FLOP."""
    from test_moe_mlp import check, make_case

    monkeypatch.setenv("MOE_EXT_GEMM_PATH", "sm90")
    monkeypatch.setenv("MOE_EXT_GEMM_CONFIG", "sm90_cluster")
    args = make_case(256, 128, 256, 2, 2, torch.bfloat16, "cpu")  # 2 experts x 256 rows
    with moe_ext.emu.launch_log() as log:
        y = torch.ops.moe_ext_emu.moe_mlp(*args, "swiglu")
    check(y, args, "swiglu")
    gemms = [s for s in log if "grouped_gemm_sm90" in s["kernel"]]
    assert len(gemms) == 2, [s["kernel"] for s in log]
    for s in gemms:
        assert_cluster_ran(s)
    first, second = gemms
    assert first["tma_load_bytes"] == 0 and second["tma_load_bytes"] == 0
    # the first GEMM's stages: A gathered by each CTA (cp.async), B half own + half partner's
    rows, hidden, inter = 512, 128, 256
    tiles, k_steps = (rows // 128) * (inter // 64), hidden // 64  # gated: 64 outputs per tile
    assert first["tma_multicast_bytes"] == tiles * k_steps * 128 * 64 * 2


@pytest.mark.parametrize(
    "rows_per_group,groups,expect_cluster",
    [(512, 2, True), (511, 2, False), (2048, 1, True), (256, 4, False)],
)
def test_auto_picks_the_cluster_at_four_m_tiles_per_group(
    rows_per_group, groups, expect_cluster, monkeypatch
):
    """The auto choice (grouped_gemm.h, sm90_cluster_pays): the cluster from a mean of 512 rows
    per group (4 m-tiles: at most one phantom pair in 5 blocks), one CTA per tile below."""
    for v in ("MOE_EXT_GEMM_PATH", "MOE_EXT_GEMM_CONFIG"):
        monkeypatch.delenv(v, raising=False)
    g = torch.Generator().manual_seed(1)
    M = rows_per_group * groups
    a = torch.randn(M, 64, generator=g).bfloat16()
    b = torch.randn(groups, 256, 64, generator=g).bfloat16().transpose(-2, -1)
    offs = (torch.arange(1, groups + 1) * rows_per_group).to(torch.int32)
    out = emu_mm()(a, b, offs)
    s = moe_ext.emu.last_launch_stats()
    assert s["threads"] % 384 == 0  # the Hopper kernel
    assert (s["tma_multicast_bytes"] > 0) == expect_cluster, s
    check_gemm("2x3", out, a, b, offs)


def test_tuning_table_can_pick_the_cluster(tmp_path, monkeypatch):
    """A tune_grouped_gemm.py entry {"path": "sm90", "config": "sm90_cluster"} runs the 2x2
    clusters where the heuristic would not (here 256 rows per group); clearing restores it."""
    import json
    import sys
    from pathlib import Path

    for v in ("MOE_EXT_GEMM_PATH", "MOE_EXT_GEMM_CONFIG", "MOE_EXT_GEMM_STAGES"):
        monkeypatch.delenv(v, raising=False)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from tune_grouped_gemm import tuning_key

    a, b, offs = make_inputs("2x3", 2, 512, 64, 256, "even", torch.bfloat16, "cpu", "contig", "t")
    entry = [{"path": "sm90", "config": "sm90_cluster", "stages": 4, "us": 1.0}]
    path = tmp_path / "tuning.json"
    path.write_text(json.dumps({"table": {tuning_key(E=2, K=64, N=256, M=512): entry}}))
    try:
        emu_mm()(a, b, offs)
        assert moe_ext.emu.last_launch_stats()["tma_multicast_bytes"] == 0  # heuristic: one CTA
        assert moe_ext.load_gemm_tuning(path) == 1
        out = emu_mm()(a, b, offs)
        assert_cluster_ran(moe_ext.emu.last_launch_stats())
        check_gemm("2x3", out, a, b, offs)
    finally:
        moe_ext.clear_gemm_tuning()
    emu_mm()(a, b, offs)
    assert moe_ext.emu.last_launch_stats()["tma_multicast_bytes"] == 0
