"""Shared plumbing for allocators that use OWL's layer outlier ratios (owl, tplo, tplo-joint).

Why a base class: the dense pre-pass bookkeeping (one outlier ratio per observed layer), the
``extras`` override used by ``truthprune allocate``, the length checks and the final sanity
check of the sparsities are identical for every outlier-based allocator; only the mapping from
signals to sparsities differs, and that lives in pure functions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from truthprune import STAT_SQ_NORM, LayerInfo, SparsityAllocator, UserError

from .maths import bad_sparsity, layer_weights, outlier_ratio

log = logging.getLogger(__name__)

# LayerInfo.extras key through which a caller may hand over precomputed outlier ratios (percent).
OUTLIER_EXTRA = "outlier_ratio_percent"


def check_layer_values(owner: str, what: str, values: Sequence[float] | None, num_layers: int) -> list[float]:
    """One finite number per layer, or a UserError that says which input is wrong."""
    if values is None:
        raise UserError(f"{owner} needs {what} but none was given")
    vals = [float(v) for v in values]
    if len(vals) != num_layers:
        raise UserError(f"{owner}: {what} has {len(vals)} values but the model has {num_layers} decoder layers; give one per layer")
    if not all(np.isfinite(vals)):
        raise UserError(f"{owner}: {what} contains NaN or inf")
    return vals


def check_truth_profile(owner: str, info: LayerInfo) -> list[float]:
    """The layer-importance profile: one non-negative value per layer, summing to 1."""
    profile = check_layer_values(owner, "the truth profile", info.truth_profile, info.num_layers)
    if min(profile) < 0 or abs(sum(profile) - 1.0) > 1e-3:
        raise UserError(
            f"{owner}: the truth profile must be non-negative and sum to 1 (it sums to {sum(profile):.6g}); "
            "build it with truthprune.truth_profile"
        )
    return profile


def weights_of(owner: str, info: LayerInfo) -> np.ndarray:
    """Parameter-count weights for re-centring (uniform when the caller gave none)."""
    try:
        return layer_weights(info.num_layers, info.params_per_layer)
    except ValueError as err:
        raise UserError(f"{owner}: params_per_layer is invalid: {err}") from None


def finish(owner: str, sparsities: Sequence[float], target: float, weights: np.ndarray) -> list[float]:
    """Reject unusable sparsities with a fix, and say when the floor moved the mean off target."""
    bad = bad_sparsity(sparsities)
    if bad is not None:
        layer, value = bad
        raise UserError(
            f"{owner}: layer {layer} would get sparsity {value:.4g}, outside [0, 1); "
            "use a target further from 0 and 1 or a smaller spread (lam / c)"
        )
    mean = float(np.dot(weights, sparsities))
    if abs(mean - target) > 1e-9:
        log.warning("%s: the 0.01 floor lifted the mean sparsity from %.4f to %.4f", owner, target, mean)
    return [float(s) for s in sparsities]


class OutlierRatioAllocator(SparsityAllocator):
    """An allocator that measures each layer's OWL outlier ratio in the dense pre-pass.

    Subclasses declare a Config with at least ``m`` (the outlier multiplier) and implement
    :meth:`allocate` using :meth:`outlier_ratios`. The statistic always uses Wanda scores,
    whatever pruner then removes the weights (so ``--pruner magnitude --allocator owl`` works).
    """

    needs_dense_pass = True
    required_stats = frozenset({STAT_SQ_NORM})
    layer_signals = (OUTLIER_EXTRA,)  # precomputed ratios replace the dense pre-pass (truthprune allocate)
    file_options = {"lambda": "lam", "M": "m"}  # the reference vectors' names
    option_flags = {
        "owl-m": ("m", "OWL outlier threshold M (allocator option m)."),
        "owl-lambda": ("lam", "OWL spread lambda (allocator option lam)."),
    }

    def __init__(self, config: Any = None):
        super().__init__(config)
        self._observed: dict[int, float] = {}
        self._used: list[float] | None = None

    @property
    def owner(self) -> str:
        return f"allocator {self.name!r}"

    def observe_layer(self, index: int, weights: Mapping[str, Any], stats: Mapping[str, Any]) -> None:
        from truthprune import wanda_scores

        scores = []
        for linear, weight in weights.items():
            st = stats.get(linear)
            if st is None or st.sq_norm is None:
                raise UserError(f"{self.owner} needs the {STAT_SQ_NORM!r} statistic of {linear!r} in layer {index}")
            scores.append(wanda_scores(weight, st.sq_norm))
        if not scores:
            raise UserError(f"{self.owner}: layer {index} has no prunable linears to measure")
        self._observed[index] = outlier_ratio(scores, self.config.m)
        log.debug("%s: layer %d outlier ratio %.4f%%", self.owner, index, self._observed[index])

    def outlier_ratios(self, info: LayerInfo) -> list[float]:
        """Ratios from ``info.extras['outlier_ratio_percent']`` if given, else from the pre-pass."""
        given = info.extras.get(OUTLIER_EXTRA) if info.extras else None
        if given is not None:
            ratios = check_layer_values(self.owner, f"extras[{OUTLIER_EXTRA!r}]", given, info.num_layers)
        else:
            missing = [i for i in range(info.num_layers) if i not in self._observed]
            if missing:
                raise UserError(
                    f"{self.owner} has no outlier ratio for layers {missing[:5]}{'...' if len(missing) > 5 else ''}; "
                    f"it needs the dense pre-pass (or extras[{OUTLIER_EXTRA!r}])"
                )
            ratios = [self._observed[i] for i in range(info.num_layers)]
        if min(ratios) < 0 or max(ratios) > 100:
            raise UserError(f"{self.owner}: outlier ratios are percentages and must lie in [0, 100]")
        self._used = ratios
        return ratios

    def diagnostics(self) -> dict[str, list[float]]:
        if self._used is not None:
            return {OUTLIER_EXTRA: list(self._used)}
        if self._observed:
            return {OUTLIER_EXTRA: [self._observed[i] for i in sorted(self._observed)]}
        return {}
