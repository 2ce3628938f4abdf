"""Pure-PyTorch reference implementations: the executable spec of every moe_ext op.

Each function is written for clarity, not speed, and every backend (cpu, emu, cuda) is tested
against it. Notation: T tokens, H hidden size, E experts, k = top_k, N = T * k assignments.
"""

from __future__ import annotations

import torch

RENORM_EPS = 1e-20  # route's renormalisation: w / (sum(w) + RENORM_EPS)


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The accumulation / score dtype of every op: fp64 for fp64 inputs, else fp32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


_compute_dtype = acc_dtype

# moe_mlp's activations, the one table (the layer, the autograd formulas and the spec use it):
# a gated activation is act(gate) * up with its elementwise act below.
ELEMENTWISE_ACTIVATIONS = {
    "silu": torch.nn.functional.silu,
    "gelu": torch.nn.functional.gelu,
    "gelu_tanh": lambda v: torch.nn.functional.gelu(v, approximate="tanh"),
    "relu": torch.relu,
    "identity": lambda v: v,
}
GATED_ACTIVATIONS = {"swiglu": "silu", "geglu": "gelu", "geglu_tanh": "gelu_tanh"}
ACTIVATIONS = (*GATED_ACTIVATIONS, *ELEMENTWISE_ACTIVATIONS)


def activation_fn(name: str):
    """The elementwise function of activation `name` (for a gated one: the one applied to the
    gate half)."""
    return ELEMENTWISE_ACTIVATIONS[GATED_ACTIVATIONS.get(name, name)]


def apply_activation(h, activation: str, activation_limit: float | None = None):
    """moe_mlp's activation of h = x @ w1ᵀ: gated (``"swiglu"``, ...) act(gate) * up with gate
    the first half of the columns; with ``activation_limit`` (gated only, the clamped SwiGLU of
    DeepSeek-V4 and gpt-oss) gate is clamped to <= limit and up to [-limit, limit] first."""
    act = activation_fn(activation)
    if activation not in GATED_ACTIVATIONS:
        return act(h)
    inner = h.shape[-1] // 2
    gate, up = h[..., :inner], h[..., inner:]
    if activation_limit is not None:
        gate = gate.clamp(max=activation_limit)
        up = up.clamp(min=-activation_limit, max=activation_limit)
    return act(gate) * up


SCORE_FUNCS = ("softmax", "sigmoid", "sqrtsoftplus")  # route's score_func values


def scores(x: torch.Tensor, score_func: str) -> torch.Tensor:
    """Router scores of logits `x` [..., E], computed in acc_dtype(x.dtype) (fp32, fp64 for fp64).

    Args:
        x: logits, any float dtype.
        score_func: "softmax" (over the last dim), "sigmoid", or "sqrtsoftplus" =
            sqrt(softplus(x)) (DeepSeek-V4; torch's softplus: beta 1, threshold 20, i.e. x for x > 20).
    Returns:
        scores, x's shape, in the acc dtype. Raises ValueError for another score_func.
    """
    x = x.to(acc_dtype(x.dtype))
    if score_func == "softmax":
        return torch.softmax(x, dim=-1)
    if score_func == "sigmoid":
        return torch.sigmoid(x)
    if score_func == "sqrtsoftplus":
        return torch.nn.functional.softplus(x).sqrt()
    raise ValueError(f"score_func must be one of {SCORE_FUNCS}, got {score_func!r}")


