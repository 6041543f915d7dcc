"""SparseGPT for truthprune: the ``sparsegpt`` pruner and its pure OBS maths.

``obs_prune(weight, hessian, target, blocksize=128, percdamp=0.01)`` is public so other pruners
(e.g. one that adds terms to H) can reuse the reconstruction. The maths module imports torch, so
it is loaded on first use of its names, keeping ``truthprune plugins`` fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from .plugin import SparseGPTConfig, SparseGPTPruner

_OBS_NAMES = (
    "obs_prune",
    "obs_factor",
    "FactorCache",
    "sweep_block",
    "lazy_update",
    "hessian_from_gram",
    "fix_dead_inputs",
    "inverse_hessian_factor",
    "block_budgets",
    "pruned_total",
    "lowest_k_mask",
    "row_lowest_n_mask",
    "obs_scores",
)

__all__ = ["SparseGPTConfig", "SparseGPTPruner", *_OBS_NAMES]


def __getattr__(name: str) -> Any:
    if name in _OBS_NAMES:
        value = getattr(importlib.import_module(".obs", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'truthprune_sparsegpt' has no attribute {name!r}")
