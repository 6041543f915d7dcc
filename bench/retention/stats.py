"""The statistics of the retention benchmark (pure numpy, unit-tested with synthetic numbers).

Data model. For each scored set ``s`` and split seed ``r`` the benchmark stores, per model, a
boolean matrix ``[top layers, held-out items]``: was the probe right on that test statement at
that layer. Every model (dense, each pruned point) has the same test items for a given (s, r)
because the statement sample and the entity-grouped split depend only on the data and the seed.

* accuracy of a set: the mean over its top layers and its held-out items, then over seeds;
* accuracy of a group: the mean over its sets (every set weighs the same);
* retention of a group: ``R_g = (P_g - 0.5) / (D_g - 0.5)`` with P, D the pruned and dense
  group accuracies (seed means, so a seed whose split happens to make the dense probe weak
  cannot blow up a ratio); the headline R is the mean of R_g over the fixed groups.
* intervals: a two-level bootstrap. Each replicate draws S seeds with replacement, then for each
  drawn seed and each set draws that seed's held-out items with replacement, and recomputes
  every accuracy, R and difference from the stored correctness. The same draws serve every
  model, so differences between two methods are paired (the split and item luck cancels).
  Percentile intervals. Top layers are chosen once from the dense data (not re-chosen per
  replicate).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence

import numpy as np

CHANCE = 0.5


def top_layers(dense_accuracy: Sequence[float], fraction: float = 1 / 3) -> list[int]:
    """Indices of the best ``ceil(fraction * n)`` layers by dense accuracy (ties: lower index), ascending."""
    acc = np.asarray(dense_accuracy, dtype=np.float64)
    if acc.ndim != 1 or acc.size == 0:
        raise ValueError("dense_accuracy must be a non-empty 1-D sequence")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    k = max(1, math.ceil(fraction * acc.size - 1e-9))
    order = sorted(range(acc.size), key=lambda i: (-acc[i], i))
    return sorted(order[:k])


def retention(pruned: float | np.ndarray, dense: float | np.ndarray, chance: float = CHANCE):
    """(pruned - chance) / (dense - chance); NaN where the dense model is not above chance."""
    p = np.asarray(pruned, dtype=np.float64)
    d = np.asarray(dense, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(d > chance, (p - chance) / (d - chance), np.nan)
    return float(r) if r.ndim == 0 else r


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap samples (NaNs ignored)."""
    x = np.asarray(samples, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (float("nan"), float("nan"))
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(x, [a, 1.0 - a])
    return (float(lo), float(hi))


# correct[set][seed] -> bool array [n_models, n_layers, n_items]
Correctness = Mapping[str, Sequence[np.ndarray]]


def _check(correct: Correctness) -> tuple[int, int]:
    n_models = n_seeds = None
    for name, per_seed in correct.items():
        if n_seeds is None:
            n_seeds = len(per_seed)
        if len(per_seed) != n_seeds:
            raise ValueError(f"set {name!r} has {len(per_seed)} seeds, others {n_seeds}")
        for arr in per_seed:
            if arr.ndim != 3 or arr.shape[2] == 0:
                raise ValueError(f"set {name!r}: correctness must be [models, layers, items>0], got {arr.shape}")
            if n_models is None:
                n_models = arr.shape[0]
            if arr.shape[0] != n_models:
                raise ValueError(f"set {name!r}: {arr.shape[0]} models, others {n_models}")
    if not n_models or not n_seeds:
        raise ValueError("no correctness data")
    return n_models, n_seeds


def set_accuracies(correct: Correctness) -> dict[str, np.ndarray]:
    """Point estimates: set -> [n_models] accuracy (mean over layers and items, then seeds)."""
    _check(correct)
    return {
        s: np.mean([arr.reshape(arr.shape[0], -1).mean(axis=1) for arr in per_seed], axis=0)
        for s, per_seed in correct.items()
    }


def bootstrap_set_accuracies(correct: Correctness, n_boot: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    """Bootstrap replicates: set -> [n_boot, n_models] accuracy under the two-level resampling.

    The draws depend only on ``seed``, the number of seeds and each test set's size, never on
    the number of models, so adding a method does not change the others' intervals.
    """
    n_models, n_seeds = _check(correct)
    rng = np.random.default_rng(seed)
    seed_draws = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    out: dict[str, np.ndarray] = {}
    for s, per_seed in correct.items():
        # per item, the mean over the top layers: [models, items]
        item_means = [arr.mean(axis=1) for arr in per_seed]
        set_rng = np.random.default_rng([seed, zlib.crc32(s.encode())])
        acc = np.zeros((n_boot, n_models))
        for j in range(n_seeds):  # slot j of each replicate's seed draw
            for r in range(n_seeds):
                rows = np.flatnonzero(seed_draws[:, j] == r)
                n_items = item_means[r].shape[1]
                idx = set_rng.integers(0, n_items, size=(rows.size, n_items))
                # [models, rows, items] -> mean over items -> [rows, models]
                acc[rows] += item_means[r][:, idx].mean(axis=2).T
        out[s] = acc / n_seeds
    return out


def group_retention(
    acc: Mapping[str, np.ndarray], groups: Mapping[str, Sequence[str]], dense_index: int = 0
) -> dict[str, np.ndarray]:
    """Group -> R per model (same leading shape as the accuracies: [n_models] or [n_boot, n_models]).

    Group accuracy is the mean over the group's sets; R_g = (P_g - 0.5)/(D_g - 0.5) with D the
    model at ``dense_index``.
    """
    out = {}
    for g, names in groups.items():
        missing = [n for n in names if n not in acc]
        if missing:
            raise ValueError(f"group {g!r}: no accuracies for {missing}")
        g_acc = np.mean([acc[n] for n in names], axis=0)
        dense = g_acc[..., dense_index : dense_index + 1]
        out[g] = retention(g_acc, dense)
    return out


def overall(per_group: Mapping[str, np.ndarray], groups: Sequence[str]) -> np.ndarray:
    """The mean of R_g over ``groups`` (each group weighs the same)."""
    return np.mean([per_group[g] for g in groups], axis=0)


def summarize(
    correct: Correctness,
    groups: Mapping[str, Sequence[str]],
    overall_groups: Mapping[str, Sequence[str]],
    dense_index: int = 0,
    pairs: Sequence[tuple[int, int]] = (),
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """R per group and overall (named in ``overall_groups``: name -> its groups) with intervals,
    and paired differences R[a] - R[b] for each (a, b) in ``pairs``, for every model index.

    Returns ``{"accuracy": {set: [models]}, "R": {name: {"point": [..], "ci": [[lo, hi], ..]}},
    "diff": {"a-b": {name: {"point", "ci"}}}}`` where name runs over groups then overall names.
    """
    point_acc = set_accuracies(correct)
    boot_acc = bootstrap_set_accuracies(correct, n_boot=n_boot, seed=seed)

    def all_r(acc):
        per_group = group_retention(acc, groups, dense_index)
        out = dict(per_group)
        for name, members in overall_groups.items():
            out[name] = overall(per_group, members)
        return out

    r_point, r_boot = all_r(point_acc), all_r(boot_acc)
    n_models = next(iter(point_acc.values())).shape[0]
    res: dict = {"accuracy": {s: v.tolist() for s, v in point_acc.items()}, "R": {}, "diff": {}}
    for name in r_point:
        res["R"][name] = {
            "point": [float(x) for x in r_point[name]],
            "ci": [list(percentile_interval(r_boot[name][:, m], level)) for m in range(n_models)],
        }
    for a, b in pairs:
        key = f"{a}-{b}"
        res["diff"][key] = {
            name: {
                "point": float(r_point[name][a] - r_point[name][b]),
                "ci": list(percentile_interval(r_boot[name][:, a] - r_boot[name][:, b], level)),
            }
            for name in r_point
        }
    return res


__all__ = [
    "CHANCE",
    "top_layers",
    "retention",
    "percentile_interval",
    "set_accuracies",
    "bootstrap_set_accuracies",
    "group_retention",
    "overall",
    "summarize",
]
