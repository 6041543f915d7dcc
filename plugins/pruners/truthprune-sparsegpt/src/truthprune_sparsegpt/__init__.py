"""SparseGPT for truthprune: the ``sparsegpt`` pruner and its pure OBS maths.

``obs_prune(weight, hessian, target, blocksize=128, percdamp=0.01)`` is public so other pruners
(e.g. one that adds terms to H) can reuse the reconstruction; ``dense_target_weight`` gives the
start of the asymmetric (dense-target) sweep. The maths modules import torch, so they are loaded
on first use of their names, keeping ``truthprune plugins`` fast.
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

_ASYMMETRIC_NAMES = ("dense_target_weight", "cross_from_stat")

__all__ = ["SparseGPTConfig", "SparseGPTPruner", *_OBS_NAMES, *_ASYMMETRIC_NAMES]


def __getattr__(name: str) -> Any:
    if name in _OBS_NAMES or name in _ASYMMETRIC_NAMES:
        module = ".obs" if name in _OBS_NAMES else ".asymmetric"
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'truthprune_sparsegpt' has no attribute {name!r}")
