"""A whole MoE layer composed from the ops, under torch.compile(fullgraph=True).

route -> sort_tokens -> permute -> grouped_mm (gate_up) -> silu(gate) * up -> grouped_mm (down)
-> unpermute. The token count T changes between calls; since no op's output shape depends on
the routing (DESIGN.md principle 1), one dynamic-T graph must serve every call: no graph
breaks, no recompiles, outputs and grads equal to eager.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch._dynamo
import torch._dynamo.testing
import torch.nn.functional as F
from conftest import BACKENDS, device_of, reference

import moe_ext

# compile needs the fake kernels and autograd registered on torch.ops.moe_ext
COMPILE_BACKENDS = [b for b in BACKENDS if b != "emu"]
TS = (5, 17, 33)
H, I, E, K = 16, 8, 6, 2


OP_NAMES = ("route", "sort_tokens", "permute", "unpermute", "grouped_mm")


def ops_from(namespace) -> SimpleNamespace:
    """The five ops from one namespace, so the same layer runs on moe_ext and reference."""
    return SimpleNamespace(**{n: getattr(namespace, n) for n in OP_NAMES})


TORCH_OPS = ops_from(torch.ops.moe_ext)
WRAPPERS = ops_from(moe_ext)
REFERENCE = ops_from(reference)


def make_params(hf_layout: bool, dtype=torch.float32, device="cpu"):
    """Router [H, E]; experts either [E, H, 2I] / [E, I, H] (x @ w) or HF's [E, 2I, H] /
    [E, H, I] (used through a transposed view, no copy)."""
    router = torch.randn(H, E) / H**0.5
    if hf_layout:
        w1 = torch.randn(E, 2 * I, H) / H**0.5
        w2 = torch.randn(E, H, I) / I**0.5
    else:
        w1 = torch.randn(E, H, 2 * I) / H**0.5
        w2 = torch.randn(E, I, H) / I**0.5
    return [t.to(device=device, dtype=dtype).requires_grad_() for t in (router, w1, w2)]


def moe_layer(
    ops: SimpleNamespace, x, router, w1, w2, hf_layout: bool, capacity=None, score_func="softmax"
):
    logits = x @ router.to(x.dtype)
    weights, ids = ops.route(logits, K, score_func)
    order, slot, offsets = ops.sort_tokens(ids, E, capacity)
    xp = ops.permute(x, order, slot, K)
    gate_up = ops.grouped_mm(xp, w1.transpose(-2, -1) if hf_layout else w1, offsets)
    gate, up = gate_up.chunk(2, dim=-1)
    h = F.silu(gate) * up
    yp = ops.grouped_mm(h, w2.transpose(-2, -1) if hf_layout else w2, offsets)
    return ops.unpermute(yp, order, slot, weights)


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    prev = torch._dynamo.config.error_on_recompile
    yield
    torch._dynamo.config.error_on_recompile = prev
    torch._dynamo.reset()


def grads(fn, x, params, gy, mark_dynamic=False):
    x = x.detach().requires_grad_()
    if mark_dynamic:  # on the very tensor passed in: marks do not survive detach()
        torch._dynamo.mark_dynamic(x, 0)
    y = fn(x, *params)
    return (y, *torch.autograd.grad(y, (x, *params), gy))


def run_sweep(counter, fn_compiled, fn_eager, params, device, dtype, atol, rtol):
    """Call with every T in TS (T marked dynamic on the first call); compare with eager; the
    compile count must not grow after the first call. (The first call may compile more than
    once: with dynamic=True dynamo restarts its analysis to specialise a float argument.)"""
    first_count = None
    for n, T in enumerate(TS):
        x = torch.randn(T, H, device=device, dtype=dtype)
        if n == 1:  # from here on a recompile is an error, not a silent slowdown
            torch._dynamo.config.error_on_recompile = True
        gy = torch.randn(T, H, device=device, dtype=dtype)
        got = grads(fn_compiled, x, params, gy, mark_dynamic=n == 0)
        want = grads(fn_eager, x, params, gy)
        assert got[0].shape == (T, H) and got[0].dtype == dtype
        for name, g, w in zip(("y", "dx", "drouter", "dw1", "dw2"), got, want):
            torch.testing.assert_close(g, w, atol=atol, rtol=rtol, msg=lambda m: f"{name}: {m}")
        if n == 0:
            first_count = counter.frame_count
            assert first_count >= 1, "the compiled function never reached the backend"
    assert counter.frame_count == first_count, (
        f"recompiled: {counter.frame_count - first_count} extra compiles for T={TS}"
    )


@pytest.mark.parametrize("capacity", [None, 3], ids=["nocap", "cap3"])
@pytest.mark.parametrize("hf_layout", [False, True], ids=["w_EHN", "hf_ENH"])
@pytest.mark.parametrize("backend", COMPILE_BACKENDS)
def test_compiled_moe_aot_eager(backend, hf_layout, capacity, fresh_dynamo):
    device = device_of(backend)
    params = make_params(hf_layout, device=device)

    def fn(x, router, w1, w2):
        return moe_layer(TORCH_OPS, x, router, w1, w2, hf_layout, capacity)

    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(fn, backend=counter, fullgraph=True)
    run_sweep(counter, compiled, fn, params, device, torch.float32, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", COMPILE_BACKENDS)
def test_compiled_moe_wrappers_bf16(backend, fresh_dynamo):
    """The public moe_ext.* wrappers trace too (no graph break in their validation), in bf16
    with sigmoid routing; dynamic=True instead of mark_dynamic."""
    device = device_of(backend)
    params = make_params(True, dtype=torch.bfloat16, device=device)

    def fn(x, router, w1, w2):
        return moe_layer(WRAPPERS, x, router, w1, w2, True, score_func="sigmoid")

    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(fn, backend=counter, fullgraph=True, dynamic=True)
    run_sweep(counter, compiled, fn, params, device, torch.bfloat16, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("hf_layout", [False, True], ids=["w_EHN", "hf_ENH"])
@pytest.mark.parametrize("backend", COMPILE_BACKENDS)
def test_eager_moe_matches_reference(backend, hf_layout):
    """The composed layer itself (forward and grads) against the same layer on reference.py."""
    device = device_of(backend)
    params = make_params(
        hf_layout, dtype=torch.float64 if backend == "cpu" else torch.float32, device=device
    )
    dtype = params[0].dtype
    for T in TS:
        x = torch.randn(T, H, device=device, dtype=dtype)
        gy = torch.randn(T, H, device=device, dtype=dtype)
        got = grads(lambda *a: moe_layer(TORCH_OPS, *a, hf_layout), x, params, gy)
        want = grads(
            lambda *a: moe_layer(REFERENCE, *[t.cpu() for t in a], hf_layout),
            x,
            params,
            gy.cpu(),
        )
        tol = 1e-10 if dtype == torch.float64 else 1e-5
        for g, w in zip(got, want):
            torch.testing.assert_close(g.cpu(), w, atol=tol, rtol=tol)


@pytest.mark.parametrize("backend", COMPILE_BACKENDS)
def test_compiled_moe_inductor(backend, fresh_dynamo):
    """Default backend (inductor) once: dynamic T, no recompiles, forward and backward."""
    device = device_of(backend)
    params = make_params(True, device=device)

    def fn(x, router, w1, w2):
        return moe_layer(TORCH_OPS, x, router, w1, w2, True)

    counter = torch._dynamo.testing.CompileCounterWithBackend("inductor")
    compiled = torch.compile(fn, backend=counter, fullgraph=True)
    run_sweep(counter, compiled, fn, params, device, torch.float32, atol=1e-5, rtol=1e-5)
