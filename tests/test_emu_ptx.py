"""The PTX wrapper header (csrc/common/ptx.h) on the CPU SIMT emulator.

mma.sync / ldmatrix / cp.async are checked against shared/golden/ptx_fragments.json (fragment
layouts from the PTX ISA, cross-checked with CUTLASS) and against torch: per-lane fragment
layouts, a multistage cp.async -> ldmatrix -> mma GEMM, cp.async zero fill and its deferred
completion (reads before the wait are caught), and the mma / bank-conflict counters. The kernels
live in csrc/kernels/testing/selftest_ptx_kernels.cuh and run as torch.ops.moe_ext_emu_test.ptx_*.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import moe_ext  # noqa: F401  (conftest puts the in-tree package on the path)
import moe_ext.emu

pytestmark = pytest.mark.skipif(
    not moe_ext.build_info()["test_kernels"],
    reason="moe_ext built without the test-only kernels (MOE_EXT_TEST_KERNELS=1)",
)

ops = torch.ops.moe_ext_emu_test


def _golden_path() -> Path:
    here = Path(__file__).resolve().parents[2] / "shared/golden/ptx_fragments.json"
    return here if here.exists() else Path("/work/shared/golden/ptx_fragments.json")


GOLDEN_PATH = _golden_path()
needs_golden = pytest.mark.skipif(
    not GOLDEN_PATH.exists(), reason=f"golden fragment layouts not found at {GOLDEN_PATH}"
)


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN_PATH.read_text())


def _coords(golden: dict, key: str) -> torch.Tensor:
    return torch.tensor(golden[key], dtype=torch.long)  # [32, elems, 2 or 3]


# ------------------------------------------------------------------------------ bit helpers
def _as_int32(u: torch.Tensor) -> torch.Tensor:
    """int64 holding uint32 values -> int32 with the same bits."""
    u = u & 0xFFFFFFFF
    return torch.where(u >= 2**31, u - 2**32, u).to(torch.int32)


def _bits16(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.int16).to(torch.int64) & 0xFFFF


def tf32_rna(x: torch.Tensor) -> torch.Tensor:
    """cvt.rna.tf32.f32: keep 10 mantissa bits, round to nearest, ties away from zero."""
    u = x.contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    finite = (u & 0x7F800000) != 0x7F800000
    r = torch.where(finite, (u + 0x1000) & 0xFFFFE000, u)
    return _as_int32(r).view(torch.float32)


def sequential_fp32(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None):
    """c + a @ b summed in fp32 over k = 0, 1, ... in order: the emulator's documented order.
    Products of bf16/fp16/tf32 values are exact in fp32, so this is bit-exact."""
    a, b = a.float(), b.float()
    d = torch.zeros(a.shape[0], b.shape[1]) if c is None else c.clone()
    for k in range(a.shape[1]):
        d = d + a[:, k : k + 1] * b[k : k + 1, :]
    return d


def _close_to_matmul(d: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c=None):
    """|d - (c + a@b)| <= 1e-5 * (|c| + |a|@|b|): fp32 accuracy of the sum, any order."""
    a, b = a.double(), b.double()
    ref = a @ b + (0 if c is None else c.double())
    scale = a.abs() @ b.abs() + (0 if c is None else c.double().abs())
    assert ((d.double() - ref).abs() <= 1e-5 * scale + 1e-30).all()


# ------------------------------------------------------------- 1. fragment layouts vs golden
@needs_golden
def test_fragment_map_equals_golden(golden):
    keys = [k for k in golden if k != "about"]
    assert set(keys) == {
        "m16n8k16.A",
        "m16n8k16.B",
        "m16n8k16.C",
        "m16n8k8.tf32.A",
        "m16n8k8.tf32.B",
        "m16n8k8.tf32.C",
        "ldmatrix.x4",
        "ldmatrix.x4.trans",
    }
    for key in keys:
        assert ops.ptx_fragment_map(key).tolist() == golden[key], key


FP8_GOLDEN = json.loads((Path(__file__).parent / "golden/ptx_fragments_fp8.json").read_text())


def test_fp8_fragment_map_equals_golden():
    """The 8-bit m16n8k32 layouts (e4m3 mma.sync), pinned by tests/golden/ptx_fragments_fp8.json
    (written from the PTX ISA formulas)."""
    for key in ("m16n8k32.e4m3.A", "m16n8k32.e4m3.B", "m16n8k32.e4m3.C"):
        assert ops.ptx_fragment_map(key).tolist() == FP8_GOLDEN[key], key


def test_mma_e4m3_on_golden_fragments():
    """One m16n8k32 e4m3 mma with registers packed from the golden layout (4 bytes each, low
    first): D equals C + A @ B summed in fp32 in k order (e4m3 products are exact in fp32)."""
    gen = torch.Generator().manual_seed(0)
    A = (torch.randn(16, 32, generator=gen) * 8).to(torch.float8_e4m3fn)
    B = (torch.randn(32, 8, generator=gen) * 8).to(torch.float8_e4m3fn)
    C = torch.randn(16, 8, generator=gen)
    ga, gb, gc = (torch.tensor(FP8_GOLDEN[f"m16n8k32.e4m3.{m}"]) for m in "ABC")
    ea = A.view(torch.uint8).long()[ga[..., 0], ga[..., 1]]  # [32, 16]
    eb = B.view(torch.uint8).long()[gb[..., 0], gb[..., 1]]  # [32, 8]

    def pack(e):  # 4 bytes per register, low byte first
        return _as_int32(e[:, 0::4] | (e[:, 1::4] << 8) | (e[:, 2::4] << 16) | (e[:, 3::4] << 24))

    d_regs = ops.ptx_mma_fragments(
        3, pack(ea).contiguous(), pack(eb).contiguous(), C[gc[..., 0], gc[..., 1]].contiguous()
    )
    assert moe_ext.emu.last_launch_stats()["mma"] == 1
    D = torch.empty(16, 8)
    D[gc[..., 0], gc[..., 1]] = d_regs
    assert torch.equal(D, sequential_fp32(A.float(), B.float(), C))


def test_fragment_map_rejects_unknown_key():
    with pytest.raises(RuntimeError, match="unknown fragment key"):
        ops.ptx_fragment_map("m16n8k32.A")


MMA_KINDS = {  # kind id, input dtype, K
    "bf16": (0, torch.bfloat16, 16),
    "f16": (1, torch.float16, 16),
    "tf32": (2, torch.float32, 8),
}


@needs_golden
@pytest.mark.parametrize("name", list(MMA_KINDS))
def test_mma_on_golden_fragments(golden, name):
    """One mma whose per-lane registers are built from the golden layouts (not from the
    emulator's own mapping): D read back through the golden C layout must be C + A @ B."""
    kind, dtype, K = MMA_KINDS[name]
    key = "m16n8k16" if K == 16 else "m16n8k8.tf32"
    A = torch.randn(16, K).to(dtype)
    B = torch.randn(K, 8).to(dtype)
    C = torch.randn(16, 8)
    if name == "tf32":
        # Exact ties between two tf32 values: rna rounds them away from zero (rne / truncation
        # would not), so a wrong rounding mode changes D.
        A[0, :4] = torch.tensor([1 + 2**-11, -(1 + 3 * 2**-11), 3 * (1 + 2**-11), 0.1])
        B[:, 0] = 1 + 2**-11
    ga, gb, gc = (_coords(golden, f"{key}.{m}") for m in "ABC")
    if name == "tf32":  # one 32-bit element per register
        a_regs = _as_int32(A.view(torch.int32).to(torch.int64)[ga[..., 0], ga[..., 1]])
        b_regs = _as_int32(B.view(torch.int32).to(torch.int64)[gb[..., 0], gb[..., 1]])
    else:  # two 16-bit elements per register, low half first
        ea = _bits16(A)[ga[..., 0], ga[..., 1]]  # [32, 8]
        eb = _bits16(B)[gb[..., 0], gb[..., 1]]  # [32, 4]
        a_regs = _as_int32(ea[:, 0::2] | (ea[:, 1::2] << 16))
        b_regs = _as_int32(eb[:, 0::2] | (eb[:, 1::2] << 16))
    c_regs = C[gc[..., 0], gc[..., 1]].contiguous()
    d_regs = ops.ptx_mma_fragments(kind, a_regs.contiguous(), b_regs.contiguous(), c_regs)
    assert moe_ext.emu.last_launch_stats()["mma"] == 1
    D = torch.empty(16, 8)
    D[gc[..., 0], gc[..., 1]] = d_regs
    if name == "tf32":
        A, B = tf32_rna(A), tf32_rna(B)
    assert torch.equal(D, sequential_fp32(A, B, C))
    _close_to_matmul(D, A, B, C)


# --------------------------------------------------------------------- 2. + 4. GEMM tiles
GEMM_SHAPES = [  # M, N, K, warps
    (16, 8, 16, 1),  # one m16n8k16 tile (two k-steps of m16n8k8 for tf32)
    (64, 64, 64, 4),  # 4 warps x 8 tiles, 4 k-slices through 3 stages (wraps around)
    (32, 48, 128, 2),
]


@pytest.mark.parametrize("shape", GEMM_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("b_kmajor", [True, False], ids=["b_kn", "b_nk"])
@pytest.mark.parametrize("name", list(MMA_KINDS))
def test_gemm_cp_async_ldmatrix_mma(name, b_kmajor, shape):
    _, dtype, bk = MMA_KINDS[name]
    M, N, K, warps = shape
    a = torch.randn(M, K).to(dtype)
    b_kn = torch.randn(K, N).to(dtype)
    b = b_kn if b_kmajor else b_kn.t().contiguous()
    d = ops.ptx_gemm(a, b, b_kmajor, warps)
    assert moe_ext.emu.last_launch_stats()["mma"] == (M // 16) * (N // 8) * (K // bk)
    if name == "tf32":  # the kernel rounds its fragments with cvt_rna_tf32
        a, b_kn = tf32_rna(a), tf32_rna(b_kn)
    assert torch.equal(d, sequential_fp32(a, b_kn))
    _close_to_matmul(d, a, b_kn)
    if name != "tf32":  # torch's own fp32 matmul of the exact inputs, 1e-5 relative
        torch.testing.assert_close(d, a.float() @ b_kn.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["bf16", "tf32"])
def test_gemm_reading_stage_before_wait_is_caught(name):
    """Planted pipeline bug: wait_group<kStages-1> leaves the stage about to be read in flight.
    Deferred completion makes it read poisoned shared memory, which the checker reports."""
    _, dtype, _ = MMA_KINDS[name]
    a, b = torch.randn(64, 64).to(dtype), torch.randn(64, 64).to(dtype)
    ops.ptx_gemm(a, b, True, 4, 0)  # the same launch without the bug is clean
    with pytest.raises(RuntimeError, match="uninitialized"):
        ops.ptx_gemm(a, b, True, 4, 1)


# ------------------------------------------------------------------------------ 3. ldmatrix
@needs_golden
@pytest.mark.parametrize("trans", [False, True], ids=["plain", "trans"])
@pytest.mark.parametrize("num", [1, 2, 4])
def test_ldmatrix_registers_match_golden(golden, num, trans):
    tile = torch.arange(32 * 8, dtype=torch.int16).reshape(32, 8)  # value = m*64 + r*8 + c
    regs = ops.ptx_ldmatrix(tile, num, trans).to(torch.int64) & 0xFFFFFFFF  # [32, num]
    halves = torch.stack([regs & 0xFFFF, regs >> 16], dim=-1).reshape(32, 2 * num)
    g = _coords(golden, "ldmatrix.x4.trans" if trans else "ldmatrix.x4")[:, : 2 * num]
    assert (g[..., 0] == torch.arange(2 * num) // 2).all()  # register i holds matrix i
    assert torch.equal(halves, g[..., 0] * 64 + g[..., 1] * 8 + g[..., 2])


# ------------------------------------------------------------------------------ 4. cp.async
def _src(n: int) -> torch.Tensor:
    return torch.randint(1, 256, (n,), dtype=torch.uint8)  # nonzero: zero fill is visible


def _expected(src: torch.Tensor, src_bytes: torch.Tensor, nbytes: int) -> torch.Tensor:
    full = torch.zeros(64 * nbytes, dtype=torch.uint8)
    full[: src.numel()] = src
    chunks = full.reshape(64, nbytes).clone()
    keep = torch.arange(nbytes)[None, :] < src_bytes[:, None].long()
    return torch.where(keep, chunks, torch.zeros_like(chunks)).reshape(-1)


@pytest.mark.parametrize("nbytes", [4, 8, 16])
def test_cp_async_copies_and_zero_fills(nbytes):
    src = _src(64 * nbytes)
    src_bytes = torch.randint(0, nbytes + 1, (64,), dtype=torch.int32)
    src_bytes[:3] = torch.tensor([0, nbytes, nbytes // 2])
    dst = ops.ptx_cp_async(src, src_bytes, nbytes)
    assert torch.equal(dst, _expected(src, src_bytes, nbytes))
    assert moe_ext.emu.last_launch_stats()["global_bytes_read"] == int(src_bytes.sum()) + 64 * 4


@pytest.mark.parametrize("nbytes", [4, 8, 16])
def test_cp_async_src_bytes_bound_the_read(nbytes):
    """The last chunk straddles / lies past the end of src: only src_bytes are read."""
    partial = nbytes // 2
    src_bytes = torch.full((64,), nbytes, dtype=torch.int32)
    src = _src(63 * nbytes + partial)
    src_bytes[63] = partial
    assert torch.equal(ops.ptx_cp_async(src, src_bytes, nbytes), _expected(src, src_bytes, nbytes))
    src_bytes[63] = partial + 1
    with pytest.raises(RuntimeError, match="out-of-bounds global cp.async"):
        ops.ptx_cp_async(src, src_bytes, nbytes)
    src = _src(63 * nbytes)  # predicated off: src_bytes 0 reads nothing, even past the end
    src_bytes[63] = 0
    assert torch.equal(ops.ptx_cp_async(src, src_bytes, nbytes), _expected(src, src_bytes, nbytes))


@pytest.mark.parametrize(
    "mode, error",
    [
        (1, "uninitialized"),  # read a chunk before any wait_group
        (3, "uninitialized"),  # after wait_group 1, read the group still in flight
        (2, "never waited"),  # exit with committed copies never waited for
    ],
    ids=["read_before_wait", "read_pending_group", "exit_without_wait"],
)
def test_cp_async_deferred_completion_catches_bugs(mode, error):
    src_bytes = torch.full((64,), 16, dtype=torch.int32)
    with pytest.raises(RuntimeError, match=error):
        ops.ptx_cp_async(_src(64 * 16), src_bytes, 16, mode)


# ------------------------------------------------------------------------------ 5. counters
@needs_golden
@pytest.mark.parametrize(
    "stride, swizzle, conflicts",
    [
        (16, False, 0),  # 8 rows of a matrix are 128 contiguous bytes
        (32, False, 4),  # 2-way per 8-row phase, 4 phases
        (64, False, 12),  # 4-way
        (128, False, 28),  # 8-way: every row starts at bank 0
        (32, True, 0),
        (64, True, 0),
        (128, True, 0),
    ],
)
def test_ldmatrix_bank_conflicts(golden, stride, swizzle, conflicts):
    regs = ops.ptx_ldmatrix_banks(stride, swizzle).to(torch.int64) & 0xFFFFFFFF
    stats = moe_ext.emu.last_launch_stats()
    assert stats["bank_conflicts"] == conflicts
    # the (un)swizzled addresses still fetch logical chunk 0 of rows 0..31
    halves = torch.stack([regs & 0xFFFF, regs >> 16], dim=-1).reshape(32, 8)
    g = _coords(golden, "ldmatrix.x4")
    assert torch.equal(halves, (g[..., 0] * 8 + g[..., 1]) * 64 + g[..., 2])
