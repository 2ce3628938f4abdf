"""Bad input is loud (DESIGN.md principle 5): every op raises an error naming the argument.

Metadata checks (dtype, rank, shape, device) run on every backend. Value checks (ids in range,
offs monotone, NaN logits) read tensor contents, which on CUDA would sync, so they are required
on CPU tensors only (cpu and emu backends).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import BACKENDS, backends_for, device_of, op, reference

import moe_ext

ERRORS = (RuntimeError, ValueError, TypeError)
HAS_CUDA = "cuda" in BACKENDS
T, E, K, H = 4, 8, 2, 16


def f32(*shape, dev="cpu"):
    return torch.randn(*shape, device=dev)


def ints(*shape, dev="cpu", high=E):
    return torch.randint(0, high, shape, dtype=torch.int32, device=dev)


def sorted_rows(dev):
    """Valid (ids, order, slot, offsets) for T tokens, K experts each."""
    ids = torch.stack([torch.randperm(E)[:K] for _ in range(T)]).to(torch.int32)
    order, slot, offsets = reference.sort_tokens(ids, E)
    return ids.to(dev), order.to(dev), slot.to(dev), offsets.to(dev)


def i32(values, dev):
    return torch.tensor(values, dtype=torch.int32, device=dev)


# Each case: (id, op name, call(f, dev), regex the message must match, value check?)
# `f` is the op on the backend under test; `dev` its device.
def _route_cases():
    L = f32
    return [
        ("int_logits", lambda f, d: f(ints(T, E, dev=d), K), r"logits", False),
        ("logits_1d", lambda f, d: f(L(E, dev=d), K), r"logits", False),
        ("logits_3d", lambda f, d: f(L(2, T, E, dev=d), K), r"logits", False),
        ("top_k_gt_E", lambda f, d: f(L(T, E, dev=d), E + 1), r"top_k", False),
        ("top_k_0", lambda f, d: f(L(T, E, dev=d), 0), r"top_k", False),
        ("top_k_neg", lambda f, d: f(L(T, E, dev=d), -1), r"top_k", False),
        ("score_func", lambda f, d: f(L(T, E, dev=d), K, "relu"), r"score_func", False),
        (
            "num_groups_not_dividing",
            lambda f, d: f(L(T, E, dev=d), K, "softmax", True, None, 3, 1),
            r"num_groups",
            False,
        ),
        (
            "num_groups_group_size_1",
            lambda f, d: f(L(T, E, dev=d), K, "softmax", True, None, E, 1),
            r"num_groups",
            False,
        ),
        (
            "num_groups_0",
            lambda f, d: f(L(T, E, dev=d), K, "softmax", True, None, 0, 1),
            r"num_groups",
            False,
        ),
        (
            "topk_groups_gt_num_groups",
            lambda f, d: f(L(T, E, dev=d), K, "softmax", True, None, 4, 5),
            r"topk_groups",
            False,
        ),
        (
            "topk_groups_0",
            lambda f, d: f(L(T, E, dev=d), K, "softmax", True, None, 4, 0),
            r"topk_groups",
            False,
        ),
        (
            "correction_bias_shape",
            lambda f, d: f(L(T, E, dev=d), K, "sigmoid", True, L(E + 1, dev=d)),
            r"correction_bias",
            False,
        ),
        (
            "correction_bias_2d",
            lambda f, d: f(L(T, E, dev=d), K, "sigmoid", True, L(1, E, dev=d)),
            r"correction_bias",
            False,
        ),
        (
            "nan_logits",
            lambda f, d: f(L(T, E, dev=d).index_fill_(1, i32([3], d).long(), float("nan")), K),
            r"(?i)logits|nan",
            True,
        ),
    ]


def _sort_cases():
    return [
        ("float_ids", lambda f, d: f(ints(T, K, dev=d).float(), E), r"ids", False),
        ("ids_1d", lambda f, d: f(ints(T * K, dev=d), E), r"ids", False),
        ("ids_3d", lambda f, d: f(ints(2, T, K, dev=d), E), r"ids", False),
        ("num_experts_0", lambda f, d: f(ints(T, K, dev=d), 0), r"num_experts", False),
        ("num_experts_neg", lambda f, d: f(ints(T, K, dev=d), -3), r"num_experts", False),
        ("capacity_neg", lambda f, d: f(ints(T, K, dev=d), E, -1), r"capacity", False),
        ("ids_ge_E", lambda f, d: f(i32([[0, 1], [2, E]], d), E), r"ids", True),
        ("ids_lt_minus1", lambda f, d: f(i32([[0, 1], [-2, 3]], d), E), r"ids", True),
        (
            "ids_int64_ge_E",
            lambda f, d: f(torch.tensor([[0, E + 5]], device=d), E),
            r"ids",
            True,
        ),
    ]


def _permute_cases():
    def call(f, d, x=None, order=None, slot=None, top_k=K):
        _, o, s, _ = sorted_rows(d)
        x = f32(T, H, dev=d) if x is None else x
        return f(x, o if order is None else order(o), s if slot is None else slot(s), top_k)

    return [
        ("x_3d", lambda f, d: call(f, d, x=f32(T, 1, H, dev=d)), r"\bx\b", False),
        ("x_1d", lambda f, d: call(f, d, x=f32(T, dev=d)), r"\bx\b", False),
        ("x_int", lambda f, d: call(f, d, x=ints(T, H, dev=d)), r"\bx\b", False),
        ("x_rows", lambda f, d: call(f, d, x=f32(T + 1, H, dev=d)), r"\bx\b|top_k|order", False),
        ("top_k_0", lambda f, d: call(f, d, top_k=0), r"top_k", False),
        ("top_k_mismatch", lambda f, d: call(f, d, top_k=K + 1), r"\bx\b|top_k|order", False),
        ("order_slot_len", lambda f, d: call(f, d, slot=lambda s: s[:-1]), r"order|slot", False),
        ("order_float", lambda f, d: call(f, d, order=lambda o: o.float()), r"order", False),
        ("slot_int64", lambda f, d: call(f, d, slot=lambda s: s.long()), r"slot", False),
        ("order_2d", lambda f, d: call(f, d, order=lambda o: o.view(T, K)), r"order", False),
        (
            "order_out_of_range",
            lambda f, d: call(f, d, order=lambda o: o.clone().fill_(T * K)),
            r"order",
            True,
        ),
    ]


def _unpermute_cases():
    def call(f, d, yp=None, order=None, slot=None, weights=None):
        _, o, s, _ = sorted_rows(d)
        yp = f32(T * K, H, dev=d) if yp is None else yp
        w = f32(T, K, dev=d) if weights is None else weights
        return f(yp, o if order is None else order(o), s if slot is None else slot(s), w)

    return [
        ("yp_3d", lambda f, d: call(f, d, yp=f32(T * K, 1, H, dev=d)), r"\byp\b", False),
        ("yp_int", lambda f, d: call(f, d, yp=ints(T * K, H, dev=d)), r"\byp\b", False),
        ("yp_rows", lambda f, d: call(f, d, yp=f32(T * K + 1, H, dev=d)), r"\byp\b|order", False),
        ("weights_shape", lambda f, d: call(f, d, weights=f32(T, K + 1, dev=d)), r"weights", False),
        ("weights_1d", lambda f, d: call(f, d, weights=f32(T * K, dev=d)), r"weights", False),
        ("weights_int", lambda f, d: call(f, d, weights=ints(T, K, dev=d)), r"weights", False),
        ("order_slot_len", lambda f, d: call(f, d, order=lambda o: o[:-1]), r"order|slot", False),
        ("slot_float", lambda f, d: call(f, d, slot=lambda s: s.float()), r"slot", False),
        (
            "slot_out_of_range",
            lambda f, d: call(f, d, slot=lambda s: s.clone().fill_(T * K)),
            r"slot",
            True,
        ),
    ]


def _unpermute_backward_cases():
    def call(f, d, grad_y=None, yp=None, order=None, slot=None, weights=None):
        _, o, s, _ = sorted_rows(d)
        gy = f32(T, H, dev=d) if grad_y is None else grad_y
        yp = f32(T * K, H, dev=d) if yp is None else yp
        w = f32(T, K, dev=d) if weights is None else weights
        return f(gy, yp, o if order is None else order(o), s if slot is None else slot(s), w)

    return [
        ("grad_y_1d", lambda f, d: call(f, d, grad_y=f32(T * H, dev=d)), r"grad_y", False),
        ("grad_y_shape", lambda f, d: call(f, d, grad_y=f32(T, H + 1, dev=d)), r"grad_y", False),
        (
            "grad_y_dtype",
            lambda f, d: call(f, d, grad_y=f32(T, H, dev=d).double()),
            r"grad_y",
            False,
        ),
        ("yp_3d", lambda f, d: call(f, d, yp=f32(T * K, 1, H, dev=d)), r"\byp\b", False),
        ("weights_shape", lambda f, d: call(f, d, weights=f32(T, K + 1, dev=d)), r"weights", False),
        ("order_slot_len", lambda f, d: call(f, d, order=lambda o: o[:-1]), r"order|slot", False),
        (
            "order_out_of_range",
            lambda f, d: call(f, d, order=lambda o: o.clone().fill_(-1)),
            r"order\[0\] = -1 is out of range",
            True,
        ),
        (
            "slot_out_of_range",
            lambda f, d: call(f, d, slot=lambda s: s.clone().fill_(T * K)),
            r"slot\[0\] = 8 is out of range",
            True,
        ),
    ]


def _grouped_mm_cases():
    G, M, Kd, N = 4, 12, 16, 8
    AB = r"\ba\b.*\bb\b"  # names both a and b

    def offs(values, d):
        return i32(values, d)

    def ab23(d):  # valid 2x3 operands a[M, K], b[G, K, N]
        return f32(M, Kd, dev=d), f32(G, Kd, N, dev=d)

    ok = [3, 3, 9, 12]
    return [
        (
            "a_1d",
            lambda f, d: f(f32(Kd, dev=d), f32(G, Kd, N, dev=d), offs(ok, d)),
            r"\ba\b",
            False,
        ),
        (
            "b_4d",
            lambda f, d: f(f32(M, Kd, dev=d), f32(1, G, Kd, N, dev=d), offs(ok, d)),
            r"\bb\b",
            False,
        ),
        (
            "a_int",
            lambda f, d: f(ints(M, Kd, dev=d), ints(G, Kd, N, dev=d), offs(ok, d)),
            r"\ba\b",
            False,
        ),
        (
            "ab_dtype_mismatch",
            lambda f, d: f(f32(M, Kd, dev=d), f32(G, Kd, N, dev=d).bfloat16(), offs(ok, d)),
            AB,
            False,
        ),
        (
            "offs_int64",
            lambda f, d: f(*ab23(d), offs(ok, d).long()),
            r"offs",
            False,
        ),
        (
            "offs_2d",
            lambda f, d: f(*ab23(d), offs(ok, d).view(2, 2)),
            r"offs",
            False,
        ),
        (
            "offs_len",
            lambda f, d: f(*ab23(d), offs([3, 9, 12], d)),
            r"offs",
            False,
        ),
        ("offs_missing_2x3", lambda f, d: f(*ab23(d)), r"offs", False),
        (
            "offs_missing_3x2",
            lambda f, d: f(f32(G, M, Kd, dev=d), f32(Kd, N, dev=d)),
            r"offs",
            False,
        ),
        ("offs_missing_2x2", lambda f, d: f(f32(M, Kd, dev=d), f32(Kd, N, dev=d)), r"offs", False),
        (
            "offs_given_3x3",
            lambda f, d: f(f32(G, M, Kd, dev=d), f32(G, Kd, N, dev=d), offs(ok, d)),
            r"offs",
            False,
        ),
        (
            "offs_len_3x2",
            lambda f, d: f(f32(G, M, Kd, dev=d), f32(Kd, N, dev=d), offs([2, 4, 8], d)),
            r"offs",
            False,
        ),
        (
            "K_mismatch_2x3",
            lambda f, d: f(f32(M, Kd, dev=d), f32(G, Kd + 1, N, dev=d), offs(ok, d)),
            AB,
            False,
        ),
        (
            "K_mismatch_3x2",
            lambda f, d: f(f32(G, M, Kd, dev=d), f32(Kd - 1, N, dev=d), offs([2, 4, 6, 8], d)),
            AB,
            False,
        ),
        (
            "K_mismatch_2x2",
            lambda f, d: f(f32(M, Kd, dev=d), f32(Kd + 2, N, dev=d), offs([2, 4, 6, 8], d)),
            AB,
            False,
        ),
        (
            "K_mismatch_3x3",
            lambda f, d: f(f32(G, M, Kd, dev=d), f32(G, Kd + 1, N, dev=d)),
            AB,
            False,
        ),
        (
            "G_mismatch_3x3",
            lambda f, d: f(f32(G, M, Kd, dev=d), f32(G + 1, Kd, N, dev=d)),
            AB,
            False,
        ),
        (
            "bias_cols",
            lambda f, d: f(*ab23(d), offs(ok, d), f32(G, N + 1, dev=d)),
            r"bias",
            False,
        ),
        (
            "bias_rows",
            lambda f, d: f(*ab23(d), offs(ok, d), f32(G + 1, N, dev=d)),
            r"bias",
            False,
        ),
        (
            "bias_1d",
            lambda f, d: f(*ab23(d), offs(ok, d), f32(N, dev=d)),
            r"bias",
            False,
        ),
        (
            "bias_int",
            lambda f, d: f(*ab23(d), offs(ok, d), ints(G, N, dev=d)),
            r"bias",
            False,
        ),
        (
            "bias_3x3_shape",
            lambda f, d: f(f32(G, M, Kd, dev=d), f32(G, Kd, N, dev=d), None, f32(G, M, N, dev=d)),
            r"bias",
            False,
        ),
        (
            "out_dtype_int",
            lambda f, d: f(*ab23(d), offs(ok, d), None, torch.int32),
            r"out_dtype",
            False,
        ),
        (
            "offs_decreasing",
            lambda f, d: f(*ab23(d), offs([3, 9, 5, 12], d)),
            r"offs",
            True,
        ),
        (
            "offs_negative",
            lambda f, d: f(*ab23(d), offs([-1, 3, 9, 12], d)),
            r"offs",
            True,
        ),
        (
            "offs_past_M",
            lambda f, d: f(*ab23(d), offs([3, 3, 9, M + 1], d)),
            r"offs",
            True,
        ),
        (
            "offs_past_Ntot",
            lambda f, d: f(f32(G, M, Kd, dev=d), f32(Kd, N, dev=d), offs([2, 4, 6, N + 1], d)),
            r"offs",
            True,
        ),
        (
            "offs_past_Ktot",
            lambda f, d: f(f32(M, Kd, dev=d), f32(Kd, N, dev=d), offs([2, 4, 6, Kd + 1], d)),
            r"offs",
            True,
        ),
    ]


CASES = {
    "route": _route_cases(),
    "sort_tokens": _sort_cases(),
    "permute": _permute_cases(),
    "unpermute": _unpermute_cases(),
    "unpermute_backward": _unpermute_backward_cases(),
    "grouped_mm": _grouped_mm_cases(),
}


def case(name: str, cid: str):
    return next(c[1] for c in CASES[name] if c[0] == cid)


def _params():
    out = []
    for name, cases in CASES.items():
        for backend in backends_for(name):
            for cid, call, pattern, value_check in cases:
                if value_check and backend in ("cuda", "emu"):
                    continue  # device kernels (emu runs them) check values only with MOE_EXT_DEBUG=1
                out.append(pytest.param(backend, name, call, pattern, id=f"{backend}-{name}-{cid}"))
    return out


@pytest.mark.parametrize("backend,name,call,pattern", _params())
def test_bad_input_raises(backend, name, call, pattern):
    with pytest.raises(ERRORS, match=pattern):
        call(op(backend, name), device_of(backend))


@pytest.mark.parametrize(
    "name,call,prefix",
    [
        ("route", case("route", "top_k_gt_E"), "moe_ext.route: "),
        ("sort_tokens", case("sort_tokens", "ids_ge_E"), "moe_ext.sort_tokens: "),
        ("permute", case("permute", "x_3d"), "moe_ext.permute: "),
        ("unpermute", case("unpermute", "weights_shape"), "moe_ext.unpermute: "),
        # unpermute_backward runs unpermute's checks, under its own name
        (
            "unpermute_backward",
            case("unpermute_backward", "weights_shape"),
            "moe_ext.unpermute_backward: ",
        ),
        (
            "unpermute_backward",
            case("unpermute_backward", "order_out_of_range"),
            "moe_ext.unpermute_backward: ",
        ),
        ("grouped_mm", case("grouped_mm", "offs_int64"), "moe_ext.grouped_mm: "),
    ],
)
def test_message_names_op(name, call, prefix):
    """Messages start with the op's name, so the failing call is obvious in a big model."""
    with pytest.raises(ERRORS) as info:
        call(op("cpu", name), "cpu")
    assert prefix in str(info.value)


