"""Split-seed shifts of the retention benchmark: the second level of its bootstrap (``stats``).

Every split seed re-splits the same statements and trains its own probe, so each seed's held-out
mean carries a shift of its own on top of which statements it holds out. The bootstrap resamples
those shifts over the seeds; this module estimates them without counting the statement noise a
second time (pure numpy).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class SetData(Protocol):
    """What this module reads of ``stats.SetData`` (declared here so that stats can import this
    module without a cycle): the entity cluster of each row, the held-out rows of each split seed,
    and per measure and seed the item values [units, held-out items]."""

    clusters: np.ndarray
    test_rows: list[np.ndarray]
    values: dict[str, list[np.ndarray]]


def seed_effects(s: SetData, measure: str) -> np.ndarray:
    """[S, units]: each split seed's own shift (the probe it trained), with the variance the data
    support for it, ready to be resampled by the split-seed level.

    Per unit the held-out values follow v[r, i] = item_i + shift_r + noise[r, i] on an incomplete
    crossed design (each statement is held out by some seeds only). The shifts are the least-squares
    estimates of that two-way model (``_two_way_shifts``: item effects taken out exactly, whatever
    the design). They still carry the item-by-seed noise, which the cluster draws already resample
    (a cluster's values move with its weight in every seed): resampling them raw would count that
    noise twice. So they are rescaled to the method-of-moments estimate of the shift variance,
    sigma_g^2 = (sum of squared shifts - sigma_e^2 tr(L+)) / (S - 1), floored at 0 (the rescaled
    residuals of a multilevel residual bootstrap)."""
    shifts, spread, noise = _two_way_shifts(s, measure)
    n_split = shifts.shape[0]
    if n_split < 2:
        return shifts
    target = np.maximum(spread - noise, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(spread > 0, np.sqrt(target / spread), 0.0)
    return shifts * scale[None, :]


def _two_way_shifts(s: SetData, measure: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares seed shifts of v[r, i] = item_i + shift_r + noise (shifts summing to 0), per unit:
    ([S, units] shifts, [units] their sum of squares, [units] that sum's expected part from the noise,
    sigma_e^2 tr(L+)). L = diag(n_r) - sum_i h_i h_i' / c_i is the seeds' information matrix once the
    item effects are absorbed (h_i: the seeds that hold statement i out, c_i their number); the
    shifts solve L shift = q, q_r = sum over seed r's items of (v - the item's mean over its seeds)."""
    per_seed = s.values[measure]
    n_split, n_rows = len(per_seed), len(s.clusters)
    n_units = per_seed[0].shape[0]
    held = np.zeros((n_split, n_rows), dtype=bool)
    total, count = np.zeros((n_units, n_rows)), np.zeros(n_rows)
    for r, v in enumerate(per_seed):
        held[r, s.test_rows[r]] = True
        total[:, s.test_rows[r]] += v
        count[s.test_rows[r]] += 1
    item_mean = total / np.maximum(count, 1)
    q = np.array([(v - item_mean[:, s.test_rows[r]]).sum(axis=1) for r, v in enumerate(per_seed)])  # [S, units]
    used = count > 0
    h = held[:, used].astype(np.float64)
    lap = np.diag(h.sum(axis=1)) - (h / count[used]) @ h.T
    lap_pinv = np.linalg.pinv(lap, rcond=1e-10, hermitian=True)
    shifts = lap_pinv @ q
    shifts -= shifts.mean(axis=0, keepdims=True)
    # residuals of the two-way fit: item effects are the item means of v - shift
    rss, n_obs = np.zeros(n_units), 0
    adj_total = np.zeros((n_units, n_rows))
    for r, v in enumerate(per_seed):
        adj_total[:, s.test_rows[r]] += v - shifts[r][:, None]
    item_fit = adj_total / np.maximum(count, 1)
    for r, v in enumerate(per_seed):
        res = v - item_fit[:, s.test_rows[r]] - shifts[r][:, None]
        rss += (res * res).sum(axis=1)
        n_obs += v.shape[1]
    dof = n_obs - int(used.sum()) - (n_split - 1)
    # no residual df (every statement held out once): the noise cannot be told from the shifts, which
    # are then kept whole (the noise counted twice errs wide, never narrow)
    sigma_e2 = rss / dof if dof > 0 else np.zeros(n_units)
    spread = (shifts * shifts).sum(axis=0)
    return shifts, spread, sigma_e2 * float(np.trace(lap_pinv))


__all__ = ["seed_effects"]
