"""Model shapes for benchmarks and demos, from the public configs of each model.

H hidden size, I expert FFN width (moe_intermediate_size), E routed experts, k experts per token.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MoEShape:
    name: str
    hidden: int
    ffn: int
    num_experts: int
    top_k: int
    route: dict = field(default_factory=dict)  # extra moe_ext.route arguments
    shared_experts: int = 0

    def scaled(self, factor: int) -> MoEShape:
        """Same expert count and top-k, H and I divided by `factor` (for CPU runs)."""
        if factor == 1:
            return self
        return MoEShape(
            f"{self.name}/{factor}",
            self.hidden // factor,
            self.ffn // factor,
            self.num_experts,
            self.top_k,
            self.route,
            self.shared_experts,
        )


PRESETS = {
    s.name: s
    for s in [
        MoEShape("mixtral-8x7b", 4096, 14336, 8, 2),
        MoEShape("qwen3-30b-a3b", 2048, 768, 128, 8),
        MoEShape(
            "deepseek-v3",
            7168,
            2048,
            256,
            8,
            route=dict(score_func="sigmoid", num_groups=8, topk_groups=4, scaling_factor=2.5),
            shared_experts=1,
        ),
        MoEShape("olmoe-1b-7b", 2048, 1024, 64, 8, route=dict(renormalize=False)),
        MoEShape("gpt-oss-20b", 2880, 2880, 32, 4),
        MoEShape(
            "llama4-scout",
            5120,
            8192,
            16,
            1,
            route=dict(score_func="sigmoid", renormalize=False),
            shared_experts=1,
        ),
    ]
}
