"""Public Python API: thin wrappers over ``torch.ops.moe_ext.*`` with shapes and dtypes.

T tokens, H hidden size, E experts, k = top_k, N = T * k assignments. The wrappers only forward
(argument checks live in the C++ ops, so ``torch.ops.moe_ext.*`` callers get them too); none of
them synchronises the device.
"""

from __future__ import annotations

import functools
import os

import torch

from . import reference as _reference

_ops = torch.ops.moe_ext


def _nvtx(fn):
    """An NVTX range named like the op ("moe_ext.<op>") around calls on CUDA tensors, so
    Nsight / torch.profiler timelines read well; nothing under torch.compile (the range would be
    a graph break) or on CPU."""
    label = f"moe_ext.{fn.__name__}"

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if (
            torch.compiler.is_compiling()
            or not torch.cuda.is_available()
            or not any(isinstance(a, torch.Tensor) and a.is_cuda for a in args)
        ):
            return fn(*args, **kwargs)
        with torch.cuda.nvtx.range(label):
            return fn(*args, **kwargs)

    return wrapper


@_nvtx
def route(
    logits: torch.Tensor,
    top_k: int,
    score_func: str = "softmax",
    renormalize: bool = True,
    correction_bias: torch.Tensor | None = None,
    num_groups: int = 1,
    topk_groups: int = 1,
    scaling_factor: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Router top-k.

    Args:
        logits: ``[T, E]`` float32/bfloat16/float16 (float64 on CPU).
        top_k: experts per token, ``1 <= top_k <= E``.
        score_func: ``"softmax"``, ``"sigmoid"`` or ``"sqrtsoftplus"`` (``sqrt(softplus(x))``,
            DeepSeek-V4); scores are computed in fp32.
        renormalize: divide the chosen weights by their sum (+1e-20).
        correction_bias: optional ``[E]`` added to the scores for selection only (DeepSeek-V3).
        num_groups, topk_groups: group-limited routing (keep the ``topk_groups`` groups with the
            largest sum of their top-2 scores, then pick top-k among them).
        scaling_factor: multiplies the final weights.

    Returns:
        ``weights [T, k]`` float32 (float64 for float64 logits) and ``ids [T, k]`` int32, in
        descending score order, ties to the lower expert id. Differentiable w.r.t. ``logits``.
    """
    return _ops.route(
        logits,
        top_k,
        score_func,
        renormalize,
        correction_bias,
        num_groups,
        topk_groups,
        scaling_factor,
    )


@_nvtx
def route_with_stats(
    logits: torch.Tensor,
    top_k: int,
    score_func: str = "softmax",
    renormalize: bool = True,
    correction_bias: torch.Tensor | None = None,
    num_groups: int = 1,
    topk_groups: int = 1,
    scaling_factor: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`route` plus the aux-loss statistics, from the same pass over the logits.

    Returns:
        ``weights [T, k]``, ``ids [T, k]`` as :func:`route`; ``counts [E]`` int32 (assignments
        per expert over all k choices; ``counts.sum() == T * k``) and ``mean_prob [E]`` float32
        (float64 for float64 logits; the mean over tokens of the unbiased scores, differentiable),
        computed deterministically. Feed them to :func:`moe_ext.load_balancing_loss`.
    """
    return _ops.route_with_stats(
        logits,
        top_k,
        score_func,
        renormalize,
        correction_bias,
        num_groups,
        topk_groups,
        scaling_factor,
    )


@_nvtx
def sort_tokens(
    ids: torch.Tensor, num_experts: int, capacity: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stable sort of the ``N = T*k`` token->expert assignments by expert.

    Args:
        ids: ``[T, k]`` int32 or int64 in ``[-1, E)``; ``-1`` means "not routed here".
        num_experts: ``E``.
        capacity: optional per-expert limit; an expert keeps its first ``capacity`` assignments.

    Returns:
        ``order [N]`` (flat assignment ``t*k+j`` at each sorted row), ``slot [N]`` (sorted row of
        each assignment, ``-1`` if dropped) and ``offsets [E]`` (cumulative row ends, as
        ``torch._grouped_mm``'s ``offs``), all int32. Dropped rows follow ``offsets[-1]``.
    """
    return _ops.sort_tokens(ids, num_experts, capacity)


@_nvtx
def permute(x: torch.Tensor, order: torch.Tensor, slot: torch.Tensor, top_k: int) -> torch.Tensor:
    """Gather token rows into expert order.

    Args:
        x: ``[T, H]`` float; ``order``, ``slot``: ``[N]`` int32 from :func:`sort_tokens`.

    Returns:
        ``xp [N, H]`` in x's dtype: ``xp[i] = x[order[i] // top_k]``; dropped rows are zero.
        An ``order`` entry outside ``[0, N)`` raises on CPU (on CUDA only with
        ``MOE_EXT_DEBUG=1``; unchecked, its row is zero). ``N`` must be below 2^31.
    """
    return _ops.permute(x, order, slot, top_k)


@_nvtx
def unpermute(
    yp: torch.Tensor, order: torch.Tensor, slot: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Weighted combine of expert rows back to token order (deterministic, no atomics).

    Args:
        yp: ``[N, H]`` float; ``order``, ``slot``: ``[N]`` int32; ``weights``: ``[T, k]`` float.

    Returns:
        ``y [T, H]`` in yp's dtype: ``y[t] = sum_j weights[t, j] * yp[slot[t*k + j]]`` over kept
        assignments, accumulated in fp32. A ``slot`` entry outside ``[-1, N)`` raises on CPU (on
        CUDA only with ``MOE_EXT_DEBUG=1``; unchecked, it contributes nothing).
    """
    return _ops.unpermute(yp, order, slot, weights)


@_nvtx
def grouped_mm(
    a: torch.Tensor,
    b: torch.Tensor,
    offs: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Grouped GEMM with ``torch._grouped_mm``'s semantics plus an optional per-group bias.

    Forms (``offs [G]`` int32 cumulative group ends, on a's device):
        * 2D x 3D: ``a [M, K] @ b [G, K, N] -> [M, N]``, rows grouped by ``offs``;
        * 3D x 2D: ``a [G, M, K] @ b [K, Ntot] -> [M, Ntot]``, columns grouped by ``offs``;
        * 2D x 2D: ``a [M, Ktot] @ b [Ktot, N] -> [G, M, N]``, contraction grouped (weight grads);
        * 3D x 3D: ``a [G, M, K] @ b [G, K, N] -> [G, M, N]``, ``offs`` None.

    ``bias [G, N]`` is added to group g's outputs (ragged-N: column c of group g gets
    ``bias[g, c]``). Inputs float32/bfloat16/float16 (float64 on CPU), accumulated in fp32;
    output dtype is ``out_dtype`` or a's dtype. Rows/columns past ``offs[-1]`` and K = 0 groups
    are zero.
    """
    return _ops.grouped_mm(a, b, offs, bias, out_dtype)


@_nvtx
def route_weights(
    logits: torch.Tensor,
    ids: torch.Tensor,
    score_func: str = "softmax",
    renormalize: bool = True,
    scaling_factor: float = 1.0,
) -> torch.Tensor:
    """The routing weights of given experts (DeepSeek-V4 hash layers: ``ids = tid2eid[input_ids]``).

    ``logits[T, E]``, ``ids[T, k]`` int32/int64 in ``[0, E)`` -> ``weights[T, k]`` fp32 (fp64
    for fp64 logits): ``score(logits)`` (softmax, sigmoid or sqrtsoftplus) gathered at ids,
    divided by its sum + 1e-20 if ``renormalize``, times ``scaling_factor``. For ``route``'s own
    ids it equals ``route``'s weights. Differentiable w.r.t. logits.
    """
    return _ops.route_weights(logits, ids, score_func, renormalize, scaling_factor)


def quantize_fp8(
    x: torch.Tensor, group_size: int = 128, scale_format: str = "float"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token-group FP8 quantization (vLLM ``per_token_group_quant_fp8``, DeepSeek-V3
    ``act_quant``): for each row of ``x [M, K]`` (bf16/fp16/fp32) and each group of
    ``group_size`` columns (the last may be shorter), ``scale = max(amax, 1e-10) / 448`` in fp32
    (``scale_format="ue8m0"``: rounded up to a power of two) and ``x_q = saturate(x / scale)`` in
    ``float8_e4m3fn``, round to nearest even. Returns ``(x_q [M, K], scale [M, ceil(K /
    group_size)])``; ``x ~= x_q.float() * scale`` per group. Not differentiable."""
    return _ops.quantize_fp8(x, group_size, scale_format)


def grouped_mm_fp8(
    a: torch.Tensor,
    a_scale: torch.Tensor,
    b: torch.Tensor,
    b_scale: torch.Tensor,
    offs: torch.Tensor | None = None,
    out_dtype: torch.dtype = torch.bfloat16,
) -> torch.Tensor:
    """DeepSeek-V3 block-FP8 grouped GEMM (DeepGEMM's ``m_grouped_fp8_gemm_nt``, vLLM's block
    FP8 MoE): ``a [M, K]`` e4m3 (rows cut by ``offs[G]`` int32, or ``a [G, M, K]`` batched when
    ``offs`` is None) with ``a_scale [..., ceil(K/128)]`` fp32 (``quantize_fp8``'s), times
    ``b [G, N, K]`` e4m3 (HF/vLLM weight layout) with ``b_scale [G, ceil(N/128), ceil(K/128)]``
    fp32 (HF ``weight_scale_inv``). Each 128-wide K block's partial sum is kept in fp32 and
    promoted with its two scales: ``out[m, n] = sum_kb a_scale[m, kb] * b_scale[g, n//128, kb] *
    sum_{k in kb} a[m, k] b[g, n, k]``. UE8M0 scales (powers of two) are plain fp32 values here.
    Returns ``[M, N]`` (rows past ``offs[-1]`` zero) or ``[G, M, N]`` in ``out_dtype``
    (bf16/fp16/fp32). Not differentiable (frozen FP8 weights; ``moe_mlp_fp8`` has a backward)."""
    return _ops.grouped_mm_fp8(a, a_scale, b, b_scale, offs, out_dtype)


def quantize_weight_fp8(
    w: torch.Tensor, scale_format: str = "float"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Block-FP8 weights as DeepSeek-V3 checkpoints store them: ``w [..., R, C]`` -> (``w_q``
    float8_e4m3fn, ``scale [..., ceil(R/128), ceil(C/128)]`` fp32 with ``scale = amax / 448`` per
    128 x 128 block (``"ue8m0"``: rounded up to a power of two), ``w ~= w_q * scale``). An
    offline conversion in torch ops (the scales HF calls ``weight_scale_inv``)."""
    R, C = w.shape[-2:]
    rb, cb = -(-R // 128), -(-C // 128)
    padded = torch.nn.functional.pad(w.float(), (0, cb * 128 - C, 0, rb * 128 - R))
    blocks = padded.unflatten(-1, (cb, 128)).unflatten(-3, (rb, 128))  # [..., rb, 128, cb, 128]
    amax = blocks.abs().amax(dim=(-3, -1))
    scale = _reference.fp8_group_scales(amax, scale_format)
    full = scale.repeat_interleave(128, -2)[..., :R, :].repeat_interleave(128, -1)[..., :C]
    w_q = (w.float() / full).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
    return w_q, scale


def moe_mlp_fp8(
    x: torch.Tensor,
    w1: torch.Tensor,
    w1_scale: torch.Tensor,
    w2: torch.Tensor,
    w2_scale: torch.Tensor,
    weights: torch.Tensor,
    order: torch.Tensor,
    slot: torch.Tensor,
    offsets: torch.Tensor,
    activation: str = "swiglu",
) -> torch.Tensor:
    """:func:`moe_mlp` with block-FP8 experts in the HF ``FP8Experts`` / DeepSeek-V3 layout:
    ``w1 [E, 2I, H]`` (or ``[E, I, H]`` ungated) and ``w2 [E, H, I]`` float8_e4m3fn with fp32
    ``w1_scale [E, ceil(2I/128), ceil(H/128)]``, ``w2_scale [E, ceil(H/128), ceil(I/128)]``
    (``weight_scale_inv``, multipliers); x bf16/fp16. Each token row is quantized per 128
    columns (:func:`quantize_fp8`), the first :func:`grouped_mm_fp8` gathers the rows in its
    loads and writes h in x's dtype, the activation is computed in fp32 and quantized from fp32
    per 128 columns, the second GEMM writes x's dtype, and :func:`unpermute` combines in fp32.
    Differentiable w.r.t. x and weights (frozen FP8 weights, e.g. adapters on an FP8 checkpoint:
    straight-through for the quantizations, the weights dequantized to x's dtype in the
    backward); asking for a gradient of an FP8 weight raises."""
    args = (x, w1, w1_scale, w2, w2_scale, weights, order, slot, offsets, activation)
    return _moe_mlp_fp8_on(_ops, *args)


def _moe_mlp_fp8_on(ops, *args):
    """moe_mlp_fp8 through namespace ``ops``: the op that also returns h and z when a gradient
    will be needed (the backward then recomputes nothing)."""
    x, w1, w1_scale, w2, w2_scale, weights = args[:6]
    named = (("w1", w1), ("w1_scale", w1_scale), ("w2", w2), ("w2_scale", w2_scale))
    frozen = [name for name, t in named if t.requires_grad]
    if frozen:
        raise RuntimeError(
            f"moe_ext.moe_mlp_fp8: the FP8 expert weights are frozen; {', '.join(frozen)} "
            "must not require grad (gradients flow to x and weights)"
        )
    if torch.is_grad_enabled() and (x.requires_grad or weights.requires_grad):
        return ops.moe_mlp_fp8_save(*args)[0]
    return ops.moe_mlp_fp8(*args)


_MOE_MLP_MEMORY_POLICIES = ("save_h", "recompute")
_moe_mlp_memory_policy = os.environ.get("MOE_EXT_MOE_MLP_MEMORY", "save_h")
if _moe_mlp_memory_policy not in _MOE_MLP_MEMORY_POLICIES:
    raise ValueError(
        f"MOE_EXT_MOE_MLP_MEMORY must be one of {_MOE_MLP_MEMORY_POLICIES}, "
        f"got {_moe_mlp_memory_policy!r}"
    )


def set_moe_mlp_memory_policy(policy: str) -> None:
    """What ``moe_mlp``'s forward keeps for the backward when a gradient is needed:

    - ``"save_h"`` (default): h = x[order // k] @ w1ᵀ, ``[N, 2I]`` (``[N, I]`` ungated) in x's
      dtype besides the inputs; the backward runs 4 grouped GEMMs (6 per training step, the
      minimum).
    - ``"recompute"``: the inputs only; the backward recomputes h (5 GEMMs, 7 per step).

    Never the second GEMM: the routing-weight gradient comes from the dA GEMM
    (``moe_mlp_backward``). Also ``MOE_EXT_MOE_MLP_MEMORY=save_h|recompute`` at import."""
    global _moe_mlp_memory_policy
    if policy not in _MOE_MLP_MEMORY_POLICIES:
        raise ValueError(f"policy must be one of {_MOE_MLP_MEMORY_POLICIES}, got {policy!r}")
    _moe_mlp_memory_policy = policy


def get_moe_mlp_memory_policy() -> str:
    return _moe_mlp_memory_policy


def moe_mlp(
    x: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    weights: torch.Tensor,
    order: torch.Tensor,
    slot: torch.Tensor,
    offsets: torch.Tensor,
    activation: str = "swiglu",
    activation_limit: float | None = None,
) -> torch.Tensor:
    """The experts' MLP over expert-sorted assignments, combined back to tokens.

    ``y[t] = sum_j weights[t, j] * w2[e] @ act(w1[e] @ x[t])`` with ``e = ids[t, j]``, given
    ``order, slot, offsets = sort_tokens(ids, E)``. Weights in HF layout: ``w1`` is
    ``gate_up_proj`` ``[E, 2I, H]`` (gate rows first) for the gated activations ``"swiglu"``,
    ``"geglu"``, ``"geglu_tanh"``, or ``[E, I, H]`` for ``"silu"``, ``"gelu"``, ``"gelu_tanh"``,
    ``"relu"``, ``"identity"``; ``w2`` is ``down_proj`` ``[E, H, I]``. On CUDA (bf16/fp16) the
    token gather runs inside the first grouped GEMM's loads and the activation and routing
    weights in the GEMMs' epilogues. Differentiable in x, w1, w2 and weights; what the forward
    keeps for the backward is :func:`set_moe_mlp_memory_policy`'s choice (default: h, the
    first GEMM's output, in x's dtype; the training forward then runs the activation between
    the GEMMs instead of in the first one's epilogue). ``activation_limit`` (gated activations
    only): the clamped SwiGLU of DeepSeek-V4 (``swiglu_limit``) -- ``gate.clamp(max=limit)``,
    ``up.clamp(-limit, limit)`` before ``act(gate) * up``; applied in the first GEMM's epilogue
    on the fused path.
    """
    return _moe_mlp_on(_ops, x, w1, w2, weights, order, slot, offsets, activation, activation_limit)


def _moe_mlp_on(ops, x, w1, w2, weights, order, slot, offsets, activation, activation_limit):
    """moe_mlp through namespace ``ops`` (torch.ops.moe_ext, or the emulator's in tests): the
    op that keeps h when the memory policy says so and a gradient will be needed."""
    args = (x, w1, w2, weights, order, slot, offsets, activation, activation_limit)
    if (
        _moe_mlp_memory_policy == "save_h"
        and torch.is_grad_enabled()
        and any(t.requires_grad for t in (x, w1, w2, weights))
    ):
        return ops.moe_mlp_save_h(*args)[0]
    return ops.moe_mlp(*args)
