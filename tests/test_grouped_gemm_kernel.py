"""The grouped GEMM kernels themselves (csrc/kernels/grouped_gemm/), run on the SIMT emulator.

test_grouped_mm.py checks the op's semantics on every backend with small shapes; this file
drives the CUDA kernel source through what only it has: both tile configs and every pipeline
depth (MOE_EXT_GEMM_CONFIG / MOE_EXT_GEMM_STAGES), shapes that span many tiles per persistent
CTA (the emulator models 2 SMs x 2 CTAs, so 4 CTAs walk every tile list), tile-multiple and
ragged edges, 128 skewed experts, the element-wise fallback for unaligned operands, and the
emulator's counters: zero shared-memory bank conflicts, exact mma counts, global traffic equal
to the tiling's. The emulator's bounds, race and uninitialised-read checkers run on every
launch (a violation raises), so each test also asserts those are clean.
"""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

import pytest
import torch
from conftest import backends_for
from test_grouped_mm import check_gemm, group_sizes, make_inputs, make_offs

import moe_ext

pytestmark = pytest.mark.skipif(
    "emu" not in backends_for("grouped_mm"), reason="needs the emulator backend (MOE_EXT_EMU)"
)

CONFIGS = {"large": (128, 128), "small_m": (32, 128)}  # (BM, BN) of tensor_core.cuh
BK = 32


def emu_mm():
    return torch.ops.moe_ext_emu.grouped_mm


@pytest.fixture
def config(request, monkeypatch):
    name, stages = request.param
    monkeypatch.setenv("MOE_EXT_GEMM_CONFIG", name)
    if stages:
        monkeypatch.setenv("MOE_EXT_GEMM_STAGES", str(stages))
    return name


CONFIG_PARAMS = [("large", 0), ("small_m", 0), ("large", 2), ("small_m", 3), ("large", 5)]
CONFIG_IDS = ["large", "small_m", "large-2stages", "small_m-3stages", "large-5stages"]


# (id, form, G, M, K, N, group kind): shapes chosen for the kernel's edges
KERNEL_SHAPES = [
    ("tile_multiple", "2x3", 2, 256, 64, 256, "even"),
    ("ragged_edges", "2x3", 3, 200, 72, 136, "uneven"),  # partial m/n tiles, k tail of 8
    ("k_tail_chunk", "2x3", 2, 64, 40, 64, "even"),  # k tail of 8 in the last slice
    ("odd_k_unaligned", "2x3", 3, 50, 37, 24, "uneven"),  # 74-byte rows: element-wise loads
    ("g1_all_rows", "2x3", 1, 160, 48, 96, "even"),
    ("one_group_of_4", "2x3", 4, 96, 32, 64, "one"),
    ("ragged_n", "3x2", 3, 40, 48, 200, "uneven"),
    ("ragged_k_with_empty", "2x2", 4, 48, 200, 40, "empty"),  # K = 0 groups -> zeros
    ("batched", "3x3", 3, 70, 80, 50, "even"),
]


@pytest.mark.parametrize("config", CONFIG_PARAMS, ids=CONFIG_IDS, indirect=True)
@pytest.mark.parametrize("shape", KERNEL_SHAPES, ids=[s[0] for s in KERNEL_SHAPES])
def test_configs_and_depths(config, shape):
    _, form, G, M, K, N, kind = shape
    torch.manual_seed(0)
    a, b, offs = make_inputs(form, G, M, K, N, kind, torch.bfloat16, "cpu")
    out = emu_mm()(a, b, offs)
    assert moe_ext.emu.last_launch_stats()["bank_conflicts"] == 0
    check_gemm(form, out, a, b, offs)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("layouts", ["aK_bN", "aK_bK", "aM_bN", "aM_bK"])
def test_operand_majors(dtype, layouts):
    """All four operand layouts of each kernel (4 tensor-core + 4 SIMT instantiations)."""
    torch.manual_seed(1)
    a_lay = "t" if layouts.startswith("aM") else "contig"
    b_lay = "t" if layouts.endswith("bK") else "contig"
    a, b, offs = make_inputs("2x3", 3, 150, 64, 96, "uneven", dtype, "cpu", a_lay, b_lay)
    assert (a.stride(-1) == 1) == (a_lay == "contig") and (b.stride(-1) == 1) == (b_lay == "contig")
    check_gemm("2x3", emu_mm()(a, b, offs), a, b, offs)


