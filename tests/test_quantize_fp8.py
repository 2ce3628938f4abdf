"""quantize_fp8 (per-token-group FP8, DESIGN.md "Contract additions") against reference.py, on
every backend: the e4m3 bits and the fp32 scales must be identical (the kernel converts with
integer arithmetic on the float's bits, common/fp8.h; the reference with torch's conversion of
the clamped quotient), for both scale formats, groups that do not divide K, every input dtype.
"""

from __future__ import annotations

import pytest
import torch
from conftest import backends_for, device_of, op

import moe_ext
from moe_ext import reference

BACKENDS = backends_for("quantize_fp8")


def run(backend, x, group_size=128, scale_format="float"):
    q, s = op(backend, "quantize_fp8")(x.to(device_of(backend)), group_size, scale_format)
    return q.cpu(), s.cpu()


def assert_same(backend, x, group_size=128, scale_format="float"):
    q, s = run(backend, x, group_size, scale_format)
    rq, rs = reference.quantize_fp8(x, group_size, scale_format)
    assert q.dtype == torch.float8_e4m3fn and s.dtype == torch.float32
    assert q.shape == x.shape and s.shape == rs.shape
    assert torch.equal(s, rs), (s - rs).abs().max()
    assert torch.equal(q.view(torch.uint8), rq.view(torch.uint8))
    return q, s


# (M, K, group_size): whole groups, a short last group, K < group, group of 1, empty
SHAPES = [(4, 256, 128), (3, 200, 128), (5, 100, 128), (2, 64, 64), (3, 7, 1), (0, 128, 128)]


@pytest.mark.parametrize("scale_format", ["float", "ue8m0"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{m}x{k}g{g}" for m, k, g in SHAPES])
@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_reference_bitwise(backend, shape, dtype, scale_format):
    M, K, g = shape
    x = (torch.randn(M, K, generator=torch.Generator().manual_seed(M * K + g)) * 3).to(dtype)
    assert_same(backend, x, g, scale_format)


def _e4m3_values():
    """Every finite non-negative e4m3fn value, ascending (0 .. 448)."""
    return torch.arange(0, 0x7F, dtype=torch.uint8).view(torch.float8_e4m3fn).float()


@pytest.mark.parametrize("backend", BACKENDS)
def test_conversion_of_every_value_midpoint_and_neighbour(backend):
    """A group whose amax is exactly 448 has scale 1, so x_q = e4m3(x): every e4m3 value, every
    midpoint between two neighbours (ties to even), the floats just above and below each
    midpoint, subnormals, both signs -- all equal to torch's conversion."""
    v = _e4m3_values()
    mid = (v[1:] + v[:-1]) / 2
    up = torch.nextafter(mid, torch.full_like(mid, 1e9))
    down = torch.nextafter(mid, torch.zeros_like(mid))
    vals = torch.cat([v, mid, up, down, torch.tensor([1e-12, 2.0**-10, 3 * 2.0**-11])])
    vals = torch.cat([vals, -vals])
    per_row = 127
    rows = -(-vals.numel() // per_row)
    x = torch.zeros(rows * per_row)
    x[: vals.numel()] = vals
    x = torch.cat([torch.full((rows, 1), 448.0), x.view(rows, per_row)], 1)  # amax 448 per row
    q, s = assert_same(backend, x, 128)
    assert torch.equal(s, torch.ones_like(s))


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_zero_group_and_ue8m0_scales(backend):
    """An all-zero group gets amax 1e-10 (positive scale, zero codes); ue8m0 scales are powers
    of two >= the float scale (< 2x it), and a group whose amax / 448 is already a power of two
    keeps it."""
    x = torch.randn(3, 384, generator=torch.Generator().manual_seed(5))
    x[0, :128] = 0
    x[1, 128:256] = 0
    x[1, 128] = 448 * 2.0**-3  # amax / 448 = 1/8 exactly
    q, s = assert_same(backend, x, 128, "ue8m0")
    _, sf = reference.quantize_fp8(x, 128, "float")
    mant, _ = torch.frexp(s)
    assert torch.all(mant == 0.5) and torch.all(s >= sf) and torch.all(s < 2 * sf)
    assert s[1, 1] == 2.0**-3 and s[0, 0] == reference.fp8_group_scales(torch.zeros(1), "ue8m0")
    assert torch.all(q[0, :128].float() == 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_round_trip_error(backend):
    x = torch.randn(16, 512, generator=torch.Generator().manual_seed(2)) * 10
    q, s = run(backend, x, 128)
    back = q.float().view(16, 4, 128) * s.unsqueeze(-1)
    rel = (back.view(16, 512) - x).abs() / x.abs().view(16, 4, 128).amax(-1, keepdim=True).expand(
        16, 4, 128
    ).reshape(16, 512)
    assert rel.max() <= 2.0**-4  # half an e4m3 ulp at the top binade, relative to the amax


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_propagates_to_its_group(backend):
    x = torch.randn(2, 256, generator=torch.Generator().manual_seed(3))
    x[0, 5] = float("nan")
    q, s = run(backend, x, 128)
    assert torch.isnan(s[0, 0]) and torch.isnan(q[0, :128].float()).all()
    rq, rs = reference.quantize_fp8(x, 128)
    assert torch.equal(s[:, 1], rs[:, 1]) and torch.equal(s[1], rs[1])
    assert torch.equal(q[1].view(torch.uint8), rq[1].view(torch.uint8))


@pytest.mark.parametrize("backend", BACKENDS)
def test_strided_rows(backend):
    base = torch.randn(6, 300, generator=torch.Generator().manual_seed(4)).bfloat16()
    assert_same(backend, base[::2, 10:266], 128)  # row stride 600, offset columns


@pytest.mark.parametrize("backend", BACKENDS)
def test_errors_name_the_argument(backend):
    f = op(backend, "quantize_fp8")
    x = torch.randn(4, 128).to(device_of(backend))
    with pytest.raises(RuntimeError, match="quantize_fp8: x must be 2-D"):
        f(x.view(2, 2, 128))
    with pytest.raises(RuntimeError, match="quantize_fp8: group_size must be"):
        f(x, 0)
    with pytest.raises(RuntimeError, match="quantize_fp8: scale_format must be"):
        f(x, 128, "e8m0")
    with pytest.raises(RuntimeError, match="quantize_fp8: x must be float32, bfloat16 or float16"):
        f(x.to(torch.int32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend):
    x = torch.randn(4, 200).bfloat16().to(device_of(backend))
    torch.library.opcheck(op(backend, "quantize_fp8"), (x, 128, "ue8m0"))


def test_compile_fullgraph():
    torch._dynamo.reset()
    f = torch.compile(moe_ext.quantize_fp8, fullgraph=True)
    x = torch.randn(8, 256)
    q, s = f(x)
    rq, rs = reference.quantize_fp8(x)
    assert torch.equal(s, rs) and torch.equal(q.view(torch.uint8), rq.view(torch.uint8))
