"""OWL maths (reference section 6) and the allocation helpers the truth-profile allocators share.

Every allocator here works in *densities* (1 - sparsity) and follows the same three steps:
build a per-layer density offset, re-centre it so the parameter-weighted mean density is
1 - target, and convert back to sparsities (OWL and TPLO then apply the reference's 0.01 floor).
For equal-size layers (every decoder-only LLM we know) the parameter-weighted mean is the plain
mean, so these steps are exactly the published formulas; unequal layer sizes only change the
re-centring weights.

Pure functions on plain sequences; only :func:`outlier_ratio` touches tensors (torch imported
inside it so that loading the plugin stays torch-free).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

# The reference replaces any sparsity <= 0 by this value (OWL and TPLO, not SWL).
SPARSITY_FLOOR = 0.01


def outlier_ratio(scores: Sequence[torch.Tensor], m: float) -> float:
    """Percent of a layer's pooled scores strictly greater than ``m`` times their mean.

    OWL pools the score matrices of *all* linears of one decoder layer into one population
    (so bigger matrices weigh more) and counts "outliers" against that pooled mean. The sum is
    accumulated in float64 per matrix, which avoids materialising the concatenation (hundreds of
    millions of entries for 8B models) and is more accurate than one float32 reduction.
    Scale-free: multiplying every score by a constant (e.g. sum vs mean of x^2) changes nothing.
    """
    import torch

    if not scores:
        raise ValueError("outlier_ratio needs at least one score matrix")
    total = 0.0
    size = 0
    for s in scores:
        total += float(torch.sum(s.detach(), dtype=torch.float64))
        size += s.numel()
    if size == 0:
        raise ValueError("outlier_ratio got only empty score matrices")
    threshold = m * total / size
    count = sum(int((s.detach() > threshold).sum()) for s in scores)
    return 100.0 * count / size


def layer_weights(num_layers: int, params_per_layer: Sequence[float] | None) -> np.ndarray:
    """Re-centring weights summing to 1: parameter counts, or uniform when not given."""
    if params_per_layer is None or len(params_per_layer) == 0:
        return np.full(num_layers, 1.0 / num_layers)
    w = np.asarray(params_per_layer, dtype=np.float64)
    if w.shape != (num_layers,) or np.any(w < 0) or not w.sum() > 0:
        raise ValueError(f"need {num_layers} non-negative layer sizes with a positive sum, got {list(params_per_layer)}")
    return w / w.sum()


def minmax_scale(values: Sequence[float], spread: float) -> np.ndarray:
    """Rescale linearly onto [0, spread]; all-equal values map to 0 (no information, no spread).

    The reference divides by (max - min) unguarded, which yields NaNs for constant input; a
    constant signal should simply not move any layer away from the target.
    """
    v = np.asarray(values, dtype=np.float64)
    lo, hi = float(v.min()), float(v.max())
    if hi - lo <= 0.0:
        return np.zeros_like(v)
    return spread * (v - lo) / (hi - lo)


def recentre_density(density: Sequence[float], target: float, weights: np.ndarray | None = None) -> np.ndarray:
    """Shift densities so their weighted mean is exactly ``1 - target``."""
    d = np.asarray(density, dtype=np.float64)
    w = np.full(d.size, 1.0 / d.size) if weights is None else weights
    return d - (float(np.dot(w, d)) - (1.0 - target))


def floor_sparsity(sparsity: np.ndarray) -> np.ndarray:
    """The reference's floor: a sparsity <= 0 becomes 0.01 (there is no upper clamp)."""
    return np.where(sparsity <= 0.0, SPARSITY_FLOOR, sparsity)


def owl_sparsities(
    outlier_ratio_percent: Sequence[float],
    target: float,
    lam: float,
    *,
    weights: Sequence[float] | None = None,
) -> list[float]:
    """OWL's mapping from layer outlier ratios D_l to sparsities (reference section 6).

    n_l = 2 lam (D_l - min D) / (max D - min D); density n_l - mean(n) + (1 - s);
    s_l = s + mean(n) - n_l, and s_l <= 0 becomes 0.01. More outliers -> lower sparsity; the
    spread max - min is exactly 2 lam. ``weights`` (layer parameter counts) replace the plain
    mean in the re-centring; omitted, the result is the published formula.
    """
    d = np.asarray(outlier_ratio_percent, dtype=np.float64)
    w = layer_weights(d.size, weights)
    density = recentre_density(minmax_scale(d, 2.0 * lam), target, w)
    return [float(x) for x in floor_sparsity(1.0 - density)]


def bad_sparsity(sparsities: Sequence[float]) -> tuple[int, float] | None:
    """The first layer whose sparsity is unusable (not finite or outside [0, 1)), else None."""
    for i, s in enumerate(sparsities):
        if not np.isfinite(s) or not 0.0 <= s < 1.0:
            return i, float(s)
    return None


__all__ = [
    "SPARSITY_FLOOR",
    "outlier_ratio",
    "owl_sparsities",
    "layer_weights",
    "minmax_scale",
    "recentre_density",
    "floor_sparsity",
    "bad_sparsity",
]
