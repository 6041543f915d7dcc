"""OWL for truthprune: layer outlier ratios, their mapping to sparsities, the ``owl`` allocator
and the ``owl`` pruner preset. The base class and helpers are public so the truth-profile
allocators (truthprune-tplo) reuse the same pre-pass bookkeeping."""

from .base import OUTLIER_EXTRA, OutlierRatioAllocator, check_layer_values, check_truth_profile, finish, weights_of
from .maths import (
    SPARSITY_FLOOR,
    floor_sparsity,
    layer_weights,
    minmax_scale,
    outlier_ratio,
    owl_sparsities,
    recentre_density,
)
from .plugin import OwlAllocator, OwlConfig, OwlPruner

__all__ = [
    "OUTLIER_EXTRA",
    "SPARSITY_FLOOR",
    "OutlierRatioAllocator",
    "OwlAllocator",
    "OwlConfig",
    "OwlPruner",
    "check_layer_values",
    "check_truth_profile",
    "finish",
    "floor_sparsity",
    "layer_weights",
    "minmax_scale",
    "outlier_ratio",
    "owl_sparsities",
    "recentre_density",
    "weights_of",
]
