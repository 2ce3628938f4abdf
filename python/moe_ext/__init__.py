"""moe_ext: Mixture-of-Experts kernels for PyTorch.

Importing the package loads the native library, which registers the ops under
``torch.ops.moe_ext``, and attaches their fake (meta) kernels and autograd formulas.
"""

import torch  # noqa: F401  (loads libtorch before our extension)


def _load_native():
    try:
        from . import _C  # registers torch.ops.moe_ext.*
    except ImportError as e:
        from pathlib import Path

        stamp = Path(__file__).with_name("_build_torch.txt")
        built = stamp.read_text().strip() if stamp.exists() else "an unknown torch"
        raise ImportError(
            f"moe_ext's native library does not load ({e}). It was built against torch {built}; "
            f"this environment has torch {torch.__version__}. Rebuild it against this torch: "
            f"pip install --no-build-isolation --force-reinstall --no-deps ."
        ) from e
    built = _C.build_info()["torch_version"]
    if built != torch.__version__:
        import warnings

        warnings.warn(
            f"moe_ext was built against torch {built} but runs with "
            f"{torch.__version__}; rebuild with pip install --no-build-isolation .",
            stacklevel=3,
        )
    return _C


_C = _load_native()
from . import _autograd, _fake, emu  # noqa: F401  (fake kernels, backward formulas)
from .layer import MoE
from .losses import load_balancing_loss, router_z_loss
from .ops import (
    get_moe_mlp_memory_policy,
    grouped_mm,
    grouped_mm_fp8,
    moe_mlp,
    moe_mlp_fp8,
    permute,
    quantize_fp8,
    route,
    route_weights,
    route_with_stats,
    set_moe_mlp_memory_policy,
    sort_tokens,
    unpermute,
)
from .tuning import clear_gemm_tuning, load_gemm_tuning

# Batch invariance per backend, as tests/test_batch_invariance.py establishes it (README, "Batch
# invariance"): True = proven bit for bit, False = measured not to hold, None = not yet measured.
_BATCH_INVARIANT = {
    "emu": True,
    "cpu": {"bfloat16": True, "float32": False},  # fp32: vendor sgemm blocking depends on M
    "cuda": None,  # the same kernels as the emulator; no GPU has run the tests yet
}


def build_info() -> dict:
    """What this build was made with (native library) plus per-backend batch invariance."""
    info = dict(_C.build_info())
    info["batch_invariant"] = {
        k: (dict(v) if isinstance(v, dict) else v) for k, v in _BATCH_INVARIANT.items()
    }
    return info


__all__ = [
    "MoE",
    "build_info",
    "clear_gemm_tuning",
    "grouped_mm",
    "grouped_mm_fp8",
    "load_balancing_loss",
    "load_gemm_tuning",
    "moe_mlp",
    "moe_mlp_fp8",
    "quantize_fp8",
    "set_moe_mlp_memory_policy",
    "get_moe_mlp_memory_policy",
    "permute",
    "route",
    "route_weights",
    "route_with_stats",
    "router_z_loss",
    "sort_tokens",
    "unpermute",
]
__version__ = "0.1.0"


def __getattr__(name):
    # moe_ext.hf / moe_ext.distributed without importing them first (they pull in more)
    if name in ("hf", "distributed"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'moe_ext' has no attribute {name!r}")