@pytest.mark.parametrize(
    "name,call,message",
    [
        (
            "sort_tokens",
            lambda f: f(i32([[0, 1], [2, E]], "cpu"), E),
            f"moe_ext.sort_tokens: ids[1, 1] = {E} is out of range [-1, {E})",
        ),
        (
            "permute",
            lambda f: f(f32(T, H), i32([0, 1, 2, 3, 4, 99, 6, 7], "cpu"), sorted_rows("cpu")[2], K),
            "moe_ext.permute: order[5] = 99 is out of range [0, 8)",
        ),
        (
            "unpermute",
            lambda f: f(
                f32(T * K, H), sorted_rows("cpu")[1], i32([-1] * 7 + [-2], "cpu"), f32(T, K)
            ),
            "moe_ext.unpermute: slot[7] = -2 is out of range [-1, 8)",
        ),
    ],
)
def test_value_errors_name_the_entry(name, call, message):
    """A bad index value is reported by position and value, so it can be found in a big tensor."""
    with pytest.raises(RuntimeError) as info:
        call(op("cpu", name))
    assert message in str(info.value)


@pytest.mark.parametrize("name", ["permute", "unpermute", "moe_mlp"])
def test_order_and_slot_must_be_inverse(name):
    """order/slot that are in range but not sort_tokens' inverse pair (a duplicated row) are
    rejected on CPU: the device kernels would race on the duplicated row."""
    ids = torch.tensor([[0, 1], [1, 0], [0, 1], [1, 0]], dtype=torch.int32)
    order, slot, offsets = moe_ext.sort_tokens(ids, 2)
    bad = order.clone()
    bad[1] = bad[0]  # row 1 repeats row 0's assignment
    x, w = torch.randn(4, 8), torch.rand(4, 2)
    calls = {
        "permute": lambda o: torch.ops.moe_ext.permute(x, o, slot, 2),
        "unpermute": lambda o: torch.ops.moe_ext.unpermute(torch.randn(8, 8), o, slot, w),
        "moe_mlp": lambda o: torch.ops.moe_ext.moe_mlp(
            x, torch.randn(2, 8, 8), torch.randn(2, 8, 4), w, o, slot, offsets
        ),
    }
    calls[name](order)  # the real pair passes
    with pytest.raises(RuntimeError, match=rf"moe_ext.{name}: order and slot are not inverse"):
        calls[name](bad)


