"""moe_ext.MoE: a Mixture-of-Experts layer on the package's ops.

    layer = moe_ext.MoE(hidden_size=4096, ffn_size=14336, num_experts=8, top_k=2)   # Mixtral
    y = layer(x)                       # x [..., H] -> y [..., H]
    loss = task_loss + layer.aux_loss + layer.z_loss

Forward: router logits (fp32) -> ``route_with_stats`` (top-k, softmax or sigmoid scores, group-
limited selection, DeepSeek-V3's selection-only correction bias, renormalisation, scaling) ->
``sort_tokens`` (optional capacity: Switch-style token dropping) -> the experts' fused
``moe_mlp`` (token gather inside the first grouped GEMM, SwiGLU/GeGLU/... epilogue, routing
weights in the second GEMM's epilogue, deterministic combine) -> plus an optional shared expert
(DeepSeek / Qwen2-MoE), run on a second CUDA stream so it overlaps the routed experts.

Training-time options of the seminal designs:
  * ``noisy_gating`` (Shazeer et al. 2017): logits += N(0, 1) * softplus(x W_noise) in training;
  * ``router_jitter`` (Switch): x *= U(1 - eps, 1 + eps) at the router input in training;
  * ``aux_loss_coef`` (Switch / HF load-balancing loss over the k choices) -> ``self.aux_loss``;
    ``z_loss_coef`` (ST-MoE) -> ``self.z_loss``; both are 0-dim tensors after every forward;
  * ``correction_bias=True`` (DeepSeek-V3 aux-loss-free balancing): a selection-only bias buffer,
    updated by ``update_correction_bias(rate)`` from the counts accumulated since the last update
    (bias += rate * sign(mean count - count)); ``seq_aux_loss_coef`` adds DeepSeek-V3's
    sequence-wise balance loss (for [B, S, H] inputs) to ``aux_loss``;
  * ``capacity_factor`` (Switch): each expert keeps at most ceil(cf * T * k / E) assignments;
  * ``apply_weights_to_input`` (Llama 4): the routing weight scales the expert's input instead of
    its output;
  * ``checkpoint_experts``: recompute the experts in backward (torch.utils.checkpoint);
  * ``expert_parallel_group``: shard the experts over a process group (moe_ext.distributed):
    this rank holds experts [r E/W, (r+1) E/W) and exchanges token rows with all-to-all.

FP8 experts (``quantize_experts_fp8()``, or ``from_hf`` on an HF ``FP8Experts`` block): e4m3
weights with one fp32 scale per 128 x 128 block (``*_scale_inv``, DeepSeek-V3's layout), run by
``moe_mlp_fp8``; they are frozen (gradients reach x and the router only).

Weights are in HF layout: ``gate_up_proj [E, 2I, H]`` (gate rows first; ``[E, I, H]`` for an
ungated activation), ``down_proj [E, H, I]``, ``router.weight [E, H]``, so ``from_hf`` adopts an
HF MoE block's tensors as they are.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import distributed as ep
from . import ops
from .losses import load_balancing_loss, router_z_loss
from .reference import ACTIVATIONS, GATED_ACTIVATIONS, apply_activation, scores

_GATED = tuple(GATED_ACTIVATIONS)


class SharedExpert(nn.Module):
    """A dense MLP every token goes through (DeepSeek's / Qwen2-MoE's shared experts)."""

    def __init__(
        self, hidden_size, ffn_size, activation, activation_limit=None, dtype=None, device=None
    ):
        super().__init__()
        gated = activation in _GATED
        self.activation, self.activation_limit = activation, activation_limit
        self.ffn_size = ffn_size
        self.gate_up_proj = nn.Linear(
            hidden_size, (2 if gated else 1) * ffn_size, bias=False, dtype=dtype, device=device
        )
        self.down_proj = nn.Linear(ffn_size, hidden_size, bias=False, dtype=dtype, device=device)

    def forward(self, x):
        h = apply_activation(self.gate_up_proj(x), self.activation, self.activation_limit)
        return self.down_proj(h)


class MoE(nn.Module):
    def __init__(
        self,
        hidden_size: int,
        ffn_size: int,
        num_experts: int,
        top_k: int,
        *,
        score_func: str = "softmax",
        renormalize: bool = True,
        num_groups: int = 1,
        topk_groups: int = 1,
        scaling_factor: float = 1.0,
        activation: str = "swiglu",
        activation_limit: float | None = None,
        hash_vocab_size: int = 0,
        shared_ffn_size: int = 0,
        shared_gate: bool = False,
        capacity_factor: float | None = None,
        noisy_gating: bool = False,
        router_jitter: float = 0.0,
        correction_bias: bool = False,
        aux_loss_coef: float = 0.0,
        seq_aux_loss_coef: float = 0.0,
        z_loss_coef: float = 0.0,
        apply_weights_to_input: bool = False,
        checkpoint_experts: bool = False,
        expert_parallel_group=None,
        dtype: torch.dtype | None = None,
        device=None,
    ):
        super().__init__()
        for arg, value in (
            ("hidden_size", hidden_size),
            ("ffn_size", ffn_size),
            ("num_experts", num_experts),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"moe_ext.MoE: {arg} must be a positive int, got {value!r}")
        if top_k < 1 or top_k > num_experts:
            raise ValueError(
                f"moe_ext.MoE: top_k must be in [1, num_experts={num_experts}], got {top_k}"
            )
        if activation not in ACTIVATIONS:
            raise ValueError(f"moe_ext.MoE: unknown activation {activation!r}")
        if activation_limit is not None and (activation not in _GATED or not activation_limit > 0):
            raise ValueError(
                "moe_ext.MoE: activation_limit needs a gated activation and a positive limit, "
                f"got activation={activation!r}, activation_limit={activation_limit!r}"
            )
        if hash_vocab_size and (num_groups != 1 or correction_bias or noisy_gating):
            raise ValueError(
                "moe_ext.MoE: hash_vocab_size (fixed experts per token id) excludes "
                "num_groups, correction_bias and noisy_gating (they only change selection)"
            )
        self.hidden_size, self.ffn_size = hidden_size, ffn_size
        self.num_experts, self.top_k = num_experts, top_k
        self.route_args = dict(
            score_func=score_func,
            renormalize=renormalize,
            num_groups=num_groups,
            topk_groups=topk_groups,
            scaling_factor=scaling_factor,
        )
        self.activation, self.activation_limit = activation, activation_limit
        self.capacity_factor = capacity_factor
        self.router_jitter = router_jitter
        self.aux_loss_coef, self.seq_aux_loss_coef = aux_loss_coef, seq_aux_loss_coef
        self.z_loss_coef = z_loss_coef
        self.apply_weights_to_input = apply_weights_to_input
        self.checkpoint_experts = checkpoint_experts
        self.expert_parallel_group = expert_parallel_group
        first, last = 0, num_experts
        if expert_parallel_group is not None:
            first, last = ep.expert_range(num_experts, expert_parallel_group)
        self.local_experts = (first, last)
        E_local = last - first
        kw = dict(dtype=dtype, device=device)
        rows = (2 if activation in _GATED else 1) * ffn_size
        self.router = nn.Linear(hidden_size, num_experts, bias=False, **kw)
        self.noise = nn.Linear(hidden_size, num_experts, bias=False, **kw) if noisy_gating else None
        self.gate_up_proj = nn.Parameter(torch.empty(E_local, rows, hidden_size, **kw))
        self.down_proj = nn.Parameter(torch.empty(E_local, hidden_size, ffn_size, **kw))
        nn.init.normal_(self.gate_up_proj, std=hidden_size**-0.5)
        nn.init.normal_(self.down_proj, std=ffn_size**-0.5)
        self.shared_expert = (
            SharedExpert(hidden_size, shared_ffn_size, activation, activation_limit, **kw)
            if shared_ffn_size > 0
            else None
        )
        self.shared_expert_gate = (
            nn.Linear(hidden_size, 1, bias=False, **kw)
            if shared_ffn_size > 0 and shared_gate
            else None
        )
        # DeepSeek-V4 hash layers: the experts of a token are tid2eid[its input id] (a frozen
        # table, a checkpoint's buffer); the router only weights them (route_weights)
        if not hash_vocab_size:
            self.tid2eid = None
        else:
            self.register_buffer(
                "tid2eid",
                torch.zeros(hash_vocab_size, top_k, dtype=torch.long, device=device),
            )
        if correction_bias:
            self.register_buffer("correction_bias", torch.zeros(num_experts, device=device))
            self.register_buffer("_bias_counts", torch.zeros(num_experts, device=device))
        else:
            self.correction_bias = None
        self.aux_loss = torch.zeros(())
        self.z_loss = torch.zeros(())
        self.last_counts: torch.Tensor | None = None

    # ------------------------------------------------------------------------------ routing
    def _route(self, x: torch.Tensor, input_ids: torch.Tensor | None = None):
        x_router = x
        if self.training and self.router_jitter > 0:
            eps = self.router_jitter
            x_router = x * torch.empty_like(x).uniform_(1.0 - eps, 1.0 + eps)
        logits = self.router(x_router).float()
        if self.noise is not None and self.training:
            logits = logits + torch.randn_like(logits) * nn.functional.softplus(
                self.noise(x_router).float()
            )
        if self.tid2eid is not None:  # hash layer: fixed experts, learned weights
            ids = self.tid2eid[input_ids.reshape(-1)].to(torch.int32)
            args = self.route_args
            weights = ops.route_weights(
                logits, ids, args["score_func"], args["renormalize"], args["scaling_factor"]
            )
            counts = torch.zeros(self.num_experts, dtype=torch.int32, device=x.device)
            counts.index_add_(0, ids.reshape(-1), torch.ones_like(ids.reshape(-1)))
            mean_prob = (  # only the aux loss reads it: no [T, E] pass without one
                scores(logits.detach(), args["score_func"]).mean(0)
                if self.aux_loss_coef
                else logits.new_zeros(self.num_experts)
            )
            return logits, weights, ids, counts, mean_prob
        weights, ids, counts, mean_prob = ops.route_with_stats(
            logits, self.top_k, correction_bias=self.correction_bias, **self.route_args
        )
        return logits, weights, ids, counts, mean_prob

    def _losses(self, logits, ids, counts, mean_prob, T, batch_shape):
        aux = logits.new_zeros(())
        if self.aux_loss_coef:
            aux = aux + self.aux_loss_coef * load_balancing_loss(counts, mean_prob, T)
        if self.seq_aux_loss_coef and len(batch_shape) == 2 and T > 0:
            aux = aux + self.seq_aux_loss_coef * self._sequence_balance_loss(
                logits, ids, batch_shape
            )
        self.aux_loss = aux
        self.z_loss = (
            self.z_loss_coef * router_z_loss(logits) if self.z_loss_coef else logits.new_zeros(())
        )

    def _sequence_balance_loss(self, logits, ids, batch_shape):
        """DeepSeek-V3's sequence-wise balance loss: per sequence, sum_i f_i P_i with
        f_i = E / (k S) * #(tokens of the sequence choosing i), P_i = mean over the sequence of
        the normalised scores s_i / sum_j s_j; averaged over sequences."""
        B, S = batch_shape
        E, k = self.num_experts, self.top_k
        s = scores(logits, self.route_args["score_func"])
        p = (s / s.sum(-1, keepdim=True)).view(B, S, E).mean(1)  # [B, E]
        chosen = torch.zeros(B * S, E, device=logits.device).scatter_(1, ids.long(), 1.0)
        f = chosen.view(B, S, E).sum(1) * (E / (k * S))
        return (f * p).sum(-1).mean()

    @torch.no_grad()
    def update_correction_bias(self, rate: float = 1e-3) -> None:
        """DeepSeek-V3's aux-loss-free balancing step: raise the selection bias of experts that
        received fewer than the mean number of assignments since the last call, lower it for
        the overloaded ones (by `rate`), then reset the counts. Call after the optimizer step."""
        if self.correction_bias is None:
            raise RuntimeError("moe_ext.MoE: built without correction_bias=True")
        c = self._bias_counts
        if self.expert_parallel_group is not None:
            torch.distributed.all_reduce(c, group=self.expert_parallel_group)
        self.correction_bias += rate * torch.sign(c.mean() - c)
        c.zero_()

    # ------------------------------------------------------------------------------ experts
    @property
    def is_fp8(self) -> bool:
        """Whether the experts hold block-FP8 weights (quantize_experts_fp8 or an HF FP8 block)."""
        return self.gate_up_proj.dtype == torch.float8_e4m3fn

    def quantize_experts_fp8(self, scale_format: str = "float") -> MoE:
        """Converts the experts' weights to block FP8 as DeepSeek-V3 checkpoints store them
        (e4m3, one fp32 scale per 128 x 128 block: ``gate_up_proj_scale_inv``,
        ``down_proj_scale_inv``); the forward then runs ``moe_mlp_fp8`` (activations quantized
        per token per 128 channels). The FP8 weights are frozen (no gradient); x and the router
        stay differentiable. The clamped SwiGLU (activation_limit) has no FP8 path."""
        if self.activation_limit is not None:
            raise ValueError("moe_ext.MoE.quantize_experts_fp8: activation_limit has no FP8 path")
        if self.is_fp8:
            return self
        for name in ("gate_up_proj", "down_proj"):
            w_q, scale = ops.quantize_weight_fp8(getattr(self, name).detach(), scale_format)
            setattr(self, name, nn.Parameter(w_q, requires_grad=False))
            setattr(self, f"{name}_scale_inv", nn.Parameter(scale, requires_grad=False))
        return self

    def _apply(self, fn, recurse=True):
        """``.to(dtype)`` / ``.half()`` leave FP8 experts' e4m3 weights and fp32 scales as they
        are (a cast would silently turn them into unscaled 16-bit weights); devices move."""
        keep = {
            id(p): p.dtype
            for n, p in self.named_parameters(recurse=False)
            if p.dtype == torch.float8_e4m3fn or n.endswith("_scale_inv")
        }
        if not keep:
            return super()._apply(fn, recurse)

        def fn_keeping_fp8(t):
            out = fn(t)
            want = keep.get(id(t))
            return out.to(want) if want is not None and out.dtype != want else out

        return super()._apply(fn_keeping_fp8, recurse)

    def _expert_mlp(self, x, weights, order, slot, offsets):
        """moe_mlp, or moe_mlp_fp8 for FP8 experts (x in bf16 then, unless it is fp16)."""
        if not self.is_fp8:
            w1, w2 = self.gate_up_proj, self.down_proj
            return ops.moe_mlp(
                x, w1, w2, weights, order, slot, offsets, self.activation, self.activation_limit
            )
        xl = x if x.dtype in (torch.bfloat16, torch.float16) else x.bfloat16()
        # frozen (an HF FP8 block's parameters may say requires_grad; HF gives them no gradient)
        w1, s1, w2, s2 = (
            t.detach()
            for t in (
                self.gate_up_proj,
                self.gate_up_proj_scale_inv,
                self.down_proj,
                self.down_proj_scale_inv,
            )
        )
        y = ops.moe_mlp_fp8(
            xl,
            w1,
            s1,
            w2,
            s2,
            weights,
            order,
            slot,
            offsets,
            self.activation,
        )
        return y.to(x.dtype)

    def _grouped_mlp(self, x_rows, offsets):
        """The expert MLP over rows already grouped by expert (identity order, weight 1)."""
        R = x_rows.shape[0]
        ident = torch.arange(R, device=x_rows.device, dtype=torch.int32)
        ones = torch.ones((R, 1), device=x_rows.device, dtype=torch.float32)
        return self._expert_mlp(x_rows, ones, ident, ident, offsets)

    def _experts(self, x, weights, ids, order, slot, offsets):
        if self.expert_parallel_group is not None:
            capacity = self._capacity(x.shape[0])
            x_local, offs, handle = ep.dispatch(
                x, ids, weights, self.num_experts, self.expert_parallel_group, capacity
            )
            y_local = self._grouped_mlp(x_local, offs)
            return ep.combine(y_local, handle)
        if self.apply_weights_to_input:  # Llama 4: expert(w * x), combined with weight 1
            k = weights.shape[1]
            xp = ops.permute(x, order, slot, k)
            w_rows = weights.reshape(-1).index_select(0, order.long()).to(x.dtype)
            y_rows = self._grouped_mlp(xp * w_rows.unsqueeze(1), offsets)
            return ops.unpermute(y_rows, order, slot, torch.ones_like(weights))
        return self._expert_mlp(x, weights, order, slot, offsets)

    def _capacity(self, T: int) -> int | None:
        if self.capacity_factor is None:
            return None
        return max(1, math.ceil(self.capacity_factor * T * self.top_k / self.num_experts))

    def forward(self, x: torch.Tensor, input_ids: torch.Tensor | None = None) -> torch.Tensor:
        """x [..., H] -> [..., H]. ``input_ids`` (the token ids of x's rows, shape x.shape[:-1])
        is needed by hash layers (``hash_vocab_size``) and ignored otherwise."""
        shape = x.shape
        if shape[-1] != self.hidden_size:
            raise ValueError(
                f"moe_ext.MoE: x must be [..., {self.hidden_size}], got {tuple(shape)}"
            )
        param = self.router.weight
        if x.dtype != param.dtype:
            raise TypeError(
                f"moe_ext.MoE: x is {x.dtype} but the layer's parameters are "
                f"{param.dtype}: cast one to the other (layer.to({x.dtype}) or "
                f"x.to({param.dtype}))"
            )
        if x.device != param.device:
            raise RuntimeError(
                f"moe_ext.MoE: x is on {x.device} but the layer is on {param.device}"
            )
        flat = x.reshape(-1, self.hidden_size)
        T = flat.shape[0]
        if self.tid2eid is not None and (input_ids is None or input_ids.numel() != T):
            raise ValueError(
                "moe_ext.MoE: a hash layer (hash_vocab_size) needs input_ids with one token id "
                f"per row of x ({T}), got "
                f"{None if input_ids is None else tuple(input_ids.shape)}"
            )
        shared_out, side = None, None
        if self.shared_expert is not None and flat.is_cuda and not torch.compiler.is_compiling():
            side = torch.cuda.Stream(device=flat.device)  # overlap with the routed experts
            side.wait_stream(torch.cuda.current_stream(flat.device))
            with torch.cuda.stream(side):
                shared_out = self._shared(flat)
        logits, weights, ids, counts, mean_prob = self._route(flat, input_ids)
        self.last_counts = counts
        if self.correction_bias is not None and self.training:
            self._bias_counts += counts.to(self._bias_counts.dtype)
        self._losses(logits, ids, counts, mean_prob, T, shape[:-1])
        capacity = None if self.expert_parallel_group is not None else self._capacity(T)
        order, slot, offsets = (None, None, None)
        if self.expert_parallel_group is None:
            order, slot, offsets = ops.sort_tokens(ids, self.num_experts, capacity)
        if self.checkpoint_experts and self.training:
            y = torch.utils.checkpoint.checkpoint(
                self._experts, flat, weights, ids, order, slot, offsets, use_reentrant=False
            )
        else:
            y = self._experts(flat, weights, ids, order, slot, offsets)
        if self.shared_expert is not None:
            if side is not None:
                torch.cuda.current_stream(flat.device).wait_stream(side)
                shared_out.record_stream(torch.cuda.current_stream(flat.device))
            else:
                shared_out = self._shared(flat)
            y = y + shared_out
        return y.reshape(shape)

    def _shared(self, x):
        out = self.shared_expert(x)
        if self.shared_expert_gate is not None:
            out = torch.sigmoid(self.shared_expert_gate(x)) * out
        return out

    # ------------------------------------------------------------------------------ HF
    @classmethod
    def from_hf(cls, block: nn.Module, **overrides) -> MoE:
        """A MoE layer with an HF MoE block's weights and routing (Mixtral, Qwen2/3-MoE, OLMoE,
        DeepSeek-V3 and DeepSeek-V4 families -- V4's hash layers included, whose forward then
        takes ``input_ids``): the tensors are shared, not copied. An HF ``FP8Experts`` block
        (an FP8 checkpoint, 128 x 128 weight blocks) gives a layer with FP8 experts."""
        gate, experts = block.gate, block.experts
        cfg = getattr(experts, "config", None)
        E, H = gate.weight.shape
        gated = getattr(experts, "has_gate", True)
        if (
            getattr(experts, "has_bias", False)
            or getattr(experts, "is_transposed", False)
            or not getattr(experts, "is_concatenated", True)
        ):
            raise ValueError(
                "moe_ext.MoE.from_hf: experts with biases, transposed or interleaved "
                "weights (e.g. gpt-oss) are not supported; use moe_ext.hf.register()"
            )
        w_up = experts.gate_up_proj if gated else experts.up_proj
        act_name = getattr(cfg, "hidden_act", None) or _hf_act_name(experts)
        base = (
            {
                "silu": "swiglu",
                "swish": "swiglu",
                "gelu": "geglu",
                "gelu_pytorch_tanh": "geglu_tanh",
            }[act_name]
            if gated
            else act_name
        )
        I = w_up.shape[1] // (2 if gated else 1)
        kwargs = dict(top_k=gate.top_k, activation=base)
        limit = _hf_swiglu_limit(experts)
        if limit is not None:
            kwargs["activation_limit"] = limit
        if hasattr(gate, "score_fn"):  # DeepSeek-V4 routers (top-k, or hash: tid2eid)
            kwargs.update(
                score_func=_hf_score_func(gate.score_fn),
                scaling_factor=float(gate.routed_scaling_factor),
                renormalize=True,
            )
            if hasattr(gate, "tid2eid"):
                kwargs["hash_vocab_size"] = gate.tid2eid.shape[0]
            else:
                kwargs["correction_bias"] = True
        elif hasattr(gate, "e_score_correction_bias"):  # DeepSeek-V3 router
            kwargs.update(
                score_func="sigmoid",
                num_groups=gate.num_group,
                topk_groups=gate.topk_group,
                scaling_factor=float(gate.routed_scaling_factor),
                renormalize=bool(gate.norm_topk_prob),
                correction_bias=True,
            )
        else:
            kwargs.update(renormalize=bool(getattr(gate, "norm_topk_prob", True)))
        shared = getattr(block, "shared_experts", None) or getattr(block, "shared_expert", None)
        if shared is not None:
            kwargs["shared_ffn_size"] = shared.down_proj.weight.shape[1]
            kwargs["shared_gate"] = getattr(block, "shared_expert_gate", None) is not None
        kwargs.update(overrides)
        layer = cls(H, I, E, dtype=gate.weight.dtype, device=gate.weight.device, **kwargs)
        layer.router.weight = gate.weight
        layer.gate_up_proj = w_up
        layer.down_proj = experts.down_proj
        if w_up.dtype == torch.float8_e4m3fn:  # HF FP8Experts (DeepSeek-V3 block FP8)
            from .hf import fp8_scales

            if tuple(getattr(experts, "block_size", None) or ()) != (128, 128):
                raise ValueError(
                    "moe_ext.MoE.from_hf: FP8 experts need 128 x 128 weight blocks, got "
                    f"block_size={getattr(experts, 'block_size', None)}"
                )
            s_up = experts.gate_up_proj_scale_inv if gated else experts.up_proj_scale_inv
            for name, w, s in (
                ("gate_up_proj", w_up, s_up),
                ("down_proj", experts.down_proj, experts.down_proj_scale_inv),
            ):
                scale = fp8_scales(s, w.shape[1], w.shape[2])
                setattr(layer, f"{name}_scale_inv", nn.Parameter(scale, requires_grad=False))
        if hasattr(gate, "e_score_correction_bias"):
            layer.correction_bias = gate.e_score_correction_bias
        if hasattr(gate, "tid2eid"):
            layer.tid2eid = gate.tid2eid
        if shared is not None:
            w = (
                torch.cat([shared.gate_proj.weight, shared.up_proj.weight])
                if gated
                else shared.up_proj.weight
            )
            layer.shared_expert.gate_up_proj.weight = nn.Parameter(w.detach().clone())
            layer.shared_expert.down_proj.weight = shared.down_proj.weight
            if layer.shared_expert_gate is not None:
                layer.shared_expert_gate.weight = block.shared_expert_gate.weight
        return layer


def _hf_act_name(experts) -> str:
    """HF's activation name of experts without a config (DeepSeek-V4 keeps only act_fn)."""
    act = getattr(experts, "act_fn", None)
    names = {"SiLU": "silu", "SiLUActivation": "silu", "GELUActivation": "gelu"}
    name = names.get(type(act).__name__) if act is not None else "silu"
    if name is None:
        raise ValueError(f"moe_ext.MoE.from_hf: experts activation {act!r} is not supported")
    return name


def _hf_swiglu_limit(experts) -> float | None:
    """DeepSeek-V4's clamped SwiGLU (experts.limit, applied by its _apply_gate), else None."""
    try:
        from transformers.models.deepseek_v4.modeling_deepseek_v4 import DeepseekV4Experts
    except ImportError:
        return None
    if getattr(type(experts), "_apply_gate", None) is DeepseekV4Experts._apply_gate:
        return float(experts.limit)
    return None


def _hf_score_func(score_fn) -> str:
    """moe_ext's score_func for an HF router's score module (DeepSeek-V4: ACT2FN[...])."""
    name = type(score_fn).__name__
    table = {"SqrtSoftplusActivation": "sqrtsoftplus", "Sigmoid": "sigmoid", "Softmax": "softmax"}
    if name not in table:
        raise ValueError(f"moe_ext.MoE.from_hf: router score function {name} is not supported")
    return table[name]