def test_128_experts_skewed_zipf():
    """Qwen3-like routing at a small size: 128 experts, Zipf-skewed rows, many empty."""
    torch.manual_seed(2)
    a, b, offs = make_inputs("2x3", 128, 640, 64, 64, "skewed", torch.bfloat16, "cpu")
    sizes = offs.diff(prepend=offs.new_zeros(1))
    assert (sizes == 0).sum() > 32 and sizes.max() > 200  # really skewed
    check_gemm("2x3", emu_mm()(a, b, offs), a, b, offs)


def test_unaligned_group_starts_of_m_major_a():
    """aᵀ (M-major) with groups starting at odd rows: per-group element-wise loads of A,
    vector loads of B, in the same launch (the dB GEMM of a 2D x 3D layer, 2x2 form)."""
    torch.manual_seed(3)
    x = torch.randn(61, 48, dtype=torch.bfloat16)  # tokens x hidden
    dy = torch.randn(61, 40, dtype=torch.bfloat16)
    offs = make_offs([13, 0, 27, 21], "cpu")
    out = emu_mm()(x.t(), dy, offs)  # [G, 48, 40] = per group x_gᵀ @ dy_g
    check_gemm("2x2", out, x.t(), dy, offs)


def test_malformed_offs_stay_in_bounds(monkeypatch):
    """Unchecked on the device (no MOE_EXT_DEBUG): decreasing offs and offs past M must not make
    the kernel read or write out of bounds (the emulator's bounds checker would raise)."""
    monkeypatch.delenv("MOE_EXT_DEBUG", raising=False)
    a = torch.randn(40, 16, dtype=torch.bfloat16)
    b = torch.randn(3, 16, 24, dtype=torch.bfloat16)
    for bad in ([30, 10, 35], [10, 99, 200], [-5, 20, 40]):
        out = emu_mm()(a, b, torch.tensor(bad, dtype=torch.int32))
        assert out.shape == (40, 24) and torch.isfinite(out).all()


def test_deterministic_bit_identical():
    torch.manual_seed(4)
    a, b, offs = make_inputs("2x3", 5, 300, 96, 160, "skewed", torch.bfloat16, "cpu")
    first = emu_mm()(a, b, offs)
    for _ in range(2):
        assert torch.equal(emu_mm()(a, b, offs), first)


def tiles(extent, size):
    return math.ceil(extent / size)


