"""HF transformers backend: ``moe_ext.hf.register()`` adds ``"moe_ext"`` to
``transformers.integrations.moe.ALL_EXPERTS_FUNCTIONS``, so any HF MoE model whose experts class
uses ``@use_experts_implementation`` runs its experts on these ops with
``experts_implementation="moe_ext"`` (``from_pretrained``/``from_config`` argument, or
``model.set_experts_implementation("moe_ext")``).

The experts forward receives ``hidden_states[T, H]``, ``top_k_index[T, k]`` and
``top_k_weights[T, k]`` (routing is the model's own) and honours the experts' layout flags:

* concatenated ``gate_up_proj`` (gate rows first), no bias, the default ``_apply_gate`` with a
  SiLU / GELU activation, no post-expert norm -> the fused ``moe_mlp`` (SwiGLU / GeGLU); so do
  DeepSeek-V4's experts, whose ``_apply_gate`` is the clamped SwiGLU (``activation_limit`` =
  their ``limit``);
* anything else -- biases (gpt-oss), an interleaved gate/up layout or a custom ``_apply_gate``
  (gpt-oss's clamped SwiGLU), ``has_gate=False`` experts, a post-expert norm -- runs the
  composite ``sort_tokens -> permute -> grouped_mm (+ per-expert bias) -> the experts' own
  _apply_gate / act_fn -> grouped_mm -> unpermute``, still on moe_ext kernels;
* ``is_transposed`` weights (``[E, in, out]``) are read in place either way (no copies);
* expert-parallel sentinels (ids >= num_experts, HF's marker for non-local experts) become -1,
  which ``sort_tokens`` drops: they contribute nothing, exactly like HF's masking.

FP8 checkpoints (DeepSeek-V3/R1, Qwen3-FP8, ...: HF's ``FP8Experts`` with e4m3 weights and one
fp32 or UE8M0 ``*_scale_inv`` per 128 x 128 block): ``register()`` also adds ``"moe_ext"`` to
``transformers.integrations.finegrained_fp8.ALL_FP8_EXPERTS_FUNCTIONS``. The default SwiGLU /
GeGLU gate runs the fused ``moe_mlp_fp8`` (activations quantized per token per 128 channels on
the fly, as vLLM and SGLang do); a custom gate (clamped, soft-capped, gpt-oss's), ungated
experts or a block size other than 128 x 128 compose ``quantize_fp8 -> grouped_mm_fp8 -> the
experts' own gate -> quantize_fp8 -> grouped_mm_fp8 -> unpermute`` (other block sizes through
weights dequantized to the activations' dtype and ``grouped_mm``). This runs on CPU too, where
transformers alone needs a GPU for FP8 experts (it dequantizes the whole model instead).
``activation_scheme="static"`` checkpoints are refused, as HF's grouped_mm path refuses them.
"""

from __future__ import annotations

import torch

from . import ops

NAME = "moe_ext"

_GATED_ACTIVATIONS = {
    "silu": "swiglu",
    "swish": "swiglu",
    "gelu": "geglu",
    "gelu_pytorch_tanh": "geglu_tanh",
    "gelu_new": "geglu_tanh",
}


def _weight_as_kn(w: torch.Tensor, is_transposed: bool) -> torch.Tensor:
    """HF expert weight -> grouped_mm's b operand [E, in, out] (a view, no copy)."""
    return w if is_transposed else w.transpose(-2, -1)


def _fused_activation(experts) -> tuple[str, float | None] | None:
    """The moe_mlp (activation, activation_limit) equivalent to these experts, or None if the
    fused op cannot express them exactly."""
    from transformers.integrations.moe import _default_apply_gate

    from .layer import _hf_act_name, _hf_swiglu_limit

    if not getattr(experts, "has_gate", True) or getattr(experts, "has_bias", False):
        return None
    if not getattr(experts, "is_concatenated", True) or getattr(
        experts, "has_post_expert_norm", False
    ):
        return None
    limit = _hf_swiglu_limit(experts)  # DeepSeek-V4: clamp(gate, max=l), clamp(up, -l, l)
    if limit is not None:
        act = _GATED_ACTIVATIONS.get(_hf_act_name(experts))
        return None if act is None else (act, limit)
    if getattr(type(experts), "_apply_gate", _default_apply_gate) is not _default_apply_gate:
        return None
    act = _GATED_ACTIVATIONS.get(getattr(getattr(experts, "config", None), "hidden_act", None))
    return None if act is None else (act, None)


def experts_forward(
    experts, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
) -> torch.Tensor:
    """The ``"moe_ext"`` experts implementation (see the module docstring)."""
    k = top_k_index.shape[-1]
    order, slot, offsets = _route_sorted(experts, top_k_index)
    transposed = getattr(experts, "is_transposed", False)
    activation = _fused_activation(experts)
    if activation is not None:
        w1 = _weight_as_kn(experts.gate_up_proj, transposed).transpose(-2, -1)  # [E, 2I, H] view
        w2 = _weight_as_kn(experts.down_proj, transposed).transpose(-2, -1)  # [E, H, I] view
        return ops.moe_mlp(hidden_states, w1, w2, top_k_weights, order, slot, offsets, *activation)
    has_bias = getattr(experts, "has_bias", False)
    xp = ops.permute(hidden_states, order, slot, k)
    if getattr(experts, "has_gate", True):
        w_up, b_up = experts.gate_up_proj, getattr(experts, "gate_up_proj_bias", None)
    else:
        w_up, b_up = experts.up_proj, getattr(experts, "up_proj_bias", None)
    h = ops.grouped_mm(xp, _weight_as_kn(w_up, transposed), offsets, b_up if has_bias else None)
    h = experts._apply_gate(h) if getattr(experts, "has_gate", True) else experts.act_fn(h)
    b_down = getattr(experts, "down_proj_bias", None) if has_bias else None
    y = ops.grouped_mm(
        h.to(hidden_states.dtype), _weight_as_kn(experts.down_proj, transposed), offsets, b_down
    )
    if getattr(experts, "has_post_expert_norm", False):
        y = experts.post_expert_norm(y)
    return ops.unpermute(y, order, slot, top_k_weights)


