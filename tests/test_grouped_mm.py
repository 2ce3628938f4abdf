"""grouped_mm: the four torch._grouped_mm forms against reference.py and torch._grouped_mm.

Forms (G groups, offs = int32 cumulative group ends):
  2x3  a[M, K]    @ b[G, K, N] -> [M, N]     rows of a grouped (the expert GEMMs)
  3x2  a[G, M, K] @ b[K, Ntot] -> [M, Ntot]  columns of b grouped (ragged N)
  2x2  a[M, Ktot] @ b[Ktot, N] -> [G, M, N]  reduction dim grouped (ragged K, weight grads)
  3x3  a[G, M, K] @ b[G, K, N] -> [G, M, N]  batched, offs None

Accuracy (STYLE.md rule 14): the fp64 result of reference.py is the ground truth; our error must
be <= 3x the error torch itself makes at the same dtype (torch._grouped_mm where it accepts the
inputs, else a per-group torch.matmul loop) plus one ulp of the output magnitude. fp64 is
compared to the ground truth directly. Positions past offs[-1] must be exactly zero.
"""

from __future__ import annotations

import pytest
import torch
from conftest import BACKENDS, TOL, backends_for, device_of, op, reference

FORMS = ("2x3", "3x2", "2x2", "3x3")
GMM_BACKENDS = backends_for("grouped_mm")
# Autograd and fake kernels are registered for every backend, the emulator's included (its
# backward runs the CUDA kernel source for dA and dB too).
AUTOGRAD_BACKENDS = GMM_BACKENDS
BIG_BACKENDS = [b for b in BACKENDS if b != "emu"]  # covered by test_grouped_gemm_kernel.py
LOW = (torch.bfloat16, torch.float16)


def dtypes_for(backend: str) -> list[torch.dtype]:
    # fp64 is a CPU-only dtype (DESIGN.md, grouped_mm row).
    base = [torch.float32, torch.bfloat16, torch.float16]
    return base + [torch.float64] if backend == "cpu" else base


def backend_dtype_params(dtypes=None, backends=GMM_BACKENDS, emu_dtypes=None):
    """(backend, dtype) pairs; `emu_dtypes` thins the slow emulator's share of a sweep."""
    return [
        pytest.param(b, d, id=f"{b}-{str(d)[6:]}")
        for b in backends
        for d in dtypes_for(b)
        if (dtypes is None or d in dtypes) and (b != "emu" or emu_dtypes is None or d in emu_dtypes)
    ]


# --------------------------------------------------------------------------------------------
# input construction
# --------------------------------------------------------------------------------------------

RAGGED_DIM = {"2x3": "M", "3x2": "N", "2x2": "K", "3x3": None}


