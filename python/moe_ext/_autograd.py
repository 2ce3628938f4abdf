"""Backward formulas, attached to the C++ ops with ``torch.library.register_autograd``.

Each backward is written with moe_ext ops (and a few elementwise torch ops), so it runs on every
backend, is traceable by ``torch.compile`` and never synchronises the device:

* route:      d logits from d weights (softmax / sigmoid / sqrtsoftplus, renormalisation,
              scaling) by the route_backward op (a kernel on CUDA / the emulator, ATen ops on
              CPU); the selection itself is piecewise constant.
* permute:    dx[t] = sum_j dxp[slot[t*k+j]]            -> an unweighted unpermute.
* unpermute:  dyp[i] = w[order[i]] * dy[order[i] // k], dw[t,j] = <dy[t], yp[slot[t*k+j]]>
              -> both from the unpermute_backward op (one fused pass over the sorted rows).
* grouped_mm: dA and dB are grouped_mm calls in another of the four forms (the weight gradient
              of the 2D x 3D form is the 2D x 2D ragged-K form), d bias a per-group row sum.
"""

from __future__ import annotations

import torch

from . import _C, reference
from .reference import acc_dtype as _acc_dtype


def _needs_grad(ctx, i: int) -> bool:
    # needs_input_grad only covers the arguments the caller passed (defaults may be omitted)
    return i < len(ctx.needs_input_grad) and ctx.needs_input_grad[i]


# ---------------------------------------------------------------------------------------- route
def _route_setup(ctx, inputs, output):
    logits, _top_k, score_func, renormalize, _bias, _ng, _tg, scaling_factor = inputs
    ctx.save_for_backward(logits, output[1])
    ctx.score_func = score_func
    ctx.renormalize = renormalize
    ctx.scaling_factor = scaling_factor


def _route_weights_setup(ctx, inputs, output):
    logits, ids, score_func, renormalize, scaling_factor = inputs
    ctx.save_for_backward(logits, ids)
    ctx.args = (score_func, renormalize, scaling_factor)


def _route_weights_backward_for(ns):
    """route_weights' backward: route_backward with the given ids (the same Jacobian)."""
    ops = getattr(torch.ops, ns)

    def backward(ctx, grad_weights):
        logits, ids = ctx.saved_tensors
        dx = ops.route_backward(
            grad_weights.float().contiguous(), logits, ids.to(torch.int32), *ctx.args
        )
        return dx, None, None, None, None

    return backward


def _route_backward_for(ns):
    """Backward of route / route_with_stats: (weights, ids[, counts, mean_prob]) grads."""
    route_backward = getattr(torch.ops, ns).route_backward

    def backward(ctx, grad_weights, _grad_ids, _grad_counts=None, grad_mean_prob=None):
        logits, ids = ctx.saved_tensors
        if grad_weights is None and grad_mean_prob is None:
            return (None,) * 8
        if grad_weights is None:
            grad_weights = torch.zeros(ids.shape, dtype=torch.float32, device=ids.device)
        dx = route_backward(
            grad_weights,
            logits,
            ids,
            ctx.score_func,
            ctx.renormalize,
            ctx.scaling_factor,
            grad_mean_prob,
        )
        return dx, None, None, None, None, None, None, None

    return backward


# -------------------------------------------------------------------------- permute / unpermute
def _permute_setup(ctx, inputs, output):
    x, order, slot, top_k = inputs
    ctx.save_for_backward(order, slot)
    ctx.num_tokens, ctx.top_k = x.shape[0], top_k


def _permute_backward_for(ns: str):
    """permute's backward on namespace `ns`: the sum of each token's k gradient rows is an
    unpermute with unit weights, through that namespace's kernel (the emulator's permute
    gradient runs the emulated unpermute kernel, not the native CPU op)."""
    unpermute = getattr(torch.ops, ns).unpermute

    def backward(ctx, grad_xp):
        order, slot = ctx.saved_tensors
        ones = grad_xp.new_ones((ctx.num_tokens, ctx.top_k))
        return unpermute(grad_xp, order, slot, ones), None, None, None

    return backward


def _unpermute_setup(ctx, inputs, output):
    yp, order, slot, weights = inputs
    ctx.save_for_backward(yp, order, slot, weights)


def _unpermute_backward_for(ns: str):
    """unpermute's backward on namespace `ns`: both gradients from the unpermute_backward op
    (one fused kernel on CUDA / the emulator; a native loop on CPU)."""
    ops = getattr(torch.ops, ns)

    def backward(ctx, grad_y):
        yp, order, slot, weights = ctx.saved_tensors
        grad_yp, grad_w = ops.unpermute_backward(
            grad_y.to(yp.dtype).contiguous(), yp, order, slot, weights
        )
        return (
            (grad_yp if _needs_grad(ctx, 0) else None),
            None,
            None,
            (grad_w if _needs_grad(ctx, 3) else None),
        )

    return backward


