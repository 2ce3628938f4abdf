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


@dataclass(frozen=True)
class RouterShape:
    """A router configuration: E routed experts, k per token, extra moe_ext.route arguments."""

    name: str
    num_experts: int
    top_k: int
    route: dict = field(default_factory=dict)


# Routers for bench_route / the route tests: those of PRESETS plus current models whose router
# matters at its real E and k (their expert FFN shapes are not needed there). From the public
# configs: Nemotron 3 Super (nemotron_h: sigmoid + correction bias, E=512, top-22; n_group=1
# assumed), Qwen3-Next-80B-A3B (softmax, renormalised, E=512, top-10; Qwen3.5's large MoE routes
# the same way), Kimi-K2 (a DeepSeek-V3 model: sigmoid + bias, E=384, top-8, n_group =
# topk_group = 1, routed_scaling_factor 2.827), Hy3 (HYV3: sigmoid + bias, E=192, top-8, scaling
# 2.826), DeepSeek-V4 (sqrtsoftplus + bias, E=256, top-6, scaling 1.5) and an E=1024 router.
# "bias" marks a correction_bias the benchmark draws at random.
ROUTERS = {
    s.name: s
    for s in [
        *(RouterShape(p.name, p.num_experts, p.top_k, p.route) for p in PRESETS.values()),
        RouterShape("nemotron-3-super", 512, 22, dict(score_func="sigmoid", bias=True)),
        RouterShape("qwen3-next-80b-a3b", 512, 10),
        RouterShape("kimi-k2", 384, 8, dict(score_func="sigmoid", bias=True, scaling_factor=2.827)),
        RouterShape("hy3", 192, 8, dict(score_func="sigmoid", bias=True, scaling_factor=2.826)),
        RouterShape(
            "deepseek-v4", 256, 6, dict(score_func="sqrtsoftplus", bias=True, scaling_factor=1.5)
        ),
        RouterShape("e1024-top8", 1024, 8),
        RouterShape(
            "e1024-top8-grouped",
            1024,
            8,
            dict(score_func="sigmoid", bias=True, num_groups=16, topk_groups=4),
        ),
    ]
}