def group_sizes(total: int, G: int, kind: str) -> list[int]:
    """G non-negative group sizes summing to `total` ("tail": to less than total)."""
    if total == 0 or kind == "zero":
        return [0] * G
    if kind == "even":
        return [total // G + (1 if g < total % G else 0) for g in range(G)]
    if kind in ("tail", "empty_tail"):  # offs[-1] < total: the last rows/cols/ks are unowned
        total = total - max(1, total // 4)
        kind = "uneven" if kind == "tail" else "empty"
    if kind == "uneven":  # random cut points; with G >> total most groups are empty
        cuts = torch.randint(0, total + 1, (G - 1,)).sort().values.tolist()
        bounds = [0, *cuts, total]
        return [bounds[g + 1] - bounds[g] for g in range(G)]
    if kind == "skewed":  # Zipf-like: a few groups get almost everything
        p = 1.0 / torch.arange(1, G + 1, dtype=torch.float64) ** 2
        p = p[torch.randperm(G)]
        idx = torch.multinomial(p, total, replacement=True)
        return torch.bincount(idx, minlength=G).tolist()
    if kind == "one":  # everything in one group, all others empty
        sizes = [0] * G
        sizes[G // 2] = total
        return sizes
    if kind == "empty":  # first, last and every odd group empty (only group 0 if G == 1)
        live = [g for g in range(G) if g % 2 == 0 and 0 < g < G - 1] or [0]
        sizes = [0] * G
        for i in range(total):
            sizes[live[i % len(live)]] += 1
        return sizes
    raise ValueError(kind)


def make_offs(sizes: list[int], device) -> torch.Tensor:
    ends = torch.tensor(sizes, dtype=torch.int64).cumsum(0) if sizes else torch.zeros(0)
    return ends.to(torch.int32).to(device)


def make_mat(shape, dtype, device, layout: str = "contig") -> torch.Tensor:
    """A tensor of logical `shape` whose storage is row-major ("contig"), column-major in the
    last two dims ("t", e.g. w.transpose(-2, -1) of HF [G, N, K] weights) or row-major with a
    padded leading dimension ("padded", a slice of a wider tensor)."""
    *batch, r, c = shape
    if layout == "contig":
        t = torch.randn(*batch, r, c)
    elif layout == "t":
        t = torch.randn(*batch, c, r).transpose(-2, -1)
    elif layout == "padded":
        t = torch.randn(*batch, r, c + 8)[..., :c]
    else:
        raise ValueError(layout)
    return t.to(device=device, dtype=dtype)


def make_inputs(form, G, M, K, N, kind, dtype, device, a_layout="contig", b_layout="contig"):
    dims = {"M": M, "K": K, "N": N}
    rag = RAGGED_DIM[form]
    if kind == "ragged0" and rag is not None:
        dims[rag] = 0
    M, K, N = dims["M"], dims["K"], dims["N"]
    a_shape = {"2x3": (M, K), "3x2": (G, M, K), "2x2": (M, K), "3x3": (G, M, K)}[form]
    b_shape = {"2x3": (G, K, N), "3x2": (K, N), "2x2": (K, N), "3x3": (G, K, N)}[form]
    a = make_mat(a_shape, dtype, device, a_layout)
    b = make_mat(b_shape, dtype, device, b_layout)
    offs = None if rag is None else make_offs(group_sizes(dims[rag], G, kind), device)
    return a, b, offs


def make_bias(form, a, b, offs, dtype):
    G = offs.numel() if offs is not None else a.shape[0]
    n_out = b.shape[-1]
    return torch.randn(G, n_out).to(device=a.device, dtype=dtype)


# --------------------------------------------------------------------------------------------
# oracles and comparison
# --------------------------------------------------------------------------------------------


def ref(a, b, offs=None, bias=None, out_dtype=None, dtype=None):
    """reference.grouped_mm on CPU copies; `dtype` recasts a, b and bias first (fp64 truth)."""
    cast = (lambda t: t.cpu().to(dtype)) if dtype is not None else (lambda t: t.cpu())
    return reference.grouped_mm(
        cast(a),
        cast(b),
        None if offs is None else offs.cpu(),
        None if bias is None else cast(bias),
        out_dtype,
    )


def torch_grouped_mm_or_none(a, b, offs):
    """torch._grouped_mm where it accepts the inputs (it needs 16-byte aligned strides, no
    fp64); positions past offs[-1] are left uninitialised by it on CPU, so callers mask them."""
    try:
        return torch._grouped_mm(a, b, offs)
    except (RuntimeError, NotImplementedError):
        return None


def torch_matmul_loop(a, b, offs, bias, work):
    """The grouped GEMM written with plain torch.matmul calls in dtype `work`."""
    A, B = a.to(work), b.to(work)
    Bi = None if bias is None else bias.to(work)
    ends = [] if offs is None else offs.tolist()
    bounds = [0, *ends]
    if a.dim() == 2 and b.dim() == 3:
        out = torch.zeros(a.shape[0], b.shape[2], dtype=work, device=a.device)
        for g in range(b.shape[0]):
            lo, hi = bounds[g], bounds[g + 1]
            out[lo:hi] = A[lo:hi] @ B[g] if Bi is None else A[lo:hi] @ B[g] + Bi[g]
    elif a.dim() == 3 and b.dim() == 2:
        out = torch.zeros(a.shape[1], b.shape[1], dtype=work, device=a.device)
        for g in range(a.shape[0]):
            lo, hi = bounds[g], bounds[g + 1]
            y = A[g] @ B[:, lo:hi]
            out[:, lo:hi] = y if Bi is None else y + Bi[g, lo:hi]
    elif a.dim() == 2 and b.dim() == 2:
        out = torch.zeros(len(ends), a.shape[0], b.shape[1], dtype=work, device=a.device)
        for g in range(len(ends)):
            lo, hi = bounds[g], bounds[g + 1]
            y = A[:, lo:hi] @ B[lo:hi]
            out[g] = y if Bi is None else y + Bi[g]
    else:
        out = torch.bmm(A, B)
        if Bi is not None:
            out = out + Bi.unsqueeze(1)
    return out


def valid_mask(form, out_shape, offs) -> torch.Tensor:
    """True where the output belongs to some group (False past offs[-1])."""
    mask = torch.ones(out_shape, dtype=torch.bool)
    if offs is not None and offs.numel() > 0:
        end = int(offs[-1])
        if form == "2x3":
            mask[end:] = False
        elif form == "3x2":
            mask[:, end:] = False
    return mask


def torch_baseline(form, a, b, offs, bias, out_dtype):
    """What torch itself computes at this precision, in the output dtype."""
    od = out_dtype or a.dtype
    work = torch.promote_types(a.dtype, od)
    out = None
    if work == a.dtype and bias is None and a.dtype != torch.float64:
        out = torch_grouped_mm_or_none(a, b, offs)
        if out is not None:
            out = torch.where(valid_mask(form, out.shape, offs).to(out.device), out, 0)
    if out is None:
        out = torch_matmul_loop(a, b, offs, bias, work)
    return out.to(od).cpu()


def ulp_scale(t: torch.Tensor, dtype) -> float:
    return torch.finfo(dtype).eps * max(1.0, t.abs().max().item() if t.numel() else 0.0)


def check_gemm(form, out, a, b, offs=None, bias=None, out_dtype=None):
    """All the checks on one grouped_mm output."""
    od = out_dtype or a.dtype
    expect = ref(a, b, offs, bias, out_dtype)
    assert out.dtype == od
    assert out.device == a.device
    assert out.shape == expect.shape
    out = out.cpu()
    truth = ref(a, b, offs, bias, dtype=torch.float64)
    mask = valid_mask(form, out.shape, offs)
    # past offs[-1]: exactly zero (not even bias)
    assert torch.all(out[~mask] == 0), "rows/columns past offs[-1] must be zero"
    if out.numel() == 0:
        return
    assert torch.isfinite(out).all()
    if od == torch.float64:
        torch.testing.assert_close(out, truth, **TOL[torch.float64])
        return
    scale = max(1.0, truth.abs().max().item())
    tol = TOL[od]
    torch.testing.assert_close(out, expect, rtol=tol["rtol"], atol=tol["atol"] * scale)
    base = torch_baseline(form, a, b, offs, bias, out_dtype)
    assert_error_within(out, base, truth, od)


def assert_error_within(out, base, truth, od):
    """Max error <= 3x torch's (+1/8 ulp at the output's scale, for exactly representable
    results); for bf16/fp16 outputs also mean error <= 1.5x torch's: a kernel that rounds
    partial sums to the output dtype passes the max test on short sums but not this one."""
    err = (out.double() - truth).abs()
    base_err = (base.double() - truth).abs()
    slack = ulp_scale(truth, od) / 8
    assert err.max() <= 3 * base_err.max() + slack, (
        f"max error {err.max():.3g} vs torch's own {base_err.max():.3g} at {od}"
    )
    if od in LOW:
        assert err.mean() <= 1.5 * base_err.mean() + slack / 128, (
            f"mean error {err.mean():.3g} vs torch's own {base_err.mean():.3g} at {od}"
        )


# --------------------------------------------------------------------------------------------
# forward: forms x dtypes x shapes
# --------------------------------------------------------------------------------------------

# (id, G, M, K, N, group-size kind); the ragged dim of the form is split into groups.
SHAPES = [
    ("g1", 1, 24, 16, 32, "even"),
    ("g4_uneven", 4, 40, 24, 16, "uneven"),
    ("g8_skewed", 8, 64, 16, 24, "skewed"),
    ("one_group", 4, 24, 16, 16, "one"),
    ("empty_groups", 8, 32, 16, 24, "empty"),
    ("tail", 4, 40, 16, 16, "tail"),  # offs[-1] < M (Ntot, Ktot)
    ("all_empty", 4, 24, 16, 16, "zero"),  # every group empty (K = 0 for 2x2)
    ("ragged0", 4, 24, 16, 16, "ragged0"),  # the ragged dim itself is 0
    ("m0", 4, 0, 16, 16, "uneven"),  # M = 0 in every form
    ("odd_kn", 4, 21, 7, 13, "uneven"),  # K, N not multiples of 8
    ("g128_sparse", 128, 48, 8, 16, "uneven"),  # most of 128 groups empty
]


@pytest.mark.parametrize("shape", SHAPES, ids=[s[0] for s in SHAPES])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("backend,dtype", backend_dtype_params())
def test_forward(backend, dtype, form, shape):
    _, G, M, K, N, kind = shape
    a, b, offs = make_inputs(form, G, M, K, N, kind, dtype, device_of(backend))
    out = op(backend, "grouped_mm")(a, b, offs)
    check_gemm(form, out, a, b, offs)


@pytest.mark.parametrize("backend,dtype", backend_dtype_params(backends=BIG_BACKENDS))
def test_forward_large_2x3(backend, dtype):
    """A realistic expert GEMM: 512 rows over 8 experts, K=256, N=384."""
    a, b, offs = make_inputs("2x3", 8, 512, 256, 384, "skewed", dtype, device_of(backend))
    out = op(backend, "grouped_mm")(a, b, offs)
    check_gemm("2x3", out, a, b, offs)


@pytest.mark.parametrize("layouts", ["a_t", "b_t", "both_t", "padded"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    "backend,dtype",
    backend_dtype_params((torch.float32, torch.bfloat16), emu_dtypes=(torch.bfloat16,)),
)
def test_strided_inputs(backend, dtype, form, layouts):
    """Views with the inner dim contiguous in either orientation, used without a copy."""
    a_lay = {"a_t": "t", "b_t": "contig", "both_t": "t", "padded": "padded"}[layouts]
    b_lay = {"a_t": "contig", "b_t": "t", "both_t": "t", "padded": "padded"}[layouts]
    a, b, offs = make_inputs(form, 4, 40, 24, 16, "tail", dtype, device_of(backend), a_lay, b_lay)
    out = op(backend, "grouped_mm")(a, b, offs)
    check_gemm(form, out, a, b, offs)


@pytest.mark.parametrize("shape", ["g4_uneven", "empty_groups", "tail", "all_empty", "odd_kn"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("backend,dtype", backend_dtype_params(emu_dtypes=(torch.bfloat16,)))
def test_bias(backend, dtype, form, shape):
    _, G, M, K, N, kind = next(s for s in SHAPES if s[0] == shape)
    a, b, offs = make_inputs(form, G, M, K, N, kind, dtype, device_of(backend))
    bias = make_bias(form, a, b, offs, dtype)
    out = op(backend, "grouped_mm")(a, b, offs, bias)
    check_gemm(form, out, a, b, offs, bias)


@pytest.mark.parametrize("backend", GMM_BACKENDS)
def test_bias_semantics_by_hand(backend):
    """Pin the bias convention per form on tiny integer data (exact in every dtype)."""
    dev = device_of(backend)

    def f(a, b, offs, bias):
        out = op(backend, "grouped_mm")(a.to(dev), b.to(dev), offs.to(dev), bias.to(dev))
        return out.cpu()

    a = torch.ones(3, 2)
    offs = torch.tensor([1, 1, 3], dtype=torch.int32)
    # 2x3: row r of group g gets bias[g]; group 1 is empty; no row past offs[-1]
    out = f(a, torch.zeros(3, 2, 2), offs, torch.tensor([[1.0, 2], [3, 4], [5, 6]]))
    assert torch.equal(out, torch.tensor([[1.0, 2], [5, 6], [5, 6]]))
    # 3x2 ragged N: column c of group g gets bias[g, c]
    bias = torch.arange(1.0, 13.0).view(3, 4)
    out = f(torch.ones(3, 2, 2), torch.zeros(2, 4), offs, bias)
    assert torch.equal(out, torch.tensor([[1.0, 10, 11, 0], [1, 10, 11, 0]]))
    # 2x2 ragged K: out[g] += bias[g], including the K = 0 group 1
    out = f(torch.ones(2, 3), torch.ones(3, 2), offs, torch.tensor([[1.0, 2], [3, 4], [5, 6]]))
    assert torch.equal(out[1], torch.tensor([[3.0, 4], [3, 4]]))
    assert torch.equal(out[2], torch.tensor([[7.0, 8], [7, 8]]))


@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    "in_dtype,out_dtype",
    [
        (torch.bfloat16, torch.float32),
        (torch.float16, torch.float32),
        (torch.float32, torch.bfloat16),
    ],
    ids=["bf16-fp32", "fp16-fp32", "fp32-bf16"],
)
@pytest.mark.parametrize("backend", GMM_BACKENDS)
def test_out_dtype(backend, in_dtype, out_dtype, form, with_bias):
    a, b, offs = make_inputs(form, 4, 40, 24, 16, "tail", in_dtype, device_of(backend))
    bias = make_bias(form, a, b, offs, in_dtype) if with_bias else None
    out = op(backend, "grouped_mm")(a, b, offs, bias, out_dtype)
    check_gemm(form, out, a, b, offs, bias, out_dtype)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    "backend,dtype", backend_dtype_params(dtypes=(torch.float32, torch.bfloat16, torch.float16))
)
def test_matches_torch_grouped_mm(backend, dtype, form):
    """Direct comparison with torch._grouped_mm on shapes it accepts (inside offs[-1])."""
    device = device_of(backend)
    a_lay = "t" if form == "2x2" else "contig"  # 2x2 needs a column-major a (16-byte strides)
    a, b, offs = make_inputs(form, 4, 32, 16, 24, "tail", dtype, device, a_lay, "contig")
    expect = torch_grouped_mm_or_none(a, b, offs)
    if expect is None:
        if device == "cpu":
            pytest.fail("torch._grouped_mm rejected inputs it accepts on CPU in torch 2.14")
        pytest.skip(f"torch._grouped_mm does not take {dtype} on this device")
    out = op(backend, "grouped_mm")(a, b, offs)
    mask = valid_mask(form, out.shape, offs).to(out.device)
    scale = max(1.0, expect.abs().max().item())
    tol = TOL[dtype]
    torch.testing.assert_close(
        out[mask].float(), expect[mask].float(), rtol=tol["rtol"], atol=tol["atol"] * scale
    )


@pytest.mark.parametrize("backend", GMM_BACKENDS)
def test_ignores_data_outside_groups(backend):
    """Data no group owns (rows/cols/ks past offs[-1]) is never read: NaN there is harmless."""
    dev = device_of(backend)

    def f(a, b, offs):
        return op(backend, "grouped_mm")(a.to(dev), b.to(dev), offs.to(dev)).cpu()

    offs = torch.tensor([3, 3, 6], dtype=torch.int32)
    # 2x3: a rows 6.. are NaN
    a, b = torch.randn(9, 8), torch.randn(3, 8, 5)
    a[6:] = float("nan")
    out = f(a, b, offs)
    assert torch.all(out[6:] == 0) and torch.isfinite(out[:6]).all()
    torch.testing.assert_close(out, ref(a, b, offs))
    # 3x2: b columns 6.. are NaN
    a, b = torch.randn(3, 4, 8), torch.randn(8, 9)
    b[:, 6:] = float("nan")
    out = f(a, b, offs)
    assert torch.all(out[:, 6:] == 0) and torch.isfinite(out[:, :6]).all()
    torch.testing.assert_close(out, ref(a, b, offs))
    # 2x2: a columns and b rows 6.. are NaN
    a, b = torch.randn(4, 9), torch.randn(9, 5)
    a[:, 6:] = float("nan")
    b[6:] = float("nan")
    out = f(a, b, offs)
    assert torch.isfinite(out).all() and torch.all(out[1] == 0)
    torch.testing.assert_close(out, ref(a[:, :6], b[:6], offs))


@pytest.mark.parametrize("backend", GMM_BACKENDS)
def test_deterministic(backend):
    """Same inputs give bit-identical outputs, also under use_deterministic_algorithms."""
    device = device_of(backend)
    f = op(backend, "grouped_mm")
    big = backend != "emu"
    M, K, N = (512, 256, 384) if big else (64, 32, 48)
    a, b, offs = make_inputs("2x3", 8, M, K, N, "skewed", torch.bfloat16, device)
    # 2x2 (the weight-gradient form) reduces over many rows: the likeliest place for atomics
    at, dy, offs_k = make_inputs("2x2", 8, K, M, N, "uneven", torch.float32, device, "t")
    first = (f(a, b, offs), f(at, dy, offs_k))
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        second = (f(a, b, offs), f(at, dy, offs_k))
    finally:
        torch.use_deterministic_algorithms(prev)
    third = (f(a, b, offs), f(at, dy, offs_k))
    for x, y, z in zip(first, second, third):
        assert torch.equal(x, y) and torch.equal(x, z)


def test_wrapper_matches_op():
    import moe_ext

    a, b, offs = make_inputs("2x3", 4, 40, 24, 16, "tail", torch.float32, "cpu")
    bias = make_bias("2x3", a, b, offs, torch.float32)
    got = moe_ext.grouped_mm(a, b, offs, bias=bias, out_dtype=torch.bfloat16)
    assert torch.equal(got, torch.ops.moe_ext.grouped_mm(a, b, offs, bias, torch.bfloat16))


# --------------------------------------------------------------------------------------------
# autograd
# --------------------------------------------------------------------------------------------


def leaf(t: torch.Tensor) -> torch.Tensor:
    """A leaf requiring grad with t's strides (transposed views stay transposed)."""
    return t.detach().clone(memory_format=torch.preserve_format).requires_grad_()


def grads_of(fn, a, b, bias, gout):
    a, b = leaf(a), leaf(b)
    bias = None if bias is None else leaf(bias)
    out = fn(a, b, bias)
    (out.float() * gout).sum().backward()
    return out, a.grad, b.grad, None if bias is None else bias.grad


@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    "backend,dtype", backend_dtype_params((torch.float32, torch.bfloat16), AUTOGRAD_BACKENDS)
)
def test_backward(backend, dtype, form, with_bias):
    """Grads to a, b, bias vs autograd through reference.grouped_mm in fp32."""
    device = device_of(backend)
    b_lay = "t" if form in ("2x3", "3x3") else "contig"  # HF [G, N, K] weights, transposed
    a_lay = "t" if form == "2x2" else "contig"
    a, b, offs = make_inputs(form, 8, 40, 24, 16, "empty_tail", dtype, device, a_lay, b_lay)
    bias = make_bias(form, a, b, offs, dtype) if with_bias else None
    out_shape = ref(a, b, offs).shape
    gout = torch.randn(out_shape, device=device).to(dtype).float()  # exact in dtype

    f = op(backend, "grouped_mm")
    out, ga, gb, gbias = grads_of(lambda x, y, z: f(x, y, offs, z), a, b, bias, gout)
    assert out.dtype == dtype
    cpu_offs = None if offs is None else offs.cpu()
    fp32 = [t.float().cpu() for t in (a, b)]
    rb = None if bias is None else bias.float().cpu()
    _, ra, rbb, rbias = grads_of(
        lambda x, y, z: reference.grouped_mm(x, y, cpu_offs, z), *fp32, rb, gout.cpu()
    )
    ours = [ga, gb] + ([gbias] if with_bias else [])
    theirs = [ra, rbb] + ([rbias] if with_bias else [])
    if dtype == torch.float32:
        for g, r in zip(ours, theirs):
            assert g.dtype == torch.float32 and g.shape == r.shape
            scale = max(1.0, r.abs().max().item())
            torch.testing.assert_close(g.cpu(), r, rtol=1e-5, atol=1e-5 * scale)
        return
    # bf16: within 3x the error of the ideal bf16 grads (fp32 accumulation, one rounding),
    # which autograd through reference.grouped_mm with bf16 inputs computes.
    lo = [t.cpu() for t in (a, b)]
    lb = None if bias is None else bias.cpu()
    _, la, lbb, lbias = grads_of(
        lambda x, y, z: reference.grouped_mm(x, y, cpu_offs, z), *lo, lb, gout.cpu()
    )
    ideal = [la, lbb] + ([lbias] if with_bias else [])
    for name, g, r, i in zip(("a", "b", "bias"), ours, theirs, ideal):
        assert g.dtype == dtype and g.shape == r.shape, name
        assert torch.isfinite(g).all(), name
        assert_error_within(g.cpu(), i, r.double(), dtype)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
def test_empty_groups_get_zero_grad(backend, form):
    """Zero-token experts (and K = 0 groups, data past offs[-1]) get exactly zero grads."""
    device = device_of(backend)
    f = op(backend, "grouped_mm")
    G = 4
    offs = torch.tensor([0, 5, 5, 9], dtype=torch.int32, device=device)  # groups 0, 2 empty
    if form == "2x3":
        a, b = torch.randn(12, 8), torch.randn(G, 8, 6)  # rows 9.. belong to no group
    elif form == "3x2":
        a, b = torch.randn(G, 6, 8), torch.randn(8, 12)
    elif form == "2x2":
        a, b = torch.randn(6, 12), torch.randn(12, 8)
    else:
        offs = None
        a, b = torch.randn(G, 0, 8), torch.randn(G, 8, 6)  # M = 0: every grad is zero
    a, b = a.to(device), b.to(device)
    bias = make_bias(form, a, b, offs, torch.float32)
    gout = torch.randn(ref(a, b, offs).shape, device=device)
    _, ga, gb, gbias = grads_of(lambda x, y, z: f(x, y, offs, z), a, b, bias, gout)
    for g in (ga, gb, gbias):
        assert torch.isfinite(g).all()
    if form == "2x3":
        assert torch.all(gb[[0, 2]] == 0) and torch.all(gbias[[0, 2]] == 0)
        assert torch.all(ga[9:] == 0)
    elif form == "3x2":
        assert torch.all(ga[[0, 2]] == 0)
        assert torch.all(gb[:, 9:] == 0) and torch.all(gbias[:, 9:] == 0)
        # bias[g, c] only for columns c of group g
        assert torch.all(gbias[0] == 0) and torch.all(gbias[1, 5:] == 0)
    elif form == "2x2":
        assert torch.all(ga[:, 9:] == 0) and torch.all(gb[9:] == 0)
        torch.testing.assert_close(gbias, gout.sum(1))
    else:
        assert torch.all(ga == 0) and torch.all(gb == 0) and torch.all(gbias == 0)


# small shapes with an empty group and data past offs[-1]: (a shape, b shape, offs)
GRADCHECK_CASES = {
    "2x3": ((7, 3), (3, 3, 4), [2, 2, 5]),
    "3x2": ((3, 3, 4), (4, 7), [2, 2, 5]),
    "2x2": ((3, 7), (7, 4), [2, 2, 5]),
    "3x3": ((2, 3, 4), (2, 4, 5), None),
}


@pytest.mark.parametrize("b_t", [False, True], ids=["b", "bT"])
@pytest.mark.parametrize("form", FORMS)
def test_gradcheck_fp64(form, b_t):
    a_shape, b_shape, ends = GRADCHECK_CASES[form]
    a = torch.randn(a_shape, dtype=torch.float64, requires_grad=True)
    b = make_mat(b_shape, torch.float64, "cpu", "t" if b_t else "contig").requires_grad_()
    offs = None if ends is None else torch.tensor(ends, dtype=torch.int32)
    G = len(ends) if ends is not None else a_shape[0]
    bias = torch.randn(G, b_shape[-1], dtype=torch.float64, requires_grad=True)
    f = torch.ops.moe_ext.grouped_mm
    assert torch.autograd.gradcheck(lambda x, y, z: f(x, y, offs, z), (a, b, bias))
    assert torch.autograd.gradcheck(lambda x, y: f(x, y, offs), (a, b))


# --------------------------------------------------------------------------------------------
# opcheck (schema, fake kernel, autograd registration, AOT dispatch), ~2 s per input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("backend", AUTOGRAD_BACKENDS)
def test_opcheck(backend, form):
    device = device_of(backend)
    a_lay = "t" if form == "2x2" else "contig"
    a, b, offs = make_inputs(form, 4, 16, 8, 8, "tail", torch.float32, device, a_lay)
    bias = make_bias(form, a, b, offs, torch.float32) if form in ("2x3", "3x2") else None
    args = (a.requires_grad_(), b.requires_grad_(), offs)
    kwargs = {"bias": None if bias is None else bias.requires_grad_()}
    torch.library.opcheck(torch.ops.moe_ext.grouped_mm.default, args, kwargs)