# ----------------------------------------------------------------------------------- grouped_mm
def _grouped_mm_setup(ctx, inputs, output):
    a, b, offs, bias, _out_dtype = inputs
    ctx.save_for_backward(a, b, offs)
    ctx.has_bias = bias is not None
    ctx.bias_dtype = bias.dtype if bias is not None else None


def _column_group_mask(offs: torch.Tensor, n: int) -> torch.Tensor:
    """[G, n] bool: column c belongs to group g (ragged-N form); columns past offs[-1] to none."""
    cols = torch.arange(n, device=offs.device, dtype=offs.dtype)
    gid = torch.searchsorted(offs, cols, right=True)
    return gid.unsqueeze(0) == torch.arange(offs.shape[0], device=offs.device).unsqueeze(1)


def _grouped_mm_backward_for(ns: str):
    """The grouped_mm backward of namespace `ns`: dA, dB and d bias through that namespace's
    grouped_mm (the CUDA/emulator kernel, or the CPU op)."""
    mm = getattr(torch.ops, ns).grouped_mm

    def backward(ctx, grad_out):
        return _grouped_mm_backward(ctx, grad_out, mm)

    return backward


def _grouped_mm_backward(ctx, grad_out, mm):
    a, b, offs = ctx.saved_tensors
    g = grad_out.to(a.dtype)
    need_a, need_b, need_bias = (_needs_grad(ctx, i) for i in (0, 1, 3))
    da = db = dbias = None
    bias_dtype = ctx.bias_dtype
    if a.dim() == 2 and b.dim() == 3:  # out[M,N] = a[M,K] @ b[G,K,N]
        if need_a:
            da = mm(g, b.transpose(-2, -1), offs)
        if need_b:
            db = mm(a.t(), g, offs)  # ragged-K: [K,M] @ [M,N] -> [G,K,N]
        if need_bias:
            ones = g.new_ones((1, g.shape[0]))
            dbias = mm(ones, g, offs, out_dtype=bias_dtype).squeeze(1)
    elif a.dim() == 3 and b.dim() == 2:  # out[M,Ntot] = a[G,M,K] @ b[K,Ntot]
        if need_a:
            da = mm(g, b.t(), offs)  # ragged-K over the columns -> [G,M,K]
        if need_b:
            db = mm(a.transpose(-2, -1), g, offs)  # [G,K,M] @ [M,Ntot]
        if need_bias:
            colsum = grad_out.to(_acc_dtype(a.dtype)).sum(0)
            mask = _column_group_mask(offs, g.shape[1])
            dbias = (mask * colsum.unsqueeze(0)).to(bias_dtype)
    elif a.dim() == 2 and b.dim() == 2:  # out[G,M,N] = a[M,Ktot] @ b[Ktot,N], K ragged
        if need_a:
            da = mm(g, b.t(), offs)  # [G,M,N] @ [N,Ktot] -> [M,Ktot]
        if need_b:
            db = mm(a.t(), g, offs)  # [Ktot,M] @ [G,M,N] -> [Ktot,N]
        if need_bias:
            dbias = grad_out.to(_acc_dtype(a.dtype)).sum(1).to(bias_dtype)
    else:  # batched
        if need_a:
            da = mm(g, b.transpose(-2, -1))
        if need_b:
            db = mm(a.transpose(-2, -1), g)
        if need_bias:
            dbias = grad_out.to(_acc_dtype(a.dtype)).sum(1).to(bias_dtype)
    return da, db, None, dbias, None


# -------------------------------------------------------------------------------------- moe_mlp
def _moe_mlp_setup(ctx, inputs, output):
    """moe_mlp and moe_mlp_save_h: the inputs, and h when the op returns it (output (y, h))."""
    x, w1, w2, weights, order, slot, offsets, *rest = inputs
    ctx.activation = rest[0] if rest else "swiglu"
    ctx.activation_limit = rest[1] if len(rest) > 1 else None
    h = (output[1],) if isinstance(output, (tuple, list)) else ()
    ctx.save_for_backward(x, w1, w2, weights, order, slot, offsets, *h)


def _moe_mlp_backward_for(ns: str):
    """The backward of moe_mlp and moe_mlp_save_h on namespace `ns`: the moe_mlp_backward op,
    which takes the routing-weight gradient from the dA GEMM as <gather(dy) @ w2, act(h)>
    instead of re-running the second GEMM. moe_mlp saves only the inputs, so h = x[order // k]
    @ w1ᵀ is recomputed (7 grouped GEMMs per training step with the forward's 2); moe_mlp_save_h
    saves h (6). h is an output of moe_mlp_save_h for the backward only: its gradient is
    ignored."""
    ops = getattr(torch.ops, ns)

    def backward(ctx, dy, *_dh):
        x, w1, w2, weights, order, slot, offsets, *h = ctx.saved_tensors
        dx, dw1, dw2, dweights = ops.moe_mlp_backward(
            dy,
            x,
            w1,
            w2,
            weights,
            order,
            slot,
            offsets,
            ctx.activation,
            ctx.activation_limit,
            *h,
        )
        return dx, dw1, dw2, dweights, None, None, None, None, None

    return backward