@pytest.mark.parametrize(
    "config", [("large", 0), ("small_m", 0)], ids=["large", "small_m"], indirect=True
)
@pytest.mark.parametrize("layouts", ["aK_bN", "aK_bK", "aM_bN", "aM_bK"])
def test_counters_bank_conflicts_mma_traffic(config, layouts):
    """Tile-multiple aligned shapes: no bank conflicts anywhere (swizzled ldmatrix operands,
    padded+swizzled epilogue staging), the exact number of mma.sync the tiling needs, and
    global traffic equal to the tiling's (each A tile read once per n-tile, each B tile once
    per m-tile, c written once; nothing re-read, nothing extra)."""
    BM, BN = CONFIGS[config]
    torch.manual_seed(5)
    G, M, K, N = 2, 256, 64, 256
    a_lay = "t" if layouts.startswith("aM") else "contig"
    b_lay = "t" if layouts.endswith("bK") else "contig"
    a, b, offs = make_inputs("2x3", G, M, K, N, "even", torch.bfloat16, "cpu", a_lay, b_lay)
    emu_mm()(a, b, offs)
    s = moe_ext.emu.last_launch_stats()
    assert s["bank_conflicts"] == 0
    rows = group_sizes(M, G, "even")
    n_tiles = tiles(N, BN)
    m_tiles = sum(tiles(r, BM) for r in rows)
    assert s["mma"] == m_tiles * n_tiles * (BM // 16) * (BN // 8) * (K // 16)
    elem = 2
    a_bytes = M * K * elem * n_tiles
    b_bytes = m_tiles * n_tiles * K * BN * elem
    # the rest is offs: each thread reads <= 2 entries per problem lookup (one per scheduler
    # window per CTA, two per tile); broadcast loads that stay in L1 on a GPU
    threads = s["threads"] // s["blocks"]
    offs_bound = (m_tiles * n_tiles * 2 + s["blocks"]) * threads * 8
    assert a_bytes + b_bytes <= s["global_bytes_read"] <= a_bytes + b_bytes + offs_bound, s
    assert s["global_bytes_written"] == M * N * elem


@pytest.mark.parametrize(
    "dtype,path", [(torch.bfloat16, "sm80"), (torch.bfloat16, "sm90"), (torch.float32, "auto")]
)
def test_backward_through_kernels(dtype, path, monkeypatch):
    """dA (grouped_mm(dC, bᵀ)) and dB (ragged-K grouped_mm(aᵀ, dC)) on the emulator equal the
    CPU op's to within dtype rounding, for HF-layout weights (b = w.transpose(-2, -1)); forced
    onto each kernel family (sm90: a refusal would raise, so every GEMM ran on Hopper's)."""
    monkeypatch.setenv("MOE_EXT_GEMM_PATH", path)
    torch.manual_seed(6)
    a, b, offs = make_inputs("2x3", 4, 130, 48, 72, "uneven", dtype, "cpu", "contig", "t")
    gout = torch.randn(130, 72).to(dtype)
    grads = []
    for f in (emu_mm(), torch.ops.moe_ext.grouped_mm):
        x, w = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
        f(x, w, offs).backward(gout)
        grads.append((x.grad, w.grad))
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    for ours, cpu in zip(grads[0], grads[1]):
        torch.testing.assert_close(ours, cpu, **tol)


# Kernel families: (MOE_EXT_GEMM_PATH, persistent CTAs the emulator's 2-SM sm_90 runs, threads)
PATHS = {"sm80": (4, 128), "sm90": (2, 384)}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_medium_expert_gemm_many_tiles_per_cta(path, monkeypatch):
    """A Mixtral-like expert GEMM at 1/16 scale: 8 experts, 1024 skewed rows, K=256, N=512
    (~40 tiles of 128x128 for the persistent CTAs), on the Ampere kernel and on the Hopper
    one (TMA + wgmma), checked against torch's error."""
    monkeypatch.setenv("MOE_EXT_GEMM_PATH", path)
    torch.manual_seed(7)
    a, b, offs = make_inputs(
        "2x3", 8, 1024, 256, 512, "skewed", torch.bfloat16, "cpu", "contig", "t"
    )
    out = emu_mm()(a, b, offs)
    s = moe_ext.emu.last_launch_stats()
    ctas, threads = PATHS[path]
    assert s["blocks"] == ctas and s["threads"] == ctas * threads and s["bank_conflicts"] == 0
    check_gemm("2x3", out, a, b, offs)


# (id, form, G, M, K, N, kind, a layout, b layout): what the Hopper kernel takes -- 16-byte
# pitches, K-major a and b (the forward on HF weights), K-major a and MN-major b (dA = dC bᵀ),
# MN-major a and b (dB = aᵀ dC, ragged K: per-stage tensor maps cut at each group's end)
SM90_SHAPES = [
    ("ragged_edges", "2x3", 3, 200, 72, 136, "uneven", "contig", "t"),  # K tail 8, partial tiles
    ("empty_and_tail", "2x3", 6, 150, 64, 128, "empty_tail", "contig", "t"),  # rows past offs[-1]
    ("one_group", "2x3", 4, 300, 128, 256, "one", "contig", "t"),
    ("batched", "3x3", 3, 70, 80, 136, "even", "contig", "t"),
    ("many_experts", "2x3", 64, 256, 64, 128, "skewed", "contig", "t"),
    ("odd_out_pitch", "2x3", 3, 90, 64, 100, "uneven", "contig", "t"),  # c not TMA-addressable
    ("dA_mn_major_b", "2x3", 5, 260, 136, 72, "uneven", "contig", "contig"),
    ("batched_mn_major_b", "3x3", 2, 70, 64, 200, "even", "contig", "contig"),
    ("dB_ragged_k", "2x2", 5, 136, 300, 200, "uneven", "t", "contig"),  # K tails inside groups
    ("dB_ragged_k_empty_tail", "2x2", 6, 72, 150, 128, "empty_tail", "t", "contig"),
    ("dB_ragged_k_many_groups", "2x2", 40, 128, 520, 64, "skewed", "t", "contig"),
    ("ragged_k_k_major", "2x2", 4, 136, 200, 72, "uneven", "contig", "t"),
]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", SM90_SHAPES, ids=[s[0] for s in SM90_SHAPES])
def test_sm90_kernel(shape, dtype, monkeypatch):
    monkeypatch.setenv("MOE_EXT_GEMM_PATH", "sm90")
    _, form, G, M, K, N, kind, a_layout, b_layout = shape
    torch.manual_seed(8)
    a, b, offs = make_inputs(form, G, M, K, N, kind, dtype, "cpu", a_layout, b_layout)
    out = emu_mm()(a, b, offs)
    s = moe_ext.emu.last_launch_stats()
    assert s["threads"] % 384 == 0 and s["bank_conflicts"] == 0  # the Hopper kernel ran
    check_gemm(form, out, a, b, offs)


# operand layouts the Hopper kernel takes, per form: (a layout, b layout) as make_mat names them
SM90_LAYOUTS = {
    "2x3": [("contig", "t"), ("contig", "contig")],
    "3x3": [("contig", "t"), ("contig", "contig")],
    "2x2": [("t", "contig"), ("contig", "t")],
}


def random_sm90_problem(seed, max_groups, max_dim8):
    """A random problem the Hopper kernel takes: form, operand majors, group split (empty
    groups, tails), dims with 16-byte pitches (multiples of 8 up to 8 max_dim8), bias, output
    dtype. Returns (form, a, b, offs, bias, out_dtype)."""
    rng = random.Random(seed)
    form = rng.choice(sorted(SM90_LAYOUTS))
    a_layout, b_layout = rng.choice(SM90_LAYOUTS[form])
    G = rng.randint(1, max_groups)
    M, K, N = (8 * rng.randint(1, max_dim8) for _ in range(3))
    kind = rng.choice(["uneven", "skewed", "empty_tail", "one"] if form != "3x3" else ["even"])
    dtype = rng.choice([torch.bfloat16, torch.float16])
    out_dtype = rng.choice([None, torch.float32])
    torch.manual_seed(seed)
    a, b, offs = make_inputs(form, G, M, K, N, kind, dtype, "cpu", a_layout, b_layout)
    bias = torch.randn(G, N).to(dtype) if rng.random() < 0.4 else None
    return form, a, b, offs, bias, out_dtype


@pytest.mark.parametrize("seed", range(12))
def test_sm90_random_problems(seed, monkeypatch):
    """Random forms, operand majors, group splits (empty groups, tails), dims with 16-byte
    pitches, bias and output dtype, all forced onto the Hopper kernel, against the reference."""
    monkeypatch.setenv("MOE_EXT_GEMM_PATH", "sm90")
    form, a, b, offs, bias, out_dtype = random_sm90_problem(seed, max_groups=9, max_dim8=40)
    out = emu_mm()(a, b, offs, bias, out_dtype)
    assert moe_ext.emu.last_launch_stats()["threads"] % 384 == 0, (form, a.stride(), b.stride())
    check_gemm(form, out, a, b, offs, bias, out_dtype)


def test_sm90_ragged_k_on_exact_integers(monkeypatch):
    """Small integers make every product and sum exact: a token of a neighbouring group leaking
    through a stage's tensor map (or a stale map after a group change) is a wrong value."""
    monkeypatch.setenv("MOE_EXT_GEMM_PATH", "sm90")
    g = torch.Generator().manual_seed(3)
    x = torch.randint(-2, 3, (333, 128), generator=g).to(torch.bfloat16)
    dy = torch.randint(-2, 3, (333, 136), generator=g).to(torch.bfloat16)
    offs = torch.tensor([0, 7, 7, 64, 65, 200, 333, 333], dtype=torch.int32)
    out = emu_mm()(x.t(), dy, offs)
    bounds = [0, *offs.tolist()]
    for e in range(len(offs)):
        lo, hi = bounds[e], bounds[e + 1]
        assert torch.equal(out[e].float(), x[lo:hi].float().t() @ dy[lo:hi].float()), e


def test_sm90_bias_and_out_dtype(monkeypatch):
    monkeypatch.setenv("MOE_EXT_GEMM_PATH", "sm90")
    torch.manual_seed(9)
    a, b, offs = make_inputs("2x3", 4, 130, 64, 72, "uneven", torch.bfloat16, "cpu", "contig", "t")
    bias = torch.randn(4, 72).to(torch.bfloat16)
    out = emu_mm()(a, b, offs, bias, torch.float32)
    assert moe_ext.emu.last_launch_stats()["threads"] % 384 == 0
    check_gemm("2x3", out, a, b, offs, bias, torch.float32)


def test_sm90_path_refuses_what_it_cannot_run(monkeypatch):
    """Forcing the Hopper path on the ragged-N form (3D x 2D) is an error, not a silent
    fallback; auto picks the Ampere kernel for it."""
    a, b, offs = make_inputs("3x2", 2, 64, 32, 64, "even", torch.bfloat16, "cpu", "contig", "t")
    monkeypatch.setenv("MOE_EXT_GEMM_PATH", "sm90")
    with pytest.raises(
        RuntimeError,
        match="MOE_EXT_GEMM_PATH=sm90 forces the Hopper kernel on a problem it does not take",
    ):
        emu_mm()(a, b, offs)
    monkeypatch.setenv("MOE_EXT_GEMM_PATH", "auto")
    out = emu_mm()(a, b, offs)
    assert moe_ext.emu.last_launch_stats()["threads"] % 384 != 0
    check_gemm("3x2", out, a, b, offs)


def test_tuning_table_steers_the_launcher(tmp_path, monkeypatch):
    """A tune_grouped_gemm.py table picks the kernel for its shape class where no override is
    set: here the Ampere small-M tile instead of the Hopper kernel that auto picks on the
    emulator's sm_90 (the persistent grid is the shape-only tile bound: (64/32 m-tiles + G + 1)
    x 1 n-tile = 4 CTAs of 128 threads for small-M, 3 for the large tile); other shapes, and explicit overrides, are
    unaffected; clearing restores the heuristic."""
    for v in ("MOE_EXT_GEMM_PATH", "MOE_EXT_GEMM_CONFIG", "MOE_EXT_GEMM_STAGES"):
        monkeypatch.delenv(v, raising=False)
    torch.manual_seed(11)
    a, b, offs = make_inputs("2x3", 1, 64, 64, 128, "even", torch.bfloat16, "cpu", "contig", "t")
    # the key as the tuner writes it: the C++ lookup must agree with tune_grouped_gemm.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from tune_grouped_gemm import tuning_key

    table = {
        "table": {
            tuning_key(E=1, K=64, N=128, M=64): [
                {"path": "sm80", "config": "small_m", "stages": 3, "us": 1.0},
                {"path": "sm90", "config": "large", "stages": 4, "us": 2.0},
                {"path": "sm80", "config": "large", "stages": 5, "error": "x"},
            ]
        }
    }
    path = tmp_path / "tuning.json"
    path.write_text(json.dumps(table))
    try:
        emu_mm()(a, b, offs)
        assert moe_ext.emu.last_launch_stats()["threads"] % 384 == 0  # heuristic: Hopper
        assert moe_ext.load_gemm_tuning(path) == 1
        out = emu_mm()(a, b, offs)
        s = moe_ext.emu.last_launch_stats()
        assert s["threads"] == 4 * 128 and s["blocks"] == 4  # small-M tiles on the Ampere kernel
        check_gemm("2x3", out, a, b, offs)
        a2, b2, offs2 = make_inputs(
            "2x3", 1, 64, 64, 256, "even", torch.bfloat16, "cpu", "contig", "t"
        )
        emu_mm()(a2, b2, offs2)  # another key: untouched
        assert moe_ext.emu.last_launch_stats()["threads"] % 384 == 0
        monkeypatch.setenv("MOE_EXT_GEMM_PATH", "sm90")  # an override wins over the table
        emu_mm()(a, b, offs)
        assert moe_ext.emu.last_launch_stats()["threads"] % 384 == 0
    finally:
        moe_ext.clear_gemm_tuning()
    monkeypatch.delenv("MOE_EXT_GEMM_PATH")
    emu_mm()(a, b, offs)
    assert moe_ext.emu.last_launch_stats()["threads"] % 384 == 0


def test_sm90_ragged_k_maps_come_from_the_prologue(monkeypatch):
    """Ragged K: one prologue launch writes every group's A/B tensor maps (one warp per group),
    and the GEMM that follows is a full persistent grid (no longer capped by a per-CTA map
    workspace) whose producer only acquires them -- exact on small integers across 37 groups,
    empty ones included."""
    monkeypatch.setenv("MOE_EXT_GEMM_PATH", "sm90")
    g = torch.Generator().manual_seed(5)
    sizes = [0, 3, 130, 0, 64, 1] * 6 + [70]
    offs = torch.tensor(sizes, dtype=torch.int32).cumsum(0).int()
    tokens = int(offs[-1])
    x = torch.randint(-2, 3, (tokens, 72), generator=g).to(torch.bfloat16)
    dy = torch.randint(-2, 3, (tokens, 136), generator=g).to(torch.bfloat16)
    with moe_ext.emu.launch_log() as log:
        out = emu_mm()(x.t(), dy, offs)
    assert [s["kernel"] for s in log] == [
        "build_group_maps_sm90_kernel",
        "grouped_gemm_sm90_kernel",
    ]
    assert log[0]["blocks"] == math.ceil(len(sizes) / 4)
    assert log[1]["threads"] == 384 * log[1]["blocks"] and log[1]["blocks"] >= 2
    bounds = [0, *offs.tolist()]
    for e in range(len(sizes)):
        lo, hi = bounds[e], bounds[e + 1]
        assert torch.equal(out[e].float(), x[lo:hi].float().t() @ dy[lo:hi].float()), e
