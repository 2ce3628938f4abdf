"""grouped_mm_fp8 (DeepSeek-V3 block FP8, DESIGN.md "Contract additions") against the contract's
formula evaluated in fp64 over the same quantized values (reference.grouped_mm_fp8), on every
backend: both forms, K not a multiple of 128 (and not of 16: the element-load path), N not a
multiple of the tile, empty groups, rows past offs[-1], every output dtype, UE8M0 scales. The
bound is fp32 rounding of the terms' magnitudes: |out - ref| <= 2^-20 * sum |a_s b_s a b| (fp32
output), plus one rounding of the output dtype.
"""

from __future__ import annotations

import pytest
import torch
from conftest import backends_for, device_of, op

import moe_ext
from moe_ext import reference

BACKENDS = backends_for("grouped_mm_fp8")
ROUND = {torch.float32: 0.0, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}


def blocks(n):
    return (n + 127) // 128


def make_problem(M, N, K, G, counts=None, *, batched=False, ue8m0=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    fmt = "ue8m0" if ue8m0 else "float"
    shape = (G, M, K) if batched else (M, K)
    x = torch.randn(*shape, generator=gen) * 2
    a, a_scale = moe_ext.quantize_fp8(x.reshape(-1, K), 128, fmt)
    a, a_scale = a.view(*shape), a_scale.view(*shape[:-1], blocks(K))
    w = torch.randn(G, N, K, generator=gen)
    # per-(128 x 128)-block weight scales, as DeepSeek-V3 checkpoints store them
    b_scale = torch.rand(G, blocks(N), blocks(K), generator=gen) * 0.02 + 0.005
    if ue8m0:
        b_scale = reference.fp8_group_scales(b_scale * 448, "ue8m0")
    full = b_scale.repeat_interleave(128, 1)[:, :N].repeat_interleave(128, 2)[:, :, :K]
    b = (w / full).clamp(-448, 448).to(torch.float8_e4m3fn)
    offs = None if batched else torch.tensor(counts).cumsum(0).int()
    return a, a_scale, b, b_scale, offs


def run(backend, a, a_scale, b, b_scale, offs, out_dtype):
    dev = device_of(backend)
    args = [t.to(dev) if t is not None else None for t in (a, a_scale, b, b_scale, offs)]
    return op(backend, "grouped_mm_fp8")(*args, out_dtype).cpu()


# On a GPU with fp8 tensor cores (sm_89+, MOE_EXT_FP8_MMA=auto) the products are added with
# fewer bits than fp32 inside an MMA (DeepGEMM's observation on Hopper), bounded by the per-block
# promotion: relative 2^-12 of the terms' magnitude there, fp32 rounding everywhere else.
def term_bound(backend):
    return 2.0**-12 if backend == "cuda" else 2.0**-20


def assert_matches_formula(out, a, a_scale, b, b_scale, offs, out_dtype, rel=2.0**-20):
    ref = reference.grouped_mm_fp8(a, a_scale, b, b_scale, offs, torch.float64)
    mag = reference.grouped_mm_fp8(
        a.float().abs().to(torch.float8_e4m3fn),
        a_scale,
        b.float().abs().to(torch.float8_e4m3fn),
        b_scale,
        offs,
        torch.float64,
    )
    assert out.dtype == out_dtype and out.shape == ref.shape
    bound = rel * mag + ROUND[out_dtype] * ref.abs() + 1e-30
    err = (out.double() - ref).abs()
    assert (err <= bound).all(), (
        f"max err {err.max().item():.3g}, worst ratio {(err / bound).max():.3g}"
    )


# (M, N, K, group row counts): tails in every dim, K % 128 != 0, K % 16 != 0 (element loads),
# empty groups, rows past offs[-1], one row, K < 128, K spanning many scale blocks
RAGGED = [
    (200, 192, 300, [50, 0, 120]),
    (128, 64, 128, [128]),
    (130, 130, 129, [1, 129]),
    (64, 256, 1024, [0, 0, 64, 0]),
    (33, 100, 7, [10, 23]),
    (1, 64, 64, [0, 1]),
    (300, 96, 2048, [150, 150]),
]


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", RAGGED, ids=[f"{m}x{n}x{k}g{len(c)}" for m, n, k, c in RAGGED])
@pytest.mark.parametrize("backend", BACKENDS)
def test_ragged_matches_formula(backend, case, out_dtype):
    M, N, K, counts = case
    a, asc, b, bsc, offs = make_problem(M, N, K, len(counts), counts, seed=M + N + K)
    out = run(backend, a, asc, b, bsc, offs, out_dtype)
    assert_matches_formula(out, a, asc, b, bsc, offs, out_dtype, term_bound(backend))
    kept = int(offs[-1])
    assert torch.equal(out[kept:], torch.zeros_like(out[kept:]))  # rows past offs[-1]


@pytest.mark.parametrize("shape", [(3, 40, 192, 256), (2, 130, 64, 200), (1, 0, 64, 128)])
@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_matches_formula(backend, shape):
    G, M, N, K = shape
    a, asc, b, bsc, _ = make_problem(M, N, K, G, batched=True, seed=G * M)
    out = run(backend, a, asc, b, bsc, None, torch.float32)
    assert out.shape == (G, M, N)
    assert_matches_formula(out, a, asc, b, bsc, None, torch.float32, term_bound(backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_ue8m0_scales(backend):
    a, asc, b, bsc, offs = make_problem(96, 128, 384, 2, [40, 56], ue8m0=True, seed=5)
    assert torch.equal(bsc, torch.exp2(torch.log2(bsc).round()))  # powers of two
    out = run(backend, a, asc, b, bsc, offs, torch.bfloat16)
    assert_matches_formula(out, a, asc, b, bsc, offs, torch.bfloat16, term_bound(backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_level_accumulation_has_no_drift(backend):
    """Long K with large same-sign products: a single fp8-scale accumulator would lose bits;
    the per-block fp32 partial sums promoted with their scales stay at fp32 rounding."""
    M, N, K = 16, 64, 8192
    a = torch.full((M, K), 448.0).to(torch.float8_e4m3fn)
    asc = torch.rand(M, blocks(K), generator=torch.Generator().manual_seed(1)) + 0.5
    b = torch.full((1, N, K), 1.25).to(torch.float8_e4m3fn)
    bsc = torch.rand(1, 1, blocks(K), generator=torch.Generator().manual_seed(2)) + 0.5
    offs = torch.tensor([M], dtype=torch.int32)
    out = run(backend, a, asc, b, bsc, offs, torch.float32)
    assert_matches_formula(out, a, asc, b, bsc, offs, torch.float32, term_bound(backend))


needs_emu = pytest.mark.skipif("emu" not in BACKENDS, reason="emulator not built")


@needs_emu
@pytest.mark.parametrize("mma, k_step", [("f16", 16), ("e4m3", 32)])
def test_emulator_counts_and_bank_conflicts(monkeypatch, mma, k_step):
    """One 128 x 64 tile per (m, n) tile, 8 warps x 2 x 4 MMAs per k step (m16n8k16 f16 after
    the conversion, or m16n8k32 e4m3: half as many), no shared-memory bank conflicts on the
    fragment loads, the staging or the copy-out."""
    from moe_ext import emu

    monkeypatch.setenv("MOE_EXT_FP8_MMA", mma)
    a, asc, b, bsc, offs = make_problem(256, 128, 512, 2, [100, 156], seed=3)
    run("emu", a, asc, b, bsc, offs, torch.bfloat16)
    s = emu.last_launch_stats()
    tiles = (1 + 2) * 2  # m-tiles of 100 and 156 rows, 2 n-tiles
    assert s["mma"] == tiles * (512 // k_step) * 8 * 2 * 4
    assert s["bank_conflicts"] == 0 and s["shared_requests"] > 0


@needs_emu
@pytest.mark.parametrize("case", RAGGED[:5], ids=[f"{m}x{n}x{k}" for m, n, k, _ in RAGGED[:5]])
def test_both_mma_paths_agree(monkeypatch, case):
    """The f16-conversion and the e4m3-instruction paths compute the same block sums (exact
    products, fp32 adds) and differ only in the order of the fp32 additions."""
    M, N, K, counts = case
    a, asc, b, bsc, offs = make_problem(M, N, K, len(counts), counts, seed=K)
    outs = {}
    for mma in ("f16", "e4m3"):
        monkeypatch.setenv("MOE_EXT_FP8_MMA", mma)
        outs[mma] = run("emu", a, asc, b, bsc, offs, torch.float32)
        assert_matches_formula(outs[mma], a, asc, b, bsc, offs, torch.float32)
    torch.testing.assert_close(outs["f16"], outs["e4m3"], rtol=1e-5, atol=1e-5)


def test_fp8_mma_env_is_checked(monkeypatch):
    monkeypatch.setenv("MOE_EXT_FP8_MMA", "e5m2")
    a, asc, b, bsc, offs = make_problem(16, 64, 128, 1, [16])
    dev = "emu" if "emu" in BACKENDS else None
    if dev is None:
        pytest.skip("the variable is read by the device paths")
    with pytest.raises(RuntimeError, match="MOE_EXT_FP8_MMA must be auto, f16 or e4m3"):
        run(dev, a, asc, b, bsc, offs, torch.float32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_invariance(backend):
    """A row's output does not depend on the other rows of its group or how many there are."""
    a, asc, b, bsc, _ = make_problem(256, 128, 384, 1, [256], seed=9)
    full = run(backend, a, asc, b, bsc, torch.tensor([256], dtype=torch.int32), torch.float32)
    part = run(
        backend, a[:37], asc[:37], b, bsc, torch.tensor([37], dtype=torch.int32), torch.float32
    )
    if backend == "cpu":  # fp32 sgemm blocking depends on M (build_info()["batch_invariant"])
        torch.testing.assert_close(part, full[:37], rtol=1e-6, atol=1e-5)
    else:
        assert torch.equal(part, full[:37])


@pytest.mark.parametrize("backend", BACKENDS)
def test_errors_name_the_argument(backend):
    f = op(backend, "grouped_mm_fp8")
    a, asc, b, bsc, offs = (
        t.to(device_of(backend)) for t in make_problem(64, 64, 256, 2, [30, 34], seed=1)
    )
    with pytest.raises(RuntimeError, match="grouped_mm_fp8: a must be float8_e4m3fn"):
        f(a.float(), asc, b, bsc, offs)
    with pytest.raises(RuntimeError, match="grouped_mm_fp8: b must be float8_e4m3fn"):
        f(a, asc, b.bfloat16(), bsc, offs)
    with pytest.raises(RuntimeError, match=r"grouped_mm_fp8: a_scale must be \[64, 2\]"):
        f(a, asc[:, :1], b, bsc, offs)
    with pytest.raises(RuntimeError, match=r"grouped_mm_fp8: b_scale must be \[2, 1, 2\]"):
        f(a, asc, b, bsc.transpose(1, 2), offs)
    with pytest.raises(RuntimeError, match="grouped_mm_fp8: b_scale must be float32"):
        f(a, asc, b, bsc.double(), offs)
    with pytest.raises(RuntimeError, match="grouped_mm_fp8: offs must have one entry per group"):
        f(a, asc, b, bsc, offs[:1])
    with pytest.raises(RuntimeError, match="grouped_mm_fp8: the contraction sizes"):
        f(a[:, :128], asc[:, :1], b, bsc, offs)
    with pytest.raises(RuntimeError, match="grouped_mm_fp8: out_dtype must be"):
        f(a, asc, b, bsc, offs, torch.int32)
    with pytest.raises(RuntimeError, match=r"grouped_mm_fp8: a must be \[G=2, M, K\]"):
        f(a, asc, b, bsc, None)


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend):
    dev = device_of(backend)
    args = tuple(t.to(dev) for t in make_problem(40, 64, 200, 2, [15, 20], seed=2))
    # not "test_schema": its alias check multiplies inputs, which torch lacks for float8 on CPU
    utils = ("test_faketensor", "test_autograd_registration", "test_aot_dispatch_dynamic")
    torch.library.opcheck(op(backend, "grouped_mm_fp8"), (*args, torch.bfloat16), test_utils=utils)


def test_compile_fullgraph():
    torch._dynamo.reset()
    a, asc, b, bsc, offs = make_problem(48, 64, 256, 2, [20, 28], seed=4)
    f = torch.compile(moe_ext.grouped_mm_fp8, fullgraph=True)
    out = f(a, asc, b, bsc, offs, torch.float32)
    assert torch.equal(out, moe_ext.grouped_mm_fp8(a, asc, b, bsc, offs, torch.float32))
