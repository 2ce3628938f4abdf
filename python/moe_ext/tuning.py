"""The grouped GEMM's tuning table: which kernel (path, tile config, pipeline depth) to run per
expert-GEMM shape class, as measured on a GPU by ``benchmarks/tune_grouped_gemm.py``.

    moe_ext.load_gemm_tuning("tuning.json")   # or MOE_EXT_GEMM_TUNING=tuning.json at import
    moe_ext.clear_gemm_tuning()

Keys are ``"2x3:E:K:N:bucket"`` (the ragged-M expert GEMMs; bucket = the power of two just above
the mean rows per expert), what the host knows without reading ``offs``. Shapes missing from the
table, and calls under an explicit ``MOE_EXT_GEMM_PATH/CONFIG/STAGES`` override, use the
launcher's heuristic / the override.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import _C

_PATHS = {"auto": 0, "sm80": 80, "sm90": 90}
_CONFIGS = {"auto": -1, "large": 0, "small_m": 1, "swap_ab": 2, "sm90": 3, "sm90_cluster": 4}


def load_gemm_tuning(path: str | os.PathLike) -> int:
    """Loads the fastest choice of every key of a ``tune_grouped_gemm.py`` table (entries that
    failed are skipped); returns how many keys were set."""
    data = json.loads(Path(path).read_text())
    table = data.get("table", data)
    if not isinstance(table, dict):
        raise ValueError(f"{path}: expected {{'table': {{key: [choices]}}}}")
    loaded = 0
    for key, choices in table.items():
        ok = [c for c in choices if "error" not in c]
        if not ok:
            continue
        best = min(ok, key=lambda c: c.get("us", float("inf")))  # ties: the table's order
        path_name, config = best.get("path", "auto"), best.get("config", "auto")
        if path_name not in _PATHS or config not in _CONFIGS:
            raise ValueError(f"{path}: {key}: unknown path {path_name!r} or config {config!r}")
        stages = int(best.get("stages", 0))
        if path_name == "sm90":  # the Hopper kernel: sm90 (one CTA per tile) or sm90_cluster
            config = config if config.startswith("sm90") else "auto"
            stages = 0  # (the pipeline depth steers the Ampere kernel only)
        _C.set_gemm_tuning(key, _PATHS[path_name], _CONFIGS[config], stages)
        loaded += 1
    return loaded


def clear_gemm_tuning() -> None:
    _C.clear_gemm_tuning()


if os.environ.get("MOE_EXT_GEMM_TUNING"):
    load_gemm_tuning(os.environ["MOE_EXT_GEMM_TUNING"])