# ---------------------------------------------------------------------------------- moe_mlp_fp8
def _moe_mlp_fp8_setup(ctx, inputs, output):
    """moe_mlp_fp8 (saves the inputs; h and z recomputed) and moe_mlp_fp8_save (output
    (y, h, z): saves h and z too)."""
    ctx.activation = inputs[9] if len(inputs) > 9 else "swiglu"
    hz = tuple(output[1:]) if isinstance(output, (tuple, list)) else ()
    ctx.save_for_backward(*inputs[:9], *hz)


def _moe_mlp_fp8_backward_for(ns: str):
    """Gradients of moe_mlp_fp8 w.r.t. x and weights, the quantizations straight-through (as
    FP8 training recipes treat them) and the frozen FP8 weights dequantized to x's dtype:
    dweights = <dy, z> and dz = w * dy gathered (unpermute_backward), da = dz @ w2, dh =
    act'(h) * da (fp32), dx = combine(dh @ w1). Gradients of the FP8 weights raise."""
    ops = getattr(torch.ops, ns)

    def backward(ctx, dy, *_unused):
        for i, name in ((1, "w1"), (2, "w1_scale"), (3, "w2"), (4, "w2_scale")):
            if ctx.needs_input_grad[i]:
                raise RuntimeError(
                    f"moe_ext.moe_mlp_fp8: the FP8 expert weights are frozen; no gradient for {name}"
                )
        x, w1, w1_scale, w2, w2_scale, weights, order, slot, offsets, *hz = ctx.saved_tensors
        if not hz:  # moe_mlp_fp8 itself: recompute h and z
            _, h, z = ops.moe_mlp_fp8_save(
                x, w1, w1_scale, w2, w2_scale, weights, order, slot, offsets, ctx.activation
            )
        else:
            h, z = hz
        dz, dweights = ops.unpermute_backward(dy.to(z.dtype), z, order, slot, weights)
        w2d = reference.dequantize_fp8_blocks(w2, w2_scale, x.dtype)  # [E, H, I]
        da = ops.grouped_mm(dz, w2d, offsets)  # [N, I]
        with torch.enable_grad():
            hf = h.float().detach().requires_grad_()
            (dh,) = torch.autograd.grad(
                reference.apply_activation(hf, ctx.activation), hf, da.float()
            )
        w1d = reference.dequantize_fp8_blocks(w1, w1_scale, x.dtype)  # [E, 2I, H]
        dxp = ops.grouped_mm(dh.to(x.dtype), w1d, offsets)  # [N, H]
        ones = torch.ones(weights.shape, dtype=torch.float32, device=x.device)
        dx = ops.unpermute(dxp, order, slot, ones)
        return (dx, None, None, None, None, dweights.to(weights.dtype)) + (None,) * 4

    return backward


# ---------------------------------------------------------------------------------- registration
def _register(ns: str) -> None:
    """Attach the formulas to namespace `ns` (moe_ext, and moe_ext_emu for the ops it has)."""
    ops = getattr(torch.ops, ns)

    def has(name):
        return hasattr(ops, name)

    for name in ("route", "route_with_stats"):
        if has(name) and has("route_backward"):
            torch.library.register_autograd(
                f"{ns}::{name}", _route_backward_for(ns), setup_context=_route_setup
            )
    if has("route_weights") and has("route_backward"):
        torch.library.register_autograd(
            f"{ns}::route_weights",
            _route_weights_backward_for(ns),
            setup_context=_route_weights_setup,
        )
    if has("permute"):
        torch.library.register_autograd(
            f"{ns}::permute", _permute_backward_for(ns), setup_context=_permute_setup
        )
    if has("unpermute") and has("unpermute_backward"):
        torch.library.register_autograd(
            f"{ns}::unpermute", _unpermute_backward_for(ns), setup_context=_unpermute_setup
        )
    for name in ("moe_mlp", "moe_mlp_save_h"):
        if has(name) and has("moe_mlp_backward"):
            torch.library.register_autograd(
                f"{ns}::{name}", _moe_mlp_backward_for(ns), setup_context=_moe_mlp_setup
            )
    for name in ("moe_mlp_fp8", "moe_mlp_fp8_save"):
        if has(name):
            torch.library.register_autograd(
                f"{ns}::{name}", _moe_mlp_fp8_backward_for(ns), setup_context=_moe_mlp_fp8_setup
            )
    if has("grouped_mm"):
        torch.library.register_autograd(
            f"{ns}::grouped_mm", _grouped_mm_backward_for(ns), setup_context=_grouped_mm_setup
        )


_register("moe_ext")
if _C.build_info()["emulator"]:
    _register("moe_ext_emu")
