"""Truth separation per layer and the layer-importance profile built from it (reference section 7).

Why these two functions live in core: the probes measure the separation ratio of the dense and
pruned models layer by layer, and the SWL/TPLO allocators need the *normalised* profile of the
dense model. Computing the profile from the model's own activations (instead of the reference's
hard-coded per-model arrays) is what lets truthprune run SWL/TPLO on any model.

Both functions are numpy-only (no torch) and work in float64 so the profile does not depend on
the dtype the activations were captured in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import UserError


def separation_ratio(acts: np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Between-class over within-class variance of activations ``acts`` [n, d] with 0/1 labels.

    Following Truth-is-Universal (reference section 7): with class means mu_T, mu_F and the
    overall mean mu (over all statements, so unequal class sizes weight it),

    * W = 1/2 [mean_k Var_F(k) + mean_k Var_T(k)], per-dimension *unbiased* variances;
    * B = 1/2 mean_k [(mu_F,k - mu_k)^2 + (mu_T,k - mu_k)^2];
    * ratio = B / W.

    The ratio is scale-free, so it compares layers whose activation norms differ by orders of
    magnitude. Raises UserError when a class has fewer than two rows (no unbiased variance) or
    when the within-class variance is zero (the ratio is undefined).
    """
    x = np.asarray(acts, dtype=np.float64)
    y = np.asarray(labels).reshape(-1)
    if x.ndim != 2:
        raise UserError(f"separation_ratio needs activations shaped [n, d], got shape {x.shape}")
    if y.shape[0] != x.shape[0]:
        raise UserError(f"separation_ratio: {x.shape[0]} activation rows but {y.shape[0]} labels; pass one label per row")
    if not np.all((y == 0) | (y == 1)):
        raise UserError("separation_ratio: labels must be 0 (false) or 1 (true)")
    if not np.all(np.isfinite(x)):
        raise UserError("separation_ratio: activations contain NaN or inf; check the model's dtype/overflow")
    true_rows, false_rows = x[y == 1], x[y == 0]
    if len(true_rows) < 2 or len(false_rows) < 2:
        raise UserError(
            f"separation_ratio needs at least 2 statements per class, got {len(true_rows)} true and "
            f"{len(false_rows)} false; use a larger dataset"
        )
    mu = x.mean(axis=0)
    mu_t, mu_f = true_rows.mean(axis=0), false_rows.mean(axis=0)
    within = 0.5 * (false_rows.var(axis=0, ddof=1).mean() + true_rows.var(axis=0, ddof=1).mean())
    between = 0.5 * np.mean((mu_f - mu) ** 2 + (mu_t - mu) ** 2)
    if within <= 0.0:
        raise UserError("separation_ratio: zero within-class variance (constant activations); the ratio is undefined")
    return float(between / within)


def truth_profile(ratios_by_dataset: Mapping[str, Sequence[float]]) -> list[float]:
    """Layer-importance distribution from per-dataset, per-layer separation ratios.

    Each dataset's ratios are normalised to sum 1 (pi_{d,l} = r_{d,l} / sum_l r_{d,l}) so that a
    dataset with larger ratios overall does not dominate; the profile is the plain average over
    datasets, pi_l = mean_d pi_{d,l}, which again sums to 1.
    """
    if not ratios_by_dataset:
        raise UserError("truth_profile needs separation ratios of at least one dataset")
    rows = []
    lengths = {name: len(values) for name, values in ratios_by_dataset.items()}
    if len(set(lengths.values())) != 1:
        raise UserError(f"truth_profile: datasets have different layer counts {lengths}; give every dataset one ratio per layer")
    for name, values in ratios_by_dataset.items():
        r = np.asarray(list(values), dtype=np.float64)
        if r.size == 0:
            raise UserError(f"truth_profile: dataset {name!r} has no per-layer ratios")
        if not np.all(np.isfinite(r)) or np.any(r < 0):
            raise UserError(f"truth_profile: dataset {name!r} has negative or non-finite ratios; ratios are B/W >= 0")
        total = float(r.sum())
        if not total > 0.0 or not math.isfinite(total):
            raise UserError(f"truth_profile: dataset {name!r} has all-zero ratios; it carries no layer information")
        rows.append(r / total)
    return [float(v) for v in np.mean(np.stack(rows), axis=0)]


__all__ = ["separation_ratio", "truth_profile"]