def route_weights(logits, ids, score_func="softmax", renormalize=True, scaling_factor=1.0):
    """Weights of given experts ids[T, k] (DeepSeek-V4 hash routing): score(logits) gathered
    at ids, / (sum + RENORM_EPS) if renormalize, x scaling_factor; fp32 (fp64 for fp64)."""
    w = scores(logits, score_func).gather(1, ids.long())
    if renormalize:
        w = w / (w.sum(-1, keepdim=True) + RENORM_EPS)
    return w * scaling_factor


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
        logits: [T, E] float. Scores are computed in fp32 (fp64 for fp64 logits).
        top_k: experts per token, 1 <= top_k <= E.
        score_func: "softmax", "sigmoid" or "sqrtsoftplus" (see `scores`).
        renormalize: divide the chosen weights by their sum + 1e-20.
        correction_bias: optional [E], added to the scores for selection only (DeepSeek-V3).
        num_groups, topk_groups: group-limited routing; keep the `topk_groups` groups with the
            largest sum of their top-2 selection keys, then pick top-k among their experts.
        scaling_factor: multiplies the final weights.
    Returns:
        weights: [T, k] fp32 (fp64 for fp64 logits); ids: [T, k] int32, in descending
        selection-key order, ties to the lower expert id.
    Softmax is undefined for a row holding +inf or only -inf (this function returns NaN there);
    the ops raise on CPU for such rows and for NaN logits.
    """
    cdt = _compute_dtype(logits.dtype)
    score = scores(logits, score_func)
    keys = score if correction_bias is None else score + correction_bias.to(cdt)
    T, E = keys.shape
    if num_groups > 1:
        grouped = keys.view(T, num_groups, E // num_groups)
        top2 = torch.sort(grouped, dim=-1, descending=True, stable=True).values[..., :2]
        group_scores = top2.sum(-1)  # [T, G]
        gorder = torch.sort(group_scores, dim=-1, descending=True, stable=True).indices
        keep = torch.zeros_like(group_scores, dtype=torch.bool)
        keep.scatter_(1, gorder[:, :topk_groups], True)
        keep = keep.unsqueeze(-1).expand_as(grouped).reshape(T, E)
        keys = keys.masked_fill(~keep, float("-inf"))
    # stable descending sort = top-k with ties to the lower expert id
    ids = torch.sort(keys, dim=-1, descending=True, stable=True).indices[:, :top_k]
    weights = score.gather(1, ids)
    if renormalize:
        weights = weights / (weights.sum(-1, keepdim=True) + RENORM_EPS)
    weights = weights * scaling_factor
    return weights, ids.to(torch.int32)


def sort_tokens(
    ids: torch.Tensor, num_experts: int, capacity: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group the N = T*k assignments by expert (stable).

    Args:
        ids: [T, k] int32/int64 expert ids in [-1, E); -1 means "not routed here".
        num_experts: E.
        capacity: if set, each expert keeps only its first `capacity` assignments (flat order).
    Returns:
        order [N] int32: flat assignment index (t*k + j) at each sorted row;
        slot [N] int32: sorted row of each flat assignment, -1 if dropped;
        offsets [E] int32: cumulative row ends; expert e owns rows [offsets[e-1], offsets[e]).
        Dropped assignments (over capacity or id -1) occupy the rows after offsets[-1],
        in flat order.
    """
    flat = ids.reshape(-1).long()
    N, E, dev = flat.numel(), num_experts, flat.device
    rows = torch.arange(N, device=dev)
    # rank of each assignment among the earlier assignments to the same expert
    raw_key = torch.where(flat >= 0, flat, torch.full_like(flat, E))
    by_expert = torch.sort(raw_key, stable=True).indices
    starts = torch.bincount(raw_key, minlength=E + 1).cumsum(0) - torch.bincount(
        raw_key, minlength=E + 1
    )
    rank = torch.empty_like(flat)
    rank[by_expert] = rows - starts[raw_key[by_expert]]
    kept = flat >= 0
    if capacity is not None:
        kept &= rank < capacity
    key = torch.where(kept, flat, torch.full_like(flat, E))  # dropped sort last
    order = torch.sort(key, stable=True).indices
    slot = torch.empty_like(flat)
    slot[order] = rows
    slot = torch.where(kept, slot, torch.full_like(slot, -1))
    offsets = torch.bincount(key, minlength=E + 1)[:E].cumsum(0)
    return order.to(torch.int32), slot.to(torch.int32), offsets.to(torch.int32)


