"""TTPD maths (reference 10.4, Bürger et al. 2024): pure numpy functions.

The model: a centred activation is  a ≈ τ·t_G + τ·p·t_P  with truth τ ∈ {-1,+1} and polarity
p ∈ {-1,+1} (negated/affirmative). t_G flips with truth regardless of polarity (the "general
truth direction"), t_P flips with truth *and* polarity. Probes that learn a single direction on
mixed affirmative/negated data get pulled towards t_P; TTPD separates the two by least squares.
"""

from __future__ import annotations

import numpy as np


def centre_by_group(acts: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Subtract each group's (dataset's) own mean from its rows, as the reference does per dataset."""
    out = np.empty_like(acts, dtype=np.float64)
    for g in np.unique(groups):
        rows = groups == g
        out[rows] = acts[rows] - acts[rows].mean(axis=0)
    return out


def truth_polarity_directions(
    centred: np.ndarray, labels: np.ndarray, polarity: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(t_G, t_P): least-squares solution of [τ, τ·p] Θ ≈ centred, with τ = 2·label - 1.

    ``lstsq`` instead of the reference's explicit (XᵀX)⁻¹Xᵀ: the same answer when X has full
    rank, and the minimum-norm one (t_G = t_P) when every row has the same polarity.
    """
    tau = 2.0 * np.asarray(labels, dtype=np.float64) - 1.0
    p = np.asarray(polarity, dtype=np.float64)
    design = np.stack([tau, tau * p], axis=1)
    theta, *_ = np.linalg.lstsq(design, np.asarray(centred, dtype=np.float64), rcond=None)
    return theta[0], theta[1]


__all__ = ["centre_by_group", "truth_polarity_directions"]
