"""moe_ext.MoE: HF blocks adopted by from_hf give the blocks' outputs and gradients; every option
against a direct torch formulation; determinism; torch.compile (no graph breaks, no recompiles
as T varies), torch.export; CUDA-only checks (no device->host sync, CUDA-graph capture of
forward + backward) run where a GPU is present.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import moe_ext
from moe_ext import reference

H, I, E, K = 32, 24, 8, 2


def hf_block(name, seed=0):
    transformers = pytest.importorskip("transformers")
    from test_hf import config

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForCausalLM.from_config(config(name))
    block = model.model.layers[0].mlp
    if name == "deepseek_v3":
        with torch.no_grad():
            block.gate.e_score_correction_bias.normal_()
    return block


@pytest.mark.parametrize("name", ["mixtral", "qwen3_moe", "olmoe", "deepseek_v3"])
def test_from_hf_matches_block(name):
    block = hf_block(name)
    layer = moe_ext.MoE.from_hf(block)
    assert layer.gate_up_proj is block.experts.gate_up_proj  # shared, not copied
    x = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(1))
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = layer(xa), block(xb)
    torch.testing.assert_close(ya, yb, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(ya)
    ga = torch.autograd.grad(ya, [xa, block.experts.gate_up_proj, block.experts.down_proj], g)
    gb = torch.autograd.grad(yb, [xb, block.experts.gate_up_proj, block.experts.down_proj], g)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def make_layer(**kw):
    torch.manual_seed(0)
    return moe_ext.MoE(H, I, E, kw.pop("top_k", K), **kw)


def torch_forward(layer, x, capacity=None):
    """The layer's math with torch ops and reference.moe_mlp (no noise/jitter: eval mode)."""
    flat = x.reshape(-1, H)
    logits = flat @ layer.router.weight.t()
    w, ids = reference.route(
        logits.float(), layer.top_k, **layer.route_args, correction_bias=layer.correction_bias
    )
    order, slot, offsets = reference.sort_tokens(ids, E, capacity)
    y = reference.moe_mlp(
        flat, layer.gate_up_proj, layer.down_proj, w, order, slot, offsets, layer.activation
    )
    if layer.shared_expert is not None:
        y = y + layer.shared_expert(flat)
    return y.reshape(x.shape), logits, ids


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"activation": "geglu"},
        {"activation": "gelu"},
        {"shared_ffn_size": 16},
        {
            "score_func": "sigmoid",
            "num_groups": 4,
            "topk_groups": 2,
            "scaling_factor": 2.5,
            "correction_bias": True,
        },
        {"capacity_factor": 0.5},
    ],
    ids=["swiglu", "geglu", "gelu", "shared", "deepseek_routing", "capacity"],
)
def test_matches_torch_formulation(kw):
    layer = make_layer(**kw).eval()
    if layer.correction_bias is not None:
        layer.correction_bias.normal_()
    x = torch.randn(3, 7, H)
    T = 21
    cap = None if layer.capacity_factor is None else math.ceil(layer.capacity_factor * T * K / E)
    expect, _, _ = torch_forward(layer, x, cap)
    torch.testing.assert_close(layer(x), expect, rtol=1e-4, atol=1e-5)