# N = T * top_k must stay below 2^31 (order / slot are int32). Stride-0 views give the shapes
# without the memory: the checks reject them on metadata alone, before reading or allocating.
BIG = 2**31


def huge(*shape, dtype=torch.float32, dev="cpu"):
    return torch.zeros((1,) * len(shape), dtype=dtype, device=dev).expand(*shape)


def _too_many_cases():
    def idx(n, d):
        return huge(n, dtype=torch.int32, dev=d)

    return [
        ("sort_tokens", lambda f, d: f(huge(BIG // 2, 2, dtype=torch.int32, dev=d), E), r"\bids\b"),
        ("permute", lambda f, d: f(huge(BIG // 2, 1, dev=d), idx(8, d), idx(8, d), 2), r"\bx\b"),
        (
            "permute",
            lambda f, d: f(huge(1, 1, dev=d), idx(BIG, d), idx(BIG, d), 1),
            r"\bx\b|\border\b",  # order is longer than x's T * top_k; the size check names it
        ),
        (
            "unpermute",
            lambda f, d: f(huge(BIG, 1, dev=d), idx(BIG, d), idx(BIG, d), huge(BIG // 2, 2, dev=d)),
            r"\border\b",
        ),
        (
            "unpermute_backward",
            lambda f, d: f(
                huge(BIG // 2, 1, dev=d),
                huge(BIG, 1, dev=d),
                idx(BIG, d),
                idx(BIG, d),
                huge(BIG // 2, 2, dev=d),
            ),
            r"\border\b",
        ),
    ]


@pytest.mark.parametrize(
    "backend,name,call,pattern",
    [
        pytest.param(b, name, call, pattern, id=f"{b}-{name}-{i}")
        for i, (name, call, pattern) in enumerate(_too_many_cases())
        for b in backends_for(name)
    ],
)
def test_too_many_assignments_raise(backend, name, call, pattern):
    with pytest.raises(RuntimeError, match=r"2\^31") as info:
        call(op(backend, name), device_of(backend))
    assert info.match(pattern)
    assert str(info.value).startswith(f"moe_ext.{name}: ")


def test_just_under_2_pow_31_is_not_rejected_for_size():
    """T * top_k = 2^31 - 1 passes the size check (the call then fails on order's length)."""
    with pytest.raises(RuntimeError) as info:
        op("cpu", "permute")(huge(BIG - 1, 1), i32([0], "cpu"), i32([0], "cpu"), 1)
    assert "order must have N" in str(info.value) and "2^31" not in str(info.value)


@pytest.mark.skipif("emu" not in BACKENDS, reason="needs the emulator")
def test_device_value_checks_under_debug():
    """MOE_EXT_DEBUG=1 turns the device ops' value checks on (the emulator stands for CUDA).
    The flag is read once per process, hence the subprocess."""
    script = textwrap.dedent(
        """
        import torch, moe_ext
        from moe_ext import reference
        emu = torch.ops.moe_ext_emu
        order, slot, _ = reference.sort_tokens(torch.tensor([[0, 1], [1, 2]], dtype=torch.int32), 4)
        bad_order, bad_slot = order.clone(), slot.clone()
        bad_order[1], bad_slot[2] = 99, 4
        x, yp, w = torch.randn(2, 8), torch.randn(4, 8), torch.rand(2, 2)
        calls = [
            lambda: emu.permute(x, bad_order, slot, 2),
            lambda: emu.unpermute(yp, order, bad_slot, w),
            lambda: emu.unpermute_backward(x, yp, bad_order, slot, w),
        ]
        for call in calls:
            try:
                call()
                print("no error")
            except RuntimeError as e:
                print(str(e).splitlines()[0])
        """
    )
    python_dir = os.path.join(os.path.dirname(os.path.dirname(__file__)), "python")
    path = os.pathsep.join(filter(None, [python_dir, os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, MOE_EXT_DEBUG="1", PYTHONPATH=path)
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "moe_ext.permute: order[1] = 99 is out of range [0, 4)",
        "moe_ext.unpermute: slot[2] = 4 is out of range [-1, 4)",
        "moe_ext.unpermute_backward: order[1] = 99 is out of range [0, 4)",
    ]


def test_wrappers_raise_too():
    """The public moe_ext.* wrappers surface the same errors."""
    with pytest.raises(ERRORS, match="top_k"):
        moe_ext.route(f32(T, E), 0)
    with pytest.raises(ERRORS, match="ids"):
        moe_ext.sort_tokens(i32([[0, E]], "cpu"), E)
    with pytest.raises(ERRORS, match="offs"):
        moe_ext.grouped_mm(f32(12, 16), f32(4, 16, 8), i32([3, 3, 9, 12], "cpu").long())


def test_valid_boundaries_do_not_raise():
    """The checks are not over-eager: the extreme legal values pass."""
    r, s = op("cpu", "route"), op("cpu", "sort_tokens")
    r(f32(T, E), E)  # top_k == E
    r(f32(T, E), 1, "sigmoid", False, f32(E), 4, 4)  # topk_groups == num_groups
    r(f32(T, E), K, "softmax", True, None, E // 2, 1)  # group size 2
    s(i32([[0, E - 1], [-1, 3]], "cpu"), E)  # ids in [-1, E)
    s(i32([[0, 1]], "cpu"), E, 0)  # capacity 0
    g = op("cpu", "grouped_mm")
    g(f32(12, 16), f32(4, 16, 8), i32([0, 0, 12, 12], "cpu"))  # offs[-1] == M, empty groups
    g(f32(12, 16), f32(16, 8), i32([0, 16, 16, 16], "cpu"))  # offs[-1] == Ktot


@pytest.mark.skipif(not HAS_CUDA, reason="device mixing needs CUDA")
@pytest.mark.parametrize(
    "name,call,pattern",
    [
        (
            "grouped_mm",
            lambda f: f(f32(12, 16, dev="cuda"), f32(4, 16, 8), i32([3, 3, 9, 12], "cuda")),
            r"\bb\b",
        ),
        (
            "grouped_mm",
            lambda f: f(
                f32(12, 16, dev="cuda"), f32(4, 16, 8, dev="cuda"), i32([3, 3, 9, 12], "cpu")
            ),
            r"offs",
        ),
        (
            "grouped_mm",
            lambda f: f(
                f32(12, 16, dev="cuda"),
                f32(4, 16, 8, dev="cuda"),
                i32([3, 3, 9, 12], "cuda"),
                f32(4, 8),
            ),
            r"bias",
        ),
        (
            "route",
            lambda f: f(f32(T, E, dev="cuda"), K, "sigmoid", True, f32(E)),
            r"correction_bias",
        ),
        (
            "permute",
            lambda f: f(f32(T, H, dev="cuda"), *sorted_rows("cpu")[1:3], K),
            r"order|slot",
        ),
        (
            "unpermute",
            lambda f: f(f32(T * K, H, dev="cuda"), *sorted_rows("cuda")[1:3], f32(T, K)),
            r"weights",
        ),
        ("route", lambda f: f(f32(T, E, dev="cuda").double(), K), r"logits"),
        (
            "grouped_mm",
            lambda f: f(
                f32(12, 16, dev="cuda").double(),
                f32(4, 16, 8, dev="cuda").double(),
                i32([3, 3, 9, 12], "cuda"),
            ),
            r"\ba\b",
        ),
    ],
)
def test_cuda_device_and_dtype_errors(name, call, pattern):
    with pytest.raises(ERRORS, match=pattern):
        call(op("cuda", name))


# ---- the first-hour findings: each error names the op and the argument
def test_layer_input_dtype_and_sizes_are_named():
    import moe_ext as m

    layer = m.MoE(64, 32, 8, 2)
    with pytest.raises(
        TypeError,
        match=r"moe_ext.MoE: x is torch.bfloat16 but the layer's "
        r"parameters are torch.float32",
    ):
        layer(torch.randn(4, 64, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="moe_ext.MoE: ffn_size must be a positive int, got 0"):
        m.MoE(64, 0, 8, 2)
    with pytest.raises(ValueError, match="moe_ext.MoE: num_experts must be a positive int"):
        m.MoE(64, 32, 0, 1)


def test_moe_mlp_blames_w1_for_a_wrong_expert_count():
    import moe_ext as m

    T, H, I, E, k = 6, 16, 8, 4, 2
    w, ids = m.route(torch.randn(T, E), k)
    order, slot, offsets = m.sort_tokens(ids, E)
    with pytest.raises(RuntimeError, match=r"moe_mlp: w1 must be \[E=4 \(offsets' length\)"):
        m.moe_mlp(
            torch.randn(T, H),
            torch.randn(E + 1, 2 * I, H),
            torch.randn(E, H, I),
            w,
            order,
            slot,
            offsets,
        )


def test_non_monotone_offs_names_the_index():
    import moe_ext as m

    a, b = torch.randn(10, 16), torch.randn(3, 16, 8)
    with pytest.raises(RuntimeError, match=r"offs\[1\] = 3 < offs\[0\] = 5"):
        m.grouped_mm(a, b, torch.tensor([5, 3, 10], dtype=torch.int32))


def test_meta_tensors_mixed_with_cpu_tensors_are_rejected():
    import moe_ext as m

    a, b = torch.randn(10, 16), torch.randn(3, 16, 8)
    offs = torch.tensor([3, 6, 10], dtype=torch.int32)
    with pytest.raises(RuntimeError, match=r"moe_ext.grouped_mm: b is on cpu but a is on meta"):
        m.grouped_mm(a.to("meta"), b, offs)
    assert m.grouped_mm(a.to("meta"), b.to("meta"), offs.to("meta")).shape == (10, 8)
