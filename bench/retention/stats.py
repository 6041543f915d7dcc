"""The statistics of the retention benchmark (pure numpy; unit-tested on synthetic data).

Data model. For every scored statement set and split seed the benchmark stores, per *unit*
(the dense model, or one method pruned from one calibration draw = prune seed), one value per
held-out statement: the mean over the set's chosen layers of a per-layer item score in [0, 1]
(a probe's 0/1 correctness, or an AUROC placement value, see ``protocol``). Every unit has the
same held-out statements for a given (set, split seed): the statement sample and the splits
depend only on the data and the seeds.

Estimates. A set's value is the mean over split seeds of the mean over its held-out items; a
family's value is the mean over its sets; a method's value is the mean over its prune seeds;
R_f = (P_f - 0.5) / (D_f - 0.5) with P, D the pruned and dense family values; the drop is
D_f - P_f; pooled numbers are means over the families that pass the pre-registered rules
(``rules``), each family once.

Intervals: a three-level bootstrap, every level shared by all units so that differences between
methods are paired.

1. prune seeds: K draws with replacement from the K calibration draws (the same draw for every
   method: seed k is the same calibration sample for all of them). With so few seeds the plain
   bootstrap variance of a mean is (K-1)/K of the unbiased one, so the drawn mean's deviation
   from the K-seed mean is scaled by sqrt(K/(K-1)).
2. split seeds: S draws with replacement.
3. statements: entity clusters of each family drawn with replacement (multinomial weights), the
   same weights for every set of the family (a set, its negated twin and any set that names the
   same entities move together) and for every split seed (the seeds re-split the *same*
   statements, so an item drawn twice counts twice in every seed that tests it).

A replicate recomputes every value, R, drop and difference from the stored item values; the
percentile interval is the central 95 %. The draws depend only on the bootstrap seed, K, S and
the families' cluster counts, never on the number of methods, so scoring a method later does
not change the others' intervals. Coverage of this scheme is measured, not assumed: see
``simulate`` and tests/test_retention_stats.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

CHANCE = 0.5
Z_975, Z_80 = 1.959964, 0.841621  # two-sided 5 % and 80 % power


def top_layers(accuracy: Sequence[float], fraction: float = 1 / 3) -> list[int]:
    """Indices of the best ``ceil(fraction * n)`` layers by accuracy (ties: lower index), ascending."""
    acc = np.asarray(accuracy, dtype=np.float64)
    if acc.ndim != 1 or acc.size == 0:
        raise ValueError("accuracy must be a non-empty 1-D sequence")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    k = max(1, math.ceil(fraction * acc.size - 1e-9))
    order = sorted(range(acc.size), key=lambda i: (-acc[i], i))
    return sorted(order[:k])


def retention(pruned, dense, chance: float = CHANCE):
    """(pruned - chance) / (dense - chance); NaN where the dense value is not above chance."""
    p = np.asarray(pruned, dtype=np.float64)
    d = np.asarray(dense, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(d > chance, (p - chance) / (d - chance), np.nan)
    return float(r) if r.ndim == 0 else r


def percentile_interval(samples, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap samples (NaNs ignored)."""
    x = np.asarray(samples, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (float("nan"), float("nan"))
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(x, [a, 1.0 - a])
    return (float(lo), float(hi))


def mde(sd: float) -> float:
    """Minimum detectable effect at 80 % power, two-sided 5 %, for an estimate with standard error ``sd``."""
    return float((Z_975 + Z_80) * sd)


@dataclass
class SetData:
    """One scored set: its family, the entity cluster of each row, the held-out rows of each split
    seed, and per measure and seed the item values [units, held-out items]."""

    name: str
    family: str
    clusters: np.ndarray
    test_rows: list[np.ndarray]
    values: dict[str, list[np.ndarray]] = field(default_factory=dict)


@dataclass
class Draws:
    """One set of bootstrap draws (or the identity, for point estimates): counts per prune seed
    [B, K] and split seed [B, S], weights per family cluster [B, C_f]."""

    prune: np.ndarray
    split: np.ndarray
    clusters: dict[str, np.ndarray]
    inflate: bool = True

    @property
    def n(self) -> int:
        return self.split.shape[0]


def n_clusters(sets: Sequence[SetData]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in sets:
        out[s.family] = max(out.get(s.family, 0), int(s.clusters.max()) + 1)
    return out


def identity_draws(sets: Sequence[SetData], n_prune: int, n_split: int) -> Draws:
    return Draws(np.ones((1, n_prune)), np.ones((1, n_split)),
                 {f: np.ones((1, c)) for f, c in n_clusters(sets).items()}, inflate=False)


def bootstrap_draws(sets: Sequence[SetData], n_prune: int, n_split: int, n_boot: int, seed: int = 0) -> Draws:
    """Multinomial counts for every level; each family's cluster draw from its own stream, so a
    family's weights do not depend on which other families are scored."""
    import zlib

    rng = np.random.default_rng([seed, 1])
    prune = rng.multinomial(n_prune, np.full(n_prune, 1 / n_prune), size=n_boot).astype(np.float64)
    split = rng.multinomial(n_split, np.full(n_split, 1 / n_split), size=n_boot).astype(np.float64)
    clusters = {}
    for f, c in sorted(n_clusters(sets).items()):
        frng = np.random.default_rng([seed, 2, zlib.crc32(f.encode())])
        clusters[f] = frng.multinomial(c, np.full(c, 1 / c), size=n_boot).astype(np.float32)
    return Draws(prune, split, clusters)


def set_values(s: SetData, measure: str, draws: Draws) -> np.ndarray:
    """[B, units]: the weighted mean over held-out items per split seed, then the count-weighted
    mean over split seeds."""
    per_seed = s.values[measure]
    n_split = draws.split.shape[1]
    if len(per_seed) != n_split or len(s.test_rows) != n_split:
        raise ValueError(f"set {s.name!r}: {len(per_seed)} seeds of values, {len(s.test_rows)} of rows, draws {n_split}")
    w_all = draws.clusters[s.family]
    total = None
    for r, v in enumerate(per_seed):
        w = w_all[:, s.clusters[s.test_rows[r]]]  # [B, items]
        if v.shape[1] != w.shape[1]:
            raise ValueError(f"set {s.name!r} seed {r}: {v.shape[1]} item values for {w.shape[1]} held-out rows")
        den = w.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = (w @ v.T.astype(np.float32)).astype(np.float64) / den  # [B, units]; NaN if no item drawn
        c = draws.split[:, r : r + 1]
        term = np.where(c > 0, c * np.nan_to_num(m, nan=0.0), 0.0)
        term = np.where((c > 0) & ~np.isfinite(m), np.nan, term)
        total = term if total is None else total + term
    return total / n_split


def family_values(sets: Sequence[SetData], measure: str, draws: Draws) -> dict[str, np.ndarray]:
    """family -> [B, units]: the mean over the family's sets (each set weighs the same)."""
    acc: dict[str, list[np.ndarray]] = {}
    for s in sets:
        if measure in s.values:
            acc.setdefault(s.family, []).append(set_values(s, measure, draws))
    return {f: np.mean(v, axis=0) for f, v in acc.items()}


def over_prune_seeds(values: np.ndarray, units: Sequence[int], draws: Draws) -> np.ndarray:
    """[B]: a method's value as the mean over its prune-seed units under the drawn seed counts."""
    v = values[:, list(units)]
    k = v.shape[1]
    if draws.prune.shape[1] != k:
        raise ValueError(f"{k} prune-seed units but draws for {draws.prune.shape[1]} seeds")
    mean = v.mean(axis=1)
    drawn = (draws.prune * v).sum(axis=1) / k
    if draws.inflate and k > 1:
        drawn = mean + math.sqrt(k / (k - 1)) * (drawn - mean)
    return drawn


@dataclass
class Design:
    """What the analysis compares: the dense unit, each method's prune-seed units (same seed order
    for all), and the reference methods that paired differences are taken against."""

    dense: int
    methods: dict[str, list[int]]
    references: list[str]


def method_table(sets: Sequence[SetData], design: Design, measure: str, draws: Draws) -> dict[str, dict[str, np.ndarray]]:
    """family -> {"dense": [B], method: [B]} values of one measure."""
    out = {}
    for f, v in family_values(sets, measure, draws).items():
        row = {"dense": v[:, design.dense]}
        for m, units in design.methods.items():
            row[m] = over_prune_seeds(v, units, draws)
        out[f] = row
    return out


def _ci(point: float, boot: np.ndarray, level: float) -> dict:
    lo, hi = percentile_interval(boot, level)
    finite = boot[np.isfinite(boot)]
    sd = float(finite.std(ddof=1)) if finite.size > 1 else float("nan")
    return {"point": float(point), "ci": [lo, hi], "sd": sd}


def analyse(
    sets: Sequence[SetData],
    design: Design,
    measures: Sequence[str],
    pool: Callable[[str, dict], Sequence[str]] | Mapping[str, Sequence[str]],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    draws: Draws | None = None,
) -> dict:
    """Per measure: per family the dense value, and per method its value, R, drop (dense - pruned)
    and paired differences of R and of the drop against each reference; pooled R and drop over
    the families ``pool(measure, families)`` returns (or ``pool[measure]``), with the same
    differences and their MDE. Each family's entry gets the ``status`` the pool gave it.

    Every number is ``{"point", "ci": [lo, hi], "sd"}`` (sd = bootstrap standard deviation).
    """
    n_prune = len(next(iter(design.methods.values()))) if design.methods else 1
    n_split = len(sets[0].test_rows)
    point_d = identity_draws(sets, n_prune, n_split)
    boot_d = draws or bootstrap_draws(sets, n_prune, n_split, n_boot, seed)
    out: dict = {}
    for measure in measures:
        pt, bt = method_table(sets, design, measure, point_d), method_table(sets, design, measure, boot_d)
        fams: dict = {}
        r_pt: dict = {}
        r_bt: dict = {}
        for f in pt:
            d_pt, d_bt = pt[f]["dense"][0], bt[f]["dense"]
            fam = {"dense": _ci(d_pt, d_bt, level), "methods": {}}
            for m in design.methods:
                r_pt[(f, m)], r_bt[(f, m)] = retention(pt[f][m][0], d_pt), retention(bt[f][m], d_bt)
                fam["methods"][m] = {
                    "value": _ci(pt[f][m][0], bt[f][m], level),
                    "R": _ci(r_pt[(f, m)], r_bt[(f, m)], level),
                    "drop": _ci(d_pt - pt[f][m][0], d_bt - bt[f][m], level),
                }
            fams[f] = fam
        for f in pt:
            for m in design.methods:
                fams[f]["methods"][m]["diff"] = {
                    ref: {"R": _ci(r_pt[(f, m)] - r_pt[(f, ref)], r_bt[(f, m)] - r_bt[(f, ref)], level),
                          "drop": _ci(pt[f][ref][0] - pt[f][m][0], bt[f][ref] - bt[f][m], level)}
                    for ref in design.references if ref in design.methods and ref != m
                }
        picked = pool(measure, fams) if callable(pool) else pool.get(measure, [])
        chosen = [f for f in picked if f in pt]
        pooled: dict = {"families": chosen, "methods": {}}
        if chosen:
            def pooled_r(table, key):
                return np.mean([table[(f, key)] for f in chosen], axis=0)

            drop_pt = {m: np.mean([pt[f]["dense"][0] - pt[f][m][0] for f in chosen]) for m in design.methods}
            drop_bt = {m: np.mean([bt[f]["dense"] - bt[f][m] for f in chosen], axis=0) for m in design.methods}
            for m in design.methods:
                entry = {"R": _ci(pooled_r(r_pt, m), pooled_r(r_bt, m), level), "drop": _ci(drop_pt[m], drop_bt[m], level), "diff": {}}
                for ref in design.references:
                    if ref in design.methods and ref != m:
                        dr = _ci(pooled_r(r_pt, m) - pooled_r(r_pt, ref), pooled_r(r_bt, m) - pooled_r(r_bt, ref), level)
                        dr["mde"] = mde(dr["sd"])
                        dd = _ci(drop_pt[m] - drop_pt[ref], drop_bt[m] - drop_bt[ref], level)
                        entry["diff"][ref] = {"R": dr, "drop": dd}
                pooled["methods"][m] = entry
        out[measure] = {"families": fams, "pooled": pooled}
    return out


__all__ = [
    "CHANCE",
    "SetData",
    "Draws",
    "Design",
    "top_layers",
    "retention",
    "percentile_interval",
    "mde",
    "identity_draws",
    "bootstrap_draws",
    "set_values",
    "family_values",
    "over_prune_seeds",
    "method_table",
    "analyse",
]
