"""Fake (meta) kernels: output shapes, dtypes and strides without touching data.

They let ``torch.compile`` trace the ops with symbolic T. Every output shape depends only on
input shapes (DESIGN.md principle 1), so no data-dependent symbols appear. Outputs are
contiguous, as the real kernels produce.
"""

from __future__ import annotations

import torch

from . import _C
from .reference import SCORE_FUNCS
from .reference import acc_dtype as _acc_dtype


def _check_score_func(op, score_func):
    # the same message as the C++ check (checks.cpp), so eager and compiled calls fail alike
    if score_func not in SCORE_FUNCS:
        raise RuntimeError(
            f'moe_ext.{op}: score_func must be "softmax", "sigmoid" or "sqrtsoftplus", '
            f'got "{score_func}"'
        )


def _route_fake(
    logits,
    top_k,
    score_func="softmax",
    renormalize=True,
    correction_bias=None,
    num_groups=1,
    topk_groups=1,
    scaling_factor=1.0,
):
    torch._check(
        logits.dim() == 2, lambda: f"moe_ext.route: logits must be 2-D, got {logits.dim()}-D"
    )
    _check_score_func("route", score_func)
    T = logits.shape[0]
    weights = logits.new_empty((T, top_k), dtype=_acc_dtype(logits.dtype))
    ids = logits.new_empty((T, top_k), dtype=torch.int32)
    return weights, ids


def _sort_tokens_fake(ids, num_experts, capacity=None):
    N = ids.numel()
    order = ids.new_empty((N,), dtype=torch.int32)
    slot = ids.new_empty((N,), dtype=torch.int32)
    offsets = ids.new_empty((num_experts,), dtype=torch.int32)
    return order, slot, offsets


def _permute_fake(x, order, slot, top_k):
    return x.new_empty((order.shape[0], x.shape[1]))


def _unpermute_fake(yp, order, slot, weights):
    return yp.new_empty((weights.shape[0], yp.shape[1]))


def _grouped_mm_fake(a, b, offs=None, bias=None, out_dtype=None):
    dtype = out_dtype or a.dtype
    if a.dim() == 2 and b.dim() == 3:
        shape = (a.shape[0], b.shape[2])
    elif a.dim() == 3 and b.dim() == 2:
        shape = (a.shape[1], b.shape[1])
    elif a.dim() == 2 and b.dim() == 2:
        torch._check(offs is not None, lambda: "moe_ext.grouped_mm: offs is required")
        shape = (offs.shape[0], a.shape[0], b.shape[1])
    else:
        shape = (a.shape[0], a.shape[1], b.shape[2])
    return a.new_empty(shape, dtype=dtype)


def _route_with_stats_fake(
    logits,
    top_k,
    score_func="softmax",
    renormalize=True,
    correction_bias=None,
    num_groups=1,
    topk_groups=1,
    scaling_factor=1.0,
):
    weights, ids = _route_fake(logits, top_k, score_func)
    E = logits.shape[1]
    counts = logits.new_empty((E,), dtype=torch.int32)
    mean_prob = logits.new_empty((E,), dtype=_acc_dtype(logits.dtype))
    return weights, ids, counts, mean_prob


def _route_backward_fake(
    grad_weights, logits, ids, score_func, renormalize, scaling_factor, grad_mean_prob=None
):
    _check_score_func("route_backward", score_func)
    return torch.empty_like(logits, memory_format=torch.contiguous_format)


def _moe_mlp_fake(
    x, w1, w2, weights, order, slot, offsets, activation="swiglu", activation_limit=None
):
    return x.new_empty(x.shape)


def _moe_mlp_save_h_fake(
    x, w1, w2, weights, order, slot, offsets, activation="swiglu", activation_limit=None
):
    return x.new_empty(x.shape), x.new_empty((order.shape[0], w1.shape[1]))


def _moe_mlp_backward_fake(
    grad_y,
    x,
    w1,
    w2,
    weights,
    order,
    slot,
    offsets,
    activation="swiglu",
    activation_limit=None,
    h=None,
):
    return (
        x.new_empty(x.shape),
        w1.new_empty(w1.shape),
        w2.new_empty(w2.shape),
        weights.new_empty(weights.shape),
    )