def test_aux_and_z_losses():
    layer = make_layer(aux_loss_coef=0.01, z_loss_coef=1e-3).eval()
    x = torch.randn(20, H)
    layer(x)
    logits = x @ layer.router.weight.t()
    probs = torch.softmax(logits, -1)
    _, ids = torch.topk(probs, K)
    counts = torch.zeros(E).scatter_add_(0, ids.flatten(), torch.ones(20 * K))
    lb = E * (counts / 20 * probs.mean(0)).sum()
    torch.testing.assert_close(layer.aux_loss, 0.01 * lb, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(layer.z_loss, 1e-3 * (torch.logsumexp(logits, -1) ** 2).mean())
    assert layer.aux_loss.requires_grad  # gradients reach the router


def test_sequence_balance_loss_deepseek():
    layer = make_layer(score_func="sigmoid", seq_aux_loss_coef=1.0).eval()
    x = torch.randn(2, 6, H)
    layer(x)
    logits = x.reshape(-1, H) @ layer.router.weight.t()
    s = torch.sigmoid(logits).view(2, 6, E)
    _, ids = torch.topk(torch.sigmoid(logits), K)
    loss = 0.0
    for b in range(2):
        f = torch.zeros(E).scatter_add_(0, ids.view(2, 6, K)[b].flatten(), torch.ones(6 * K))
        f = f * E / (K * 6)
        p = (s[b] / s[b].sum(-1, keepdim=True)).mean(0)
        loss = loss + (f * p).sum()
    torch.testing.assert_close(layer.aux_loss, loss / 2, rtol=1e-5, atol=1e-6)


def test_noise_and_jitter_only_in_training():
    layer = make_layer(noisy_gating=True, router_jitter=0.1)
    x = torch.randn(16, H)
    layer.eval()
    assert torch.equal(layer(x), layer(x))
    layer.train()
    torch.manual_seed(1)
    a = layer(x)
    torch.manual_seed(2)
    b = layer(x)
    assert not torch.equal(a, b)


def test_correction_bias_update_balances():
    layer = make_layer(correction_bias=True)
    layer.train()
    x = torch.randn(64, H)
    x[:, :] += 3 * layer.router.weight[0]  # push everyone to expert 0
    layer(x)
    counts = layer._bias_counts.clone()
    layer.update_correction_bias(0.01)
    expect = 0.01 * torch.sign(counts.mean() - counts)
    torch.testing.assert_close(layer.correction_bias, expect)
    assert layer.correction_bias[counts.argmax()] < 0 and layer._bias_counts.sum() == 0


def test_llama4_weights_on_input():
    layer = make_layer(
        top_k=1, score_func="sigmoid", renormalize=False, apply_weights_to_input=True
    ).eval()
    x = torch.randn(10, H)
    logits = x @ layer.router.weight.t()
    w, ids = reference.route(logits, 1, score_func="sigmoid", renormalize=False)
    y = torch.zeros_like(x)
    for t in range(10):
        e = ids[t, 0]
        h = layer.gate_up_proj[e] @ (x[t] * w[t, 0])
        y[t] = layer.down_proj[e] @ (torch.nn.functional.silu(h[:I]) * h[I:])
    torch.testing.assert_close(layer(x), y, rtol=1e-4, atol=1e-5)


def test_checkpointing_gives_same_grads():
    x = torch.randn(12, H)
    grads = []
    for ckpt in (False, True):
        layer = make_layer(checkpoint_experts=ckpt, shared_ffn_size=8).train()
        layer(x).square().sum().backward()
        grads.append([p.grad.clone() for p in layer.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_deterministic_and_deterministic_mode():
    x = torch.randn(4, 9, H)
    runs = []
    with (
        torch.use_deterministic_algorithms_context(True)
        if hasattr(torch, "use_deterministic_algorithms_context")
        else _deterministic()
    ):
        for _ in range(2):
            layer = make_layer(shared_ffn_size=8, aux_loss_coef=0.01).train()
            xx = x.clone().requires_grad_(True)
            y = layer(xx)
            (y.square().sum() + layer.aux_loss).backward()
            runs.append([y.detach(), xx.grad] + [p.grad for p in layer.parameters()])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


class _deterministic:
    def __enter__(self):
        self.prev = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True)

    def __exit__(self, *exc):
        torch.use_deterministic_algorithms(self.prev)


def test_compile_fullgraph_no_recompiles_and_no_sync():
    layer = make_layer(shared_ffn_size=8, aux_loss_coef=0.01).eval()
    torch._dynamo.reset()
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    f = torch.compile(layer, fullgraph=True, backend=backend)
    for T in (5, 9, 17):
        x = torch.randn(T, H)
        torch._dynamo.mark_dynamic(x, 0)  # the token count varies; hyper-parameters are constants
        with torch._dynamo.config.patch(error_on_recompile=T > 9):
            torch.testing.assert_close(f(x), layer(x), rtol=1e-5, atol=1e-6)
    assert len(graphs) == 1
    code = graphs[0].code
    assert ".item()" not in code and "tolist" not in code and "_local_scalar_dense" not in code


def test_export():
    layer = make_layer().eval()
    x = torch.randn(6, H)
    prog = torch.export.export(layer, (x,))
    torch.testing.assert_close(prog.module()(x), layer(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA-only: sync mode, CUDA graphs")
def test_cuda_no_sync_and_graph_capture():
    layer = make_layer(shared_ffn_size=16).cuda().to(torch.bfloat16)
    x = torch.randn(64, H, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    torch.cuda.set_sync_debug_mode("error")
    try:
        layer(x).float().square().sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    static_x = x.detach().clone().requires_grad_(True)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            layer(static_x).float().sum().backward()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        y = layer(static_x)
        y.float().sum().backward()
    g.replay()
    torch.testing.assert_close(y, layer(static_x))
