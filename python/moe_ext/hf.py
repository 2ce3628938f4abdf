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
    E = experts.num_experts
    k = top_k_index.shape[-1]
    ids = top_k_index.to(torch.int32)
    ids = torch.where(ids >= E, torch.full_like(ids, -1), ids)  # EP sentinels: not routed here
    order, slot, offsets = ops.sort_tokens(ids, E)
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


def register() -> None:
    """Makes ``experts_implementation="moe_ext"`` available to every HF MoE model."""
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    ALL_EXPERTS_FUNCTIONS.register(NAME, experts_forward)