def _quantize_fp8_fake(x, group_size=128, scale_format="float"):
    torch._check(x.dim() == 2, lambda: f"moe_ext.quantize_fp8: x must be 2-D, got {tuple(x.shape)}")
    torch._check(group_size >= 1, lambda: "moe_ext.quantize_fp8: group_size must be >= 1")
    groups = (x.shape[1] + group_size - 1) // group_size
    return (
        x.new_empty(x.shape, dtype=torch.float8_e4m3fn),
        x.new_empty((x.shape[0], groups), dtype=torch.float32),
    )


def _grouped_mm_fp8_fake(a, a_scale, b, b_scale, offs=None, out_dtype=torch.bfloat16):
    torch._check(
        b.dim() == 3, lambda: f"moe_ext.grouped_mm_fp8: b must be [G, N, K], got {tuple(b.shape)}"
    )
    if offs is None:
        shape = (b.shape[0], a.shape[1], b.shape[1])
    else:
        shape = (a.shape[0], b.shape[1])
    return a.new_empty(shape, dtype=out_dtype)


def _moe_mlp_fp8_fake(
    x, w1, w1_scale, w2, w2_scale, weights, order, slot, offsets, activation="swiglu"
):
    return x.new_empty(x.shape)


def _moe_mlp_fp8_save_fake(
    x, w1, w1_scale, w2, w2_scale, weights, order, slot, offsets, activation="swiglu"
):
    N = order.shape[0]
    return x.new_empty(x.shape), x.new_empty((N, w1.shape[1])), x.new_empty((N, x.shape[1]))


def _unpermute_backward_fake(grad_y, yp, order, slot, weights):
    return yp.new_empty(yp.shape), weights.new_empty(weights.shape)


def _route_weights_fake(logits, ids, score_func="softmax", renormalize=True, scaling_factor=1.0):
    torch._check(
        ids.dim() == 2 and ids.shape[0] == logits.shape[0],
        lambda: f"moe_ext.route_weights: ids must be [T, k], got {tuple(ids.shape)}",
    )
    return logits.new_empty(tuple(ids.shape), dtype=_acc_dtype(logits.dtype))


_FAKES = {
    "route_weights": _route_weights_fake,
    "unpermute_backward": _unpermute_backward_fake,
    "moe_mlp": _moe_mlp_fake,
    "moe_mlp_backward": _moe_mlp_backward_fake,
    "moe_mlp_save_h": _moe_mlp_save_h_fake,
    "quantize_fp8": _quantize_fp8_fake,
    "grouped_mm_fp8": _grouped_mm_fp8_fake,
    "moe_mlp_fp8": _moe_mlp_fp8_fake,
    "moe_mlp_fp8_save": _moe_mlp_fp8_save_fake,
    "route": _route_fake,
    "route_with_stats": _route_with_stats_fake,
    "route_backward": _route_backward_fake,
    "sort_tokens": _sort_tokens_fake,
    "permute": _permute_fake,
    "unpermute": _unpermute_fake,
    "grouped_mm": _grouped_mm_fake,
}


def _one_device(name: str, fake):
    """The fake kernel behind a device check: meta (or fake) tensors mixed with tensors of
    another device are an error naming the op and the arguments, as the real kernels' checks."""
    import functools
    import inspect

    params = list(inspect.signature(fake).parameters)

    @functools.wraps(fake)
    def checked(*args, **kwargs):
        seen = None
        for arg_name, value in [*zip(params, args), *kwargs.items()]:
            if isinstance(value, torch.Tensor):
                if seen is None:
                    seen = (arg_name, value.device)
                elif value.device != seen[1]:
                    raise RuntimeError(
                        f"moe_ext.{name}: {arg_name} is on {value.device} but "
                        f"{seen[0]} is on {seen[1]}: all tensors must be on one "
                        f"device"
                    )
        return fake(*args, **kwargs)

    return checked


def _register(ns: str) -> None:
    ops = getattr(torch.ops, ns)
    for name, fake in _FAKES.items():
        if hasattr(ops, name):
            torch.library.register_fake(f"{ns}::{name}", _one_device(name, fake))


_register("moe_ext")
if _C.build_info()["emulator"]:
    _register("moe_ext_emu")
