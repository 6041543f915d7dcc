"""Truth-profile allocations: SWL (reference section 8), TPLO (section 9), the automatic TPLO
pivot, and tplo-joint, truthprune's per-layer combination of both signals.

All functions take plain sequences and return plain lists. ``profile`` is the normalised truth
profile pi (sums to 1, see :func:`truthprune.truth_profile`); ``outlier_ratio_percent`` is OWL's
D_l. ``weights`` (layer parameter counts) only change the re-centring; omitted, the published
formulas come out exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from truthprune_owl import floor_sparsity, layer_weights, minmax_scale, recentre_density

# choose_pivot: the truth features count as "present" from the first layer reaching this
# fraction of the profile's peak (see docs/allocators.md for the sensitivity check).
PIVOT_ONSET_FRACTION = 0.5


def _swl_density(profile: np.ndarray, target: float, c: float) -> np.ndarray:
    """t_l = (1 - s) + c (L pi_l - 1): density grows linearly with the layer's share of truth."""
    return (1.0 - target) + c * (profile.size * profile - 1.0)


def _owl_density(outlier_ratio_percent: np.ndarray, target: float, lam: float, w: np.ndarray) -> np.ndarray:
    """o_l = n_l - mean(n) + (1 - s) with n the min-max rescaling of D onto [0, 2 lam]."""
    return recentre_density(minmax_scale(outlier_ratio_percent, 2.0 * lam), target, w)


def swl_sparsities(
    profile: Sequence[float], target: float, c: float, *, weights: Sequence[float] | None = None
) -> list[float]:
    """SWL: s_l = s - c (L pi_l - 1). Layers holding more truth separation keep more weights.

    No floor and no clamp (as published); the allocator rejects results outside [0, 1).
    """
    pi = np.asarray(profile, dtype=np.float64)
    density = recentre_density(_swl_density(pi, target, c), target, layer_weights(pi.size, weights))
    return [float(x) for x in 1.0 - density]


def tplo_sparsities(
    outlier_ratio_percent: Sequence[float],
    profile: Sequence[float],
    target: float,
    lam: float,
    c: float,
    pivot: int,
    *,
    weights: Sequence[float] | None = None,
) -> list[float]:
    """TPLO as published: OWL densities for layers < pivot, SWL densities from the pivot on,
    shifted uniformly so the mean density is 1 - s; s_l <= 0 becomes 0.01.

    Closed form: s_l = s + delta + (mean(n) - n_l) for l < p, s + delta - c (L pi_l - 1) for
    l >= p, with delta = (1/L) sum_{l<p} (o_l - t_l).
    """
    d = np.asarray(outlier_ratio_percent, dtype=np.float64)
    pi = np.asarray(profile, dtype=np.float64)
    if d.size != pi.size:
        raise ValueError(f"{d.size} outlier ratios but {pi.size} profile values")
    if not 0 <= pivot <= pi.size:
        raise ValueError(f"pivot {pivot} is outside [0, {pi.size}]")
    w = layer_weights(pi.size, weights)
    spliced = np.where(np.arange(pi.size) < pivot, _owl_density(d, target, lam, w), _swl_density(pi, target, c))
    return [float(x) for x in floor_sparsity(1.0 - recentre_density(spliced, target, w))]


def choose_pivot(profile: Sequence[float], onset_fraction: float = PIVOT_ONSET_FRACTION) -> int:
    """Automatic TPLO pivot: halfway (rounded down) between the onset and the peak of the profile.

    onset = first layer whose profile value reaches ``onset_fraction`` of the maximum (where the
    truth features have clearly formed), peak = first layer of the maximum. The published pivots
    sit "just before the layers where the truth separation peaks"; this rule gives exactly the
    published 10 / 12 / 12 for the Llama-3-8B-Instruct, Llama-2-13b-chat and
    Mistral-7B-Instruct-v0.3 profiles, and stays within one layer of them for any onset fraction
    in [0.3, 0.7]. Layers before the pivot are then allocated by outliers (OWL), the rise and
    the peak of the truth features by the truth profile (SWL).
    """
    pi = np.asarray(profile, dtype=np.float64)
    if pi.size == 0:
        raise ValueError("choose_pivot needs a non-empty profile")
    peak = int(np.argmax(pi))
    onset = int(np.argmax(pi >= onset_fraction * pi[peak]))
    return (onset + peak) // 2


def tplo_joint_sparsities(
    outlier_ratio_percent: Sequence[float],
    profile: Sequence[float],
    target: float,
    lam: float,
    outlier_weight: float,
    *,
    weights: Sequence[float] | None = None,
) -> list[float]:
    """tplo-joint: every layer's density reflects both its outliers and its truth separation.

    z_l = w a_l + (1 - w) b_l with a = D and b = pi each min-max scaled to [0, 1] (so w is a
    true mixing weight between signals of different units); n = z min-max scaled to [0, 2 lam]
    (the same 2 lam spread as OWL); density n_l - mean(n) + (1 - s); s_l <= 0 becomes 0.01.
    w = 1 is exactly OWL; w = 0 ranks layers by truth profile alone with OWL's spread.
    """
    d = np.asarray(outlier_ratio_percent, dtype=np.float64)
    pi = np.asarray(profile, dtype=np.float64)
    if d.size != pi.size:
        raise ValueError(f"{d.size} outlier ratios but {pi.size} profile values")
    if not 0.0 <= outlier_weight <= 1.0:
        raise ValueError(f"outlier_weight {outlier_weight} is outside [0, 1]")
    z = outlier_weight * minmax_scale(d, 1.0) + (1.0 - outlier_weight) * minmax_scale(pi, 1.0)
    density = recentre_density(minmax_scale(z, 2.0 * lam), target, layer_weights(pi.size, weights))
    return [float(x) for x in floor_sparsity(1.0 - density)]


__all__ = ["PIVOT_ONSET_FRACTION", "swl_sparsities", "tplo_sparsities", "choose_pivot", "tplo_joint_sparsities"]