def _route_sorted(experts, top_k_index):
    E = experts.num_experts
    ids = top_k_index.to(torch.int32)
    ids = torch.where(ids >= E, torch.full_like(ids, -1), ids)  # EP sentinels: not routed here
    return ops.sort_tokens(ids, E)


def fp8_scales(scale: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """An HF ``*_scale_inv`` (fp32 or UE8M0, [E, >= ceil(rows/128), ceil(cols/128)]: a fused
    gate_up keeps >= 2 row blocks) as the contract's fp32 [E, ceil(rows/128), ceil(cols/128)]."""
    return scale[:, : -(-rows // 128), : -(-cols // 128)].float()


def _fp8_fused_activation(experts) -> str | None:
    """moe_mlp_fp8's activation for HF FP8 experts with the default gate, else None."""
    from transformers.integrations.finegrained_fp8 import FP8Experts

    if not getattr(experts, "has_gate", True) or getattr(experts, "has_bias", False):
        return None
    if getattr(type(experts), "_apply_gate", None) is not FP8Experts._apply_gate:
        return None
    custom = ("limit", "swiglu_alpha", "gate_softcap", "up_softcap")
    if any(getattr(experts, a, None) is not None for a in custom):
        return None
    return _GATED_ACTIVATIONS.get(getattr(getattr(experts, "config", None), "hidden_act", None))


def fp8_experts_forward(
    experts, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
) -> torch.Tensor:
    """The ``"moe_ext"`` FP8 experts implementation (see the module docstring)."""
    if getattr(experts, "activation_scheme", "dynamic") != "dynamic":
        raise NotImplementedError(
            "moe_ext: FP8 experts with activation_scheme='static' are not supported (per-tensor "
            "activation scales); the dynamic per-token-group scheme is"
        )
    gated = getattr(experts, "has_gate", True)
    w_up = experts.gate_up_proj if gated else experts.up_proj
    s_up = experts.gate_up_proj_scale_inv if gated else experts.up_proj_scale_inv
    w_down, s_down = experts.down_proj, experts.down_proj_scale_inv
    # frozen, as HF's own FP8 experts treat them (no gradient for the weights or scales, even
    # where the parameters say requires_grad); x and the routing weights keep theirs
    w_up, s_up, w_down, s_down = (t.detach() for t in (w_up, s_up, w_down, s_down))
    if w_up.dtype != torch.float8_e4m3fn:
        raise NotImplementedError(f"moe_ext: FP8 experts with {w_up.dtype} weights (FP4?)")
    order, slot, offsets = _route_sorted(experts, top_k_index)
    k = top_k_index.shape[-1]
    dtype = hidden_states.dtype
    x = hidden_states if dtype in (torch.bfloat16, torch.float16) else hidden_states.bfloat16()
    block = tuple(experts.block_size) if experts.block_size is not None else None
    if block != (128, 128):  # other granularities: dequantized weights, grouped_mm
        w1 = _dequantize(w_up, s_up, block, x.dtype).transpose(-2, -1)
        w2 = _dequantize(w_down, s_down, block, x.dtype).transpose(-2, -1)
        h = ops.grouped_mm(ops.permute(x, order, slot, k), w1, offsets)
        h = experts._apply_gate(h) if gated else experts.act_fn(h)
        return ops.unpermute(
            ops.grouped_mm(h.to(x.dtype), w2, offsets), order, slot, top_k_weights
        ).to(dtype)
    s1 = fp8_scales(s_up, w_up.shape[1], w_up.shape[2])
    s2 = fp8_scales(s_down, w_down.shape[1], w_down.shape[2])
    activation = _fp8_fused_activation(experts)
    if activation is not None:
        y = ops.moe_mlp_fp8(
            x, w_up, s1, w_down, s2, top_k_weights, order, slot, offsets, activation
        )
        return y.to(dtype)
    x_q, x_s = ops.quantize_fp8(x)
    rows = order.long() // k
    h = ops.grouped_mm_fp8(
        x_q.view(torch.uint8)[rows].view(torch.float8_e4m3fn), x_s[rows], w_up, s1, offsets, x.dtype
    )
    a = experts._apply_gate(h) if gated else experts.act_fn(h)
    a_q, a_s = ops.quantize_fp8(a.float())
    z = ops.grouped_mm_fp8(a_q, a_s, w_down, s2, offsets, x.dtype)
    return ops.unpermute(z, order, slot, top_k_weights).to(dtype)


def _dequantize(w, scale, block, dtype):
    """HF FP8 weight [E, R, C] times its scale at block granularity `block` (None: per tensor)."""
    s = scale.float()
    if block is not None:
        R, C = w.shape[-2:]
        s = s.repeat_interleave(block[0], -2)[..., :R, :].repeat_interleave(block[1], -1)[..., :C]
    return (w.float() * s).to(dtype)


def register() -> None:
    """Makes ``experts_implementation="moe_ext"`` available to every HF MoE model, FP8 experts
    included."""
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    ALL_EXPERTS_FUNCTIONS.register(NAME, experts_forward)
    try:
        from transformers.integrations.finegrained_fp8 import ALL_FP8_EXPERTS_FUNCTIONS
    except ImportError:  # a transformers without FP8 experts
        return
    ALL_FP8_EXPERTS_FUNCTIONS.register(NAME, fp8_experts_forward)
