"""Router auxiliary losses, built on route_with_stats' statistics.

``weights, ids, counts, mean_prob = moe_ext.route_with_stats(logits, k)`` gives, without another
pass over the logits, the per-expert assignment counts and mean router probabilities that the
load-balancing loss needs; gradients flow to the logits through ``mean_prob``.
"""

from __future__ import annotations

import torch


def load_balancing_loss(
    counts: torch.Tensor, mean_prob: torch.Tensor, num_tokens: int
) -> torch.Tensor:
    """Switch-Transformer load-balancing loss, as HF transformers computes it for top-k routers:
    ``E * sum_e (counts[e] / T) * mean_prob[e]`` (counts = assignments over all k choices).

    Args:
        counts: ``[E]`` int32 assignments per expert; mean_prob: ``[E]`` mean router
            probability per expert (differentiable); num_tokens: T.
    Returns:
        a scalar in mean_prob's dtype; 1.0 * k when routing is perfectly uniform.
    """
    E = mean_prob.shape[0]
    return E * (counts.to(mean_prob.dtype) * mean_prob).sum() / max(num_tokens, 1)


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE router z-loss: mean over tokens of ``logsumexp(logits)^2`` (computed in fp32),
    which keeps router logits small. Args: logits ``[T, E]``. Returns a scalar fp32 tensor."""
    z = torch.logsumexp(logits.float(), dim=-1)
    return (z * z).mean() if logits.shape[0] > 0 else z.new_zeros(())
