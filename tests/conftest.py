"""Shared fixtures and helpers for the moe_ext tests.

Backends: "cpu" (native CPU ops, torch.ops.moe_ext on CPU tensors), "emu" (the CUDA kernel
sources run on the CPU SIMT emulator, torch.ops.moe_ext_emu on CPU tensors) and "cuda"
(torch.ops.moe_ext on CUDA tensors). A backend that is not built / not present is simply not
in BACKENDS, so its parametrizations do not exist (nothing is skipped silently).
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

try:
    import moe_ext  # noqa: F401  (registers torch.ops.moe_ext / moe_ext_emu)
except ImportError:  # not installed: use the in-tree package (built in place)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "python"))
    import moe_ext  # noqa: F401

from moe_ext import reference  # noqa: E402,F401  (re-exported for the test files)

OPS = ("route", "sort_tokens", "permute", "unpermute", "grouped_mm")


def _has_op(namespace: str, name: str) -> bool:
    # torch.ops.<ns> always exists (namespaces are created lazily); the op lookup raises
    # AttributeError when no such op was registered.
    try:
        getattr(getattr(torch.ops, namespace), name)
        return True
    except (AttributeError, RuntimeError):
        return False


def _emu_available() -> bool:
    return hasattr(torch.ops, "moe_ext_emu") and any(_has_op("moe_ext_emu", n) for n in OPS)


BACKENDS = ["cpu"]
if _emu_available():
    BACKENDS.append("emu")
if torch.cuda.is_available():
    BACKENDS.append("cuda")


def backends_for(name: str) -> list[str]:
    """BACKENDS restricted to those that implement op `name` (emu may lack some ops)."""
    return [b for b in BACKENDS if b != "emu" or _has_op("moe_ext_emu", name)]


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


def op(backend: str, name: str):
    """The op overload packet for `name` on `backend`."""
    return getattr(torch.ops.moe_ext_emu if backend == "emu" else torch.ops.moe_ext, name)


def device_of(backend: str) -> str:
    return "cuda" if backend == "cuda" else "cpu"


# Per-dtype float tolerances. bf16 has an 8-bit mantissa (eps 2^-8 ~ 4e-3), fp16 11 bits
# (eps ~ 1e-3): outputs are rounded once from an fp32 accumulator, so a couple of ulps of
# the output dtype; fp32 allows for a different summation order of short sums.
TOL = {
    torch.float32: dict(atol=1e-5, rtol=1e-5),
    torch.bfloat16: dict(atol=2e-2, rtol=2e-2),
    torch.float16: dict(atol=2e-3, rtol=2e-3),
    torch.float64: dict(atol=1e-10, rtol=1e-10),
}

ROUTINGS = ("uniform", "skewed", "all_to_one", "empty_experts")


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)
    yield


def _distinct_from(cands: torch.Tensor, T: int, k: int, generator) -> torch.Tensor:
    """T rows of k distinct entries of `cands` (1-D), random order within each row."""
    C = cands.numel()
    if k == 0:
        return cands.new_empty(T, 0)
    if T * C <= (1 << 22):
        pick = torch.rand(T, C, generator=generator).argsort(dim=1)[:, :k]
    else:
        # large inputs: k distinct positions as a random start plus k-1 random strides whose
        # total stays below C (distinct mod C), then shuffled within the row. O(T*k) memory.
        start = torch.randint(0, C, (T, 1), generator=generator)
        step = torch.randint(1, max(C // k, 1) + 1, (T, k - 1), generator=generator)
        pos = torch.cat([start, start + step.cumsum(1)], dim=1) % C
        shuffle = torch.rand(T, k, generator=generator).argsort(dim=1)
        pick = pos.gather(1, shuffle)
    return cands[pick]


def make_ids(T: int, k: int, E: int, kind: str = "uniform", *, generator=None, device="cpu"):
    """Routing ids int32 [T, k]; every row holds k distinct experts in [0, E).

    kind:
      uniform        each row k distinct experts drawn uniformly.
      skewed         Zipf-like (p_e ~ 1/(e+1)^2 over a shuffled expert order): most
                     assignments go to a few experts.
      all_to_one     column 0 is expert 0 for every token; the other k-1 are distinct others.
      empty_experts  only even experts are used (odd ones stay empty); when there are fewer
                     than k even experts, only experts [0, k) are used instead (experts >= k
                     stay empty; none is empty when k == E).
    """
    assert 1 <= k <= E, (k, E)
    if T == 0:
        return torch.empty(0, k, dtype=torch.int32, device=device)
    if kind == "uniform":
        ids = _distinct_from(torch.arange(E), T, k, generator)
    elif kind == "skewed":
        p = 1.0 / torch.arange(1, E + 1, dtype=torch.float64) ** 2
        perm = torch.randperm(E, generator=generator)  # which experts are the hot ones
        if k == 1 or T * E > (1 << 22):
            # (large inputs: Zipf column 0, then k-1 distinct others placed after it mod E)
            hot = torch.multinomial(p, T, replacement=True, generator=generator)[:, None]
            rest = _distinct_from(torch.arange(E - 1), T, k - 1, generator)
            ids = perm[torch.cat([hot, (hot + 1 + rest) % E], dim=1)]
        else:
            pick = torch.multinomial(p.expand(T, E), k, replacement=False, generator=generator)
            ids = perm[pick]
    elif kind == "all_to_one":
        rest = _distinct_from(torch.arange(1, E), T, k - 1, generator)
        ids = torch.cat([torch.zeros(T, 1, dtype=torch.long), rest], dim=1)
    elif kind == "empty_experts":
        evens = torch.arange(0, E, 2)
        cands = evens if evens.numel() >= k else torch.arange(k)
        ids = _distinct_from(cands, T, k, generator)
    else:
        raise ValueError(f"unknown routing kind {kind!r}")
    return ids.to(torch.int32).to(device)


def make_weights(T: int, k: int, dtype=torch.float32, *, generator=None, device="cpu"):
    """Positive routing weights [T, k] summing to ~1 per row (softmax of random logits)."""
    w = torch.randn(T, k, generator=generator, dtype=torch.float64).softmax(-1)
    return w.to(dtype).to(device)
