"""moe_ext: Mixture-of-Experts kernels for PyTorch.

Importing the package loads the native library, which registers the ops under
``torch.ops.moe_ext``, and attaches their fake (meta) kernels and autograd formulas.
"""

import torch  # noqa: F401  (loads libtorch before our extension)

from . import _C  # registers torch.ops.moe_ext.*
from . import _autograd, _fake, emu  # noqa: F401  (fake kernels, backward formulas)
from .layer import MoE
from .losses import load_balancing_loss, router_z_loss
from .ops import (
    grouped_mm, moe_mlp, permute, route, route_with_stats, sort_tokens, unpermute,
)
from .tuning import clear_gemm_tuning, load_gemm_tuning

build_info = _C.build_info

__all__ = [
    "MoE", "build_info", "clear_gemm_tuning", "grouped_mm", "load_balancing_loss",
    "load_gemm_tuning", "moe_mlp", "permute", "route", "route_with_stats", "router_z_loss",
    "sort_tokens", "unpermute",
]
__version__ = "0.1.0"
