"""route_with_stats (per-expert counts and mean scores from the routing pass), the aux losses
built on it, their gradients, and the router kernel's memory-traffic proxies on the emulator."""

from __future__ import annotations

import pytest
import torch
from conftest import backends_for, device_of, op, reference
from test_route import make_bias, make_logits

import moe_ext

STATS_BACKENDS = backends_for("route_with_stats")
EMU = "emu" in STATS_BACKENDS


def expected_stats(logits, top_k, **kw):
    """counts and mean scores computed from reference.route and reference.scores."""
    w, ids = reference.route(logits, top_k, **kw)
    E = logits.shape[1]
    counts = torch.bincount(ids.reshape(-1).long(), minlength=E).to(torch.int32)
    s = reference.scores(logits, kw.get("score_func", "softmax"))
    mean = s.mean(0) if logits.shape[0] else s.new_zeros(E)
    return w, ids, counts, mean


CASES = [
    dict(T=1000, E=8, k=2),
    dict(T=1000, E=60, k=4, score_func="sigmoid", renormalize=False),
    dict(
        T=333,
        E=256,
        k=8,
        score_func="sigmoid",
        bias=True,
        num_groups=8,
        topk_groups=4,
        scaling_factor=2.5,
    ),
    dict(
        T=129,
        E=256,
        k=6,
        score_func="sqrtsoftplus",
        bias=True,
        scaling_factor=1.5,
    ),
    dict(
        T=50, E=64, k=8, score_func="sqrtsoftplus", renormalize=False, num_groups=8, topk_groups=2
    ),
    dict(T=3, E=1000, k=8),
    dict(T=1, E=7, k=7),
    dict(T=0, E=16, k=2),
]


@pytest.mark.parametrize("backend", STATS_BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_route_with_stats_vs_reference(backend, case, dtype):
    case = dict(case)
    T, E, k = case.pop("T"), case.pop("E"), case.pop("k")
    if case.pop("bias", False):
        case["correction_bias"] = make_bias(E)
    logits = make_logits(T, E, dtype)
    dev = device_of(backend)
    kw = {n: v.to(dev) if isinstance(v, torch.Tensor) else v for n, v in case.items()}
    w, ids, counts, mean = op(backend, "route_with_stats")(logits.to(dev), k, **kw)
    rw, rids, rcounts, rmean = expected_stats(logits, k, **case)
    assert torch.equal(ids.cpu(), rids)
    assert counts.dtype == torch.int32 and torch.equal(counts.cpu(), rcounts)
    assert int(counts.sum()) == T * k
    torch.testing.assert_close(w.cpu(), rw, atol=1e-6, rtol=1e-5)
    assert mean.dtype == torch.float32 and mean.shape == (E,)
    torch.testing.assert_close(mean.cpu(), rmean, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("backend", STATS_BACKENDS)
def test_route_with_stats_matches_route_and_is_deterministic(backend):
    logits = make_logits(777, 64).to(device_of(backend))
    outs = [
        op(backend, "route_with_stats")(logits, 6, "softmax", True, None, 8, 2, 1.0)
        for _ in range(2)
    ]
    for a, b in zip(*outs):
        assert torch.equal(a, b)  # bit-identical, mean_prob included
    w, ids = op(backend, "route")(logits, 6, "softmax", True, None, 8, 2, 1.0)
    assert torch.equal(ids, outs[0][1]) and torch.equal(w, outs[0][0])


def test_load_balancing_loss_matches_hf_mixtral():
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    E, k = 8, 2
    logits = make_logits(512, E)
    _, _, counts, mean = moe_ext.route_with_stats(logits, k)
    ours = moe_ext.load_balancing_loss(counts, mean, logits.shape[0])
    hf = load_balancing_loss_func((logits,), E, k)
    torch.testing.assert_close(ours, hf, atol=1e-6, rtol=1e-5)


def test_load_balancing_loss_uniform_is_k():
    # every expert gets T*k/E assignments and mean probability 1/E -> loss = k
    E, k, T = 8, 2, 64
    counts = torch.full((E,), T * k // E, dtype=torch.int32)
    mean = torch.full((E,), 1.0 / E)
    assert moe_ext.load_balancing_loss(counts, mean, T).item() == pytest.approx(k)


@pytest.mark.parametrize("score_func", list(reference.SCORE_FUNCS))
@pytest.mark.parametrize("renormalize", [True, False])
def test_stats_gradcheck(score_func, renormalize):
    # d(loss)/d(logits) through both outputs that carry gradient: weights and mean_prob
    logits = make_logits(6, 8, torch.float64).requires_grad_()
    gw = torch.randn(6, 3, dtype=torch.float64)

    def f(x):
        w, _, counts, mean = moe_ext.route_with_stats(
            x, 3, score_func, renormalize, None, 1, 1, 1.5
        )
        return (w * gw).sum() + moe_ext.load_balancing_loss(counts, mean, x.shape[0])

    assert torch.autograd.gradcheck(f, (logits,))


@pytest.mark.parametrize("backend", [b for b in STATS_BACKENDS if b != "cpu"])
@pytest.mark.parametrize("score_func", ["sigmoid", "sqrtsoftplus"])
def test_stats_backward_matches_cpu(backend, score_func):
    logits = make_logits(100, 64)
    gw = torch.randn(100, 8)
    grads = []
    for b in ("cpu", backend):
        x = logits.clone().to(device_of(b)).requires_grad_()
        w, _, counts, mean = op(b, "route_with_stats")(x, 8, score_func, True, None, 8, 3, 2.5)
        loss = (w * gw.to(x.device)).sum() + moe_ext.load_balancing_loss(counts, mean, 100)
        loss.backward()
        grads.append(x.grad.cpu())
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)


def test_router_z_loss():
    logits = make_logits(50, 16).requires_grad_()
    z = moe_ext.router_z_loss(logits)
    ref = torch.logsumexp(logits.detach().double(), -1).square().mean()
    torch.testing.assert_close(z.double(), ref, atol=1e-6, rtol=1e-6)
    z.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert moe_ext.router_z_loss(torch.zeros(0, 4)).item() == 0.0


def test_route_with_stats_opcheck():
    torch.library.opcheck(
        torch.ops.moe_ext.route_with_stats.default, (make_logits(9, 16).requires_grad_(), 4)
    )


# --- performance proxies: the emulator's counters of the router kernel -----------------------


@pytest.mark.skipif(not EMU, reason="emulator backend not built")
@pytest.mark.parametrize("dtype,elem", [(torch.float32, 4), (torch.bfloat16, 2)])
@pytest.mark.parametrize("E,k", [(256, 8), (64, 8), (128, 4)])
def test_route_kernel_traffic_is_one_pass(dtype, elem, E, k):
    # Logits read once, weights + ids written once, touching the fewest 32-byte sectors possible
    # (a token's k weights / ids occupy ceil(4k / 32) sectors each).
    T = 64
    torch.ops.moe_ext_emu.route(make_logits(T, E, dtype), k)
    s = moe_ext.emu.last_launch_stats()
    ideal_read, ideal_written = T * E * elem, T * k * 8
    assert s["global_bytes_read"] == ideal_read
    assert s["global_bytes_written"] == ideal_written
    out_sectors = 2 * T * -(-4 * k // 32)
    assert s["global_sectors"] == ideal_read // 32 + out_sectors  # fully coalesced loads