def permute(x: torch.Tensor, order: torch.Tensor, slot: torch.Tensor, top_k: int) -> torch.Tensor:
    """Gather token rows into expert-sorted order.

    Args:
        x: [T, H]; order, slot: [N] int32 from sort_tokens; top_k: k with N = T*k.
    Returns:
        xp: [N, H] in x's dtype, xp[i] = x[order[i] // k] for kept rows, 0 for dropped rows.
    """
    o = order.long()
    kept = slot.long()[o] >= 0
    xp = x[o // top_k]
    return xp * kept.unsqueeze(1).to(x.dtype)


def unpermute(
    yp: torch.Tensor, order: torch.Tensor, slot: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Weighted combine of expert outputs back to token order.

    Args:
        yp: [N, H]; order, slot: [N] int32; weights: [T, k] any float dtype.
    Returns:
        y: [T, H] in yp's dtype, y[t] = sum_j weights[t,j] * yp[slot[t*k+j]] over kept
        assignments, accumulated in fp32 (fp64 for fp64 yp) in j order.
    """
    T, k = weights.shape
    acc = _compute_dtype(yp.dtype)
    s = slot.long().view(T, k)
    y = torch.zeros(T, yp.shape[1], dtype=acc, device=yp.device)
    for j in range(k):
        kept = s[:, j] >= 0
        rows = yp[s[:, j].clamp_min(0)].to(acc)
        w = torch.where(kept, weights[:, j].to(acc), torch.zeros((), dtype=acc, device=yp.device))
        y = y + w.unsqueeze(1) * rows
    return y.to(yp.dtype)


def grouped_mm(
    a: torch.Tensor,
    b: torch.Tensor,
    offs: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Grouped GEMM with torch._grouped_mm's four forms.

    Args:
        a, b: same float dtype; offs: [G] int32 cumulative group ends (None for 3D x 3D);
        bias: optional [G, N_out] added to every output element of group g
            (for ragged-N, column c of group g gets bias[g, c]).
    Forms:
        2D x 3D  a[M,K] @ b[G,K,N] -> [M,N]; rows [offs[g-1], offs[g]) use b[g].
        3D x 2D  a[G,M,K] @ b[K,Ntot] -> [M,Ntot]; columns [offs[g-1], offs[g]) use a[g].
        2D x 2D  a[M,Ktot] @ b[Ktot,N] -> [G,M,N]; out[g] sums over k in [offs[g-1], offs[g]).
        3D x 3D  a[G,M,K] @ b[G,K,N] -> [G,M,N] (offs None).
        Rows/columns past offs[-1] are zero. Accumulates in fp32 (fp64 for fp64).
    Returns:
        out in out_dtype (default a.dtype).
    """
    acc = _compute_dtype(a.dtype)
    A, B = a.to(acc), b.to(acc)
    od = out_dtype or a.dtype
    bounds = [] if offs is None else [0] + offs.tolist()
    if a.dim() == 2 and b.dim() == 3:
        out = torch.zeros(a.shape[0], b.shape[2], dtype=acc, device=a.device)
        for g in range(b.shape[0]):
            lo, hi = bounds[g], bounds[g + 1]
            out[lo:hi] = A[lo:hi] @ B[g]
            if bias is not None:
                out[lo:hi] += bias[g].to(acc)
    elif a.dim() == 3 and b.dim() == 2:
        out = torch.zeros(a.shape[1], b.shape[1], dtype=acc, device=a.device)
        for g in range(a.shape[0]):
            lo, hi = bounds[g], bounds[g + 1]
            out[:, lo:hi] = A[g] @ B[:, lo:hi]
            if bias is not None:
                out[:, lo:hi] += bias[g, lo:hi].to(acc)
    elif a.dim() == 2 and b.dim() == 2:
        G = offs.numel()
        out = torch.zeros(G, a.shape[0], b.shape[1], dtype=acc, device=a.device)
        for g in range(G):
            lo, hi = bounds[g], bounds[g + 1]
            out[g] = A[:, lo:hi] @ B[lo:hi]
            if bias is not None:
                out[g] += bias[g].to(acc)
    else:
        out = A @ B
        if bias is not None:
            out = out + bias.to(acc).unsqueeze(1)
    return out.to(od)


def moe_mlp(x, w1, w2, weights, order, slot, offsets, activation="swiglu", activation_limit=None):
    """y[t] = sum_j weights[t,j] * w2[e] @ act(w1[e] @ x[t]) over kept assignments (slot >= 0),
    e the expert whose row range [offsets[e-1], offsets[e]) holds the assignment's sorted row.
    Dense per-assignment math in x's dtype (use fp64 inputs for ground truth); differentiable."""
    T, H = x.shape
    k = weights.shape[1]
    N = T * k
    E = w1.shape[0]
    rows = torch.arange(N, device=x.device)
    expert_of_row = torch.searchsorted(offsets.long(), rows, right=True)  # E: no expert
    expert = torch.empty(N, dtype=torch.long, device=x.device)
    expert[order.long()] = expert_of_row
    kept = (slot >= 0) & (expert < E)
    e = expert.clamp_max(E - 1)
    xt = x.repeat_interleave(k, dim=0)  # [N, H], flat assignment order t*k+j
    h = torch.einsum("nih,nh->ni", w1[e], xt)
    a = apply_activation(h, activation, activation_limit)
    z = torch.einsum("nhi,ni->nh", w2[e], a)
    w = weights.reshape(-1).to(z.dtype) * kept.to(z.dtype)
    return (z * w.unsqueeze(1)).view(T, k, H).sum(1)


FP8_E4M3_MAX = 448.0  # the largest finite float8_e4m3fn
FP8_AMAX_FLOOR = 1e-10  # an all-zero group still gets a positive scale
FP8_SCALE_FORMATS = ("float", "ue8m0")


def fp8_group_scales(amax: torch.Tensor, scale_format: str) -> torch.Tensor:
    """scale = max(amax, 1e-10) / 448 in fp32; "ue8m0": rounded up to a power of two,
    2^ceil(log2(scale)), computed exactly from the float's bits (frexp), not through log2."""
    if scale_format not in FP8_SCALE_FORMATS:
        raise ValueError(f"scale_format must be one of {FP8_SCALE_FORMATS}, got {scale_format!r}")
    scale = amax.float().clamp(min=FP8_AMAX_FLOOR) / FP8_E4M3_MAX
    if scale_format == "ue8m0":
        mant, exp = torch.frexp(scale)  # scale = mant * 2^exp, mant in [0.5, 1)
        scale = torch.where(mant == 0.5, scale, torch.ldexp(torch.ones_like(scale), exp))
    return scale


def quantize_fp8(x: torch.Tensor, group_size: int = 128, scale_format: str = "float"):
    """Per-token-group FP8 quantization (vLLM per_token_group_quant_fp8, DeepSeek-V3 act_quant).

    Args:
        x: [M, K] bf16/fp16/fp32.
        group_size: columns per scale (the last group of a row may be shorter).
        scale_format: "float" (amax / 448) or "ue8m0" (rounded up to a power of two).
    Returns:
        x_q [M, K] float8_e4m3fn = saturate(x / scale) rounded to nearest even, and scale
        [M, ceil(K / group_size)] fp32, so that x ~= x_q.float() * scale (per group).
    """
    if x.dim() != 2:
        raise ValueError(f"x must be [M, K], got {tuple(x.shape)}")
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    M, K = x.shape
    groups = -(-K // group_size)
    xf = x.float()
    pad = groups * group_size - K
    padded = torch.nn.functional.pad(xf, (0, pad)).view(M, groups, group_size)
    amax = padded.abs().amax(-1) if K > 0 else xf.new_zeros(M, 0)
    scale = fp8_group_scales(amax, scale_format)
    full = scale.repeat_interleave(group_size, dim=1)[:, :K]
    q = (xf / full).clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(torch.float8_e4m3fn)
    return q, scale


FP8_SCALE_BLOCK = 128  # grouped_mm_fp8: the K block of a scale, and b's N block


def _expand_blocks(scale: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    return scale.repeat_interleave(FP8_SCALE_BLOCK, dim=dim).narrow(dim, 0, size)


def grouped_mm_fp8(a, a_scale, b, b_scale, offs=None, out_dtype=torch.bfloat16):
    """DeepSeek-V3 block-FP8 grouped GEMM, evaluated in fp64 (exact up to fp64 rounding).

    Args:
        a: [M, K] float8_e4m3fn (rows cut into groups by offs), or [G, M, K] when offs is None.
        a_scale: a.shape[:-1] + [ceil(K / 128)] fp32, one scale per row per 128-wide K block.
        b: [G, N, K] float8_e4m3fn (K contiguous: HF/vLLM expert weight layout).
        b_scale: [G, ceil(N / 128), ceil(K / 128)] fp32 (HF ``weight_scale_inv``, a multiplier).
        offs: [G] int32 cumulative row ends, or None (batched).
    Returns:
        out[m, n] = sum_kb a_scale[m, kb] * b_scale[g, n // 128, kb] * sum_{k in kb} a[m, k] b[g, n, k]
        in out_dtype; [M, N] (rows past offs[-1] zero) or [G, M, N].
    """
    G, N, K = b.shape
    bd = b.double() * _expand_blocks(_expand_blocks(b_scale.double(), 1, N), 2, K)
    ad = a.double() * _expand_blocks(a_scale.double(), a.dim() - 1, K)
    if offs is None:
        return torch.bmm(ad, bd.transpose(1, 2)).to(out_dtype)
    out = torch.zeros(a.shape[0], N, dtype=torch.float64, device=a.device)
    start = 0
    for g, end in enumerate(offs.tolist()):
        out[start:end] = ad[start:end] @ bd[g].T
        start = end
    return out.to(out_dtype)


def moe_mlp_fp8(x, w1, w1_scale, w2, w2_scale, weights, order, slot, offsets, activation="swiglu"):
    """moe_mlp with block-FP8 experts (HF ``FP8Experts`` layout), step by step as the contract
    states it: each gathered row of x quantized per 128 columns (``quantize_fp8``), h =
    ``grouped_mm_fp8`` in x's dtype, the activation in fp32 quantized per 128 columns from fp32,
    the second ``grouped_mm_fp8`` in x's dtype, ``unpermute``'s combine. Each GEMM in fp64."""
    k = weights.shape[1]
    x_q, x_s = quantize_fp8(x)
    rows = order.long() // k
    x_rows = x_q.view(torch.uint8)[rows].view(torch.float8_e4m3fn)
    h = grouped_mm_fp8(x_rows, x_s[rows], w1, w1_scale, offsets, out_dtype=x.dtype)
    a_q, a_s = quantize_fp8(apply_activation(h.float(), activation))
    z = grouped_mm_fp8(a_q, a_s, w2, w2_scale, offsets, out_dtype=x.dtype)
    return unpermute(z, order, slot, weights)


def dequantize_fp8_blocks(w, scale, dtype=torch.float32):
    """w[..., R, C] e4m3 times its per-(128 x 128)-block scale[..., ceil(R/128), ceil(C/128)]."""
    R, C = w.shape[-2:]
    full = _expand_blocks(_expand_blocks(scale.float(), scale.dim() - 2, R), scale.dim() - 1, C)
    return (w.float() * full).to(dtype)
