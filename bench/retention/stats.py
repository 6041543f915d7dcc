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

Intervals cover three sources of variance, each shared by all units so that differences between
methods stay paired:

1. statements: each family's entity clusters drawn with replacement (multinomial weights), the
   same weights for every set of the family (a set, its negated twin and any set that names the
   same entities move together) and for every split seed (the seeds re-split the *same*
   statements, so a statement drawn twice counts twice in every seed that tests it);
2. split seeds: each seed's own shift (``seed_effects``) resampled over the S seeds, scaled by
   sqrt(S/(S-1)). The shifts are the least-squares seed effects of the two-way model item + seed on
   the incomplete design (each statement is held out by only some seeds), rescaled to the
   method-of-moments estimate of the shift variance: the raw shifts also carry the item-by-seed
   noise, which level 1 already resamples. (Resampling whole seeds would count the statement
   variance twice; the earlier "value minus the item's mean over its seeds" shifts shrank the real
   shifts by about half, since a statement held out once says nothing, and the simulation's
   split-heavy regime under-covered.)
3. prune seeds (calibration draws, the same K draws for every method): a variance component
   estimated from the K one-seed estimates (``combine``), because a resample of K = 3 seeds has
   ten distinct means and no tails. Its degrees of freedom are those of the whole seed spread
   s^2 (K - 1), not of its excess over the statement noise: crediting the excess alone with K - 1
   df made the df large exactly when s^2 came out small, and the intervals under-covered.

A replicate of levels 1-2 recomputes every value, R, drop and difference from the stored item
values (the ratio R is recomputed inside each replicate, so the percentile interval follows its
skew); ``combine`` turns the replicates and the K one-seed estimates into the interval, adding the
prune-seed variance to each side's statement-level half-width in quadrature (a symmetric
component must not be stretched by the statement draws' skew). The draws depend only on the
bootstrap seed, S and the families' cluster counts, never on the methods, so scoring a method
later does not change the others' intervals.

Coverage is measured, not assumed (``simulate``, bench/retention_coverage.py, bench/README.md):
with K = 3 the prune-seed variance has 2 df, and no interval built from 2 df is exact for every
ratio of seed to statement variance. Welch-Satterthwaite (used here) dips to about 0.92-0.93 where
the seed variance dominates; the fiducial alternative (tried) over-covers to 0.98-0.99 where it is
absent. The measured coverage is 0.90-0.96 by regime (bench/README.md, "Coverage of the
intervals"), not the nominal 0.95.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .seeds import seed_effects

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
    split_mode: str = "centred"

    @property
    def n(self) -> int:
        return self.split.shape[0]


def n_clusters(sets: Sequence[SetData]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in sets:
        out[s.family] = max(out.get(s.family, 0), int(s.clusters.max()) + 1)
    return out


def identity_draws(sets: Sequence[SetData], n_prune: int, n_split: int) -> Draws:
    return Draws(np.ones((1, n_prune)), np.ones((1, n_split)), {f: np.ones((1, c)) for f, c in n_clusters(sets).items()})


def bootstrap_draws(sets: Sequence[SetData], n_prune: int, n_split: int, n_boot: int, seed: int = 0,
                    split_mode: str = "centred") -> Draws:
    """Multinomial counts for the prune seeds (used only by ``prune_mode='resample'``) and the split
    seeds, and per family its cluster weights, each family from its own stream (a family's weights
    do not depend on which other families are scored)."""
    import zlib

    rng = np.random.default_rng([seed, 1])
    prune = rng.multinomial(n_prune, np.full(n_prune, 1 / n_prune), size=n_boot).astype(np.float64)
    split = rng.multinomial(n_split, np.full(n_split, 1 / n_split), size=n_boot).astype(np.float64)
    clusters = {}
    for f, c in sorted(n_clusters(sets).items()):
        frng = np.random.default_rng([seed, 2, zlib.crc32(f.encode())])
        clusters[f] = frng.multinomial(c, np.full(c, 1 / c), size=n_boot).astype(np.float32)
    return Draws(prune, split, clusters, split_mode=split_mode)


def set_values(s: SetData, measure: str, draws: Draws) -> np.ndarray:
    """[B, units]: per split seed the cluster-weighted mean over held-out items, averaged over the
    seeds; plus the split-seed level (``draws.split_mode``): 'centred' adds the resampled mean of
    the seeds' own shifts (``seed_effects``), 'resample' weighs the seeds by their drawn counts
    instead, 'none' leaves the seeds fixed."""
    per_seed = s.values[measure]
    n_split = draws.split.shape[1]
    if len(per_seed) != n_split or len(s.test_rows) != n_split:
        raise ValueError(f"set {s.name!r}: {len(per_seed)} seeds of values, {len(s.test_rows)} of rows, draws {n_split}")
    counts = draws.split if draws.split_mode == "resample" else np.ones_like(draws.split)
    w_all = draws.clusters[s.family]
    total = None
    for r, v in enumerate(per_seed):
        w = w_all[:, s.clusters[s.test_rows[r]]]  # [B, items]
        if v.shape[1] != w.shape[1]:
            raise ValueError(f"set {s.name!r} seed {r}: {v.shape[1]} item values for {w.shape[1]} held-out rows")
        den = w.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = (w @ v.T.astype(np.float32)).astype(np.float64) / den  # [B, units]; NaN if no item drawn
        c = counts[:, r : r + 1]
        term = np.where(c > 0, c * np.nan_to_num(m, nan=0.0), 0.0)
        term = np.where((c > 0) & ~np.isfinite(m), np.nan, term)
        total = term if total is None else total + term
    out = total / n_split
    if draws.split_mode == "centred" and n_split > 1:
        g = seed_effects(s, measure)  # [S, units]
        shift = (draws.split @ g) / n_split - g.mean(axis=0)
        out = out + math.sqrt(n_split / (n_split - 1)) * shift
    return out


def family_values(sets: Sequence[SetData], measure: str, draws: Draws) -> dict[str, np.ndarray]:
    """family -> [B, units]: the mean over the family's sets (each set weighs the same)."""
    acc: dict[str, list[np.ndarray]] = {}
    for s in sets:
        if measure in s.values:
            acc.setdefault(s.family, []).append(set_values(s, measure, draws))
    return {f: np.mean(v, axis=0) for f, v in acc.items()}


def over_prune_seeds(values: np.ndarray, units: Sequence[int], weights: np.ndarray) -> np.ndarray:
    """[B]: a method's value from its prune-seed units under ``weights`` ([K] or [B, K], rows
    summing to 1: the mean, one seed alone, or resampled counts / K)."""
    v = values[:, list(units)]
    if np.shape(weights)[-1] != v.shape[1]:
        raise ValueError(f"{v.shape[1]} prune-seed units but weights for {np.shape(weights)[-1]} seeds")
    return (v * weights).sum(axis=1)


@dataclass
class Design:
    """What the analysis compares: the dense unit, each method's prune-seed units (same seed order
    for all), and the reference methods that paired differences are taken against."""

    dense: int
    methods: dict[str, list[int]]
    references: list[str]

    @property
    def n_prune(self) -> int:
        return len(next(iter(self.methods.values()))) if self.methods else 1


def _tables(fam_values: Mapping[str, np.ndarray], design: Design, weights: np.ndarray) -> dict:
    return {f: {"dense": v[:, design.dense], **{m: over_prune_seeds(v, u, weights) for m, u in design.methods.items()}}
            for f, v in fam_values.items()}


def quantities(table: Mapping[str, Mapping[str, np.ndarray]], design: Design, chosen: Sequence[str]) -> dict[tuple, np.ndarray]:
    """Every reported number as an array over replicates, keyed ('family', f, ...) or ('pooled', ...):
    the dense value; per method its value, R, drop, and against each reference the paired ΔR and
    Δdrop (method's drop - reference's drop); pooled R and drop over ``chosen`` and their differences."""
    q: dict[tuple, np.ndarray] = {}
    refs = [r for r in design.references if r in design.methods]
    for f, row in table.items():
        d = row["dense"]
        q[("family", f, "dense")] = d
        for m in design.methods:
            q[("family", f, m, "value")] = row[m]
            q[("family", f, m, "R")] = retention(row[m], d)
            q[("family", f, m, "drop")] = d - row[m]
        for m in design.methods:
            for r in refs:
                if r != m:
                    q[("family", f, m, "dR", r)] = q[("family", f, m, "R")] - q[("family", f, r, "R")]
                    q[("family", f, m, "ddrop", r)] = q[("family", f, m, "drop")] - q[("family", f, r, "drop")]
    if chosen:
        for m in design.methods:
            for what in ("R", "drop"):
                q[("pooled", m, what)] = np.mean([q[("family", f, m, what)] for f in chosen], axis=0)
        for m in design.methods:
            for r in refs:
                if r != m:
                    q[("pooled", m, "dR", r)] = q[("pooled", m, "R")] - q[("pooled", r, "R")]
                    q[("pooled", m, "ddrop", r)] = q[("pooled", m, "drop")] - q[("pooled", r, "drop")]
    return q


def combine(point: float, boot: np.ndarray, seed_points: np.ndarray | None, seed_boot: np.ndarray | None,
            level: float = 0.95) -> dict:
    """The interval of one number from (a) replicates over split seeds and statements with every
    prune seed in place and (b) the spread over prune seeds.

    Prune seeds enter as a variance component, not by resampling: with K = 3 seeds a resample has
    ten distinct means and no tails. The spread s^2 of the K one-seed estimates, minus the part the
    statement draws already explain (their replicates of each one-seed estimate around the K-seed
    mean), estimates the seed variance sigma_p^2 (floored at 0); the total variance is
    V = V_a + sigma_p^2 / K. V moves with s^2, whose chi-square has K - 1 df, so its Welch-
    Satterthwaite df is nu = V^2 / ((s^2 / K)^2 / (K - 1)); where the floor holds, V = V_a does not
    move with s^2 and nu is infinite. Each side of the interval is t_nu * sqrt((h / z)^2 + sigma_p^2 / K)
    with h that side's percentile half-width of (a): the statement level keeps its skew, the seed
    level adds symmetrically. With no seed variance it is the plain percentile interval; when the
    seed variance dominates it tends to the t interval with K - 1 degrees of freedom.

    Returns {"point", "ci", "sd", "sd_statements", "sd_prune", "df", "mde"}."""
    from scipy.special import ndtri, stdtrit  # quantiles of N(0, 1) and Student t (fast, no scipy.stats import)

    x = np.asarray(boot, dtype=np.float64)
    x = x[np.isfinite(x)]
    if not math.isfinite(point) or x.size < 2:
        return {"point": float(point), "ci": [float("nan")] * 2, "sd": float("nan"), "sd_statements": float("nan"),
                "sd_prune": float("nan"), "df": float("nan"), "mde": float("nan")}
    lo, hi = percentile_interval(x, level)
    v_a = float(x.var(ddof=1))
    v_p = 0.0
    k = 0 if seed_points is None else len(seed_points)
    if k > 1 and np.all(np.isfinite(seed_points)):
        s2 = float(np.var(seed_points, ddof=1))
        dev = np.asarray(seed_boot, dtype=np.float64) - np.asarray(boot, dtype=np.float64)[None, :]
        dev = dev[:, np.all(np.isfinite(dev), axis=0)]
        explained = float(dev.var(axis=1, ddof=1).sum()) / (k - 1) if dev.shape[1] > 1 else 0.0
        v_p = max(0.0, s2 - explained) / k
    v = v_a + v_p
    # Satterthwaite: V moves with s^2, whose chi-square has K - 1 df, wherever v_p > 0 (a floored
    # v_p does not move with s^2, so V = V_a is then known as well as the replicates know it)
    df = v * v / ((s2 / k) ** 2 / (k - 1)) if v_p > 0 else math.inf
    a = (1 - level) / 2
    z = float(ndtri(1 - a))
    q = float(stdtrit(df, 1 - a)) if math.isfinite(df) else z
    # each side: the percentile half-width is z times that side's statement-level SD; the prune-seed
    # variance adds to it in quadrature (symmetric), and the t quantile replaces z
    half = [q * math.sqrt((max(point - lo, 0.0) / z) ** 2 + v_p), q * math.sqrt((max(hi - point, 0.0) / z) ** 2 + v_p)]
    ci = [point - half[0], point + half[1]]
    power = float(stdtrit(df, 1 - a) + stdtrit(df, 0.8)) if math.isfinite(df) else (Z_975 + Z_80)
    return {"point": float(point), "ci": [float(ci[0]), float(ci[1])], "sd": math.sqrt(v), "sd_statements": math.sqrt(v_a),
            "sd_prune": math.sqrt(v_p), "df": float(df), "mde": float(power * math.sqrt(v))}


def _percentile_only(point: float, boot: np.ndarray, level: float) -> dict:
    lo, hi = percentile_interval(boot, level)
    x = np.asarray(boot, dtype=np.float64)
    x = x[np.isfinite(x)]
    sd = float(x.std(ddof=1)) if x.size > 1 else float("nan")
    return {"point": float(point), "ci": [lo, hi], "sd": sd, "mde": mde(sd)}


def analyse(
    sets: Sequence[SetData],
    design: Design,
    measures: Sequence[str],
    pool: Callable[[str, dict], Sequence[str]] | Mapping[str, Sequence[str]],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    split_mode: str = "centred",
    prune_mode: str = "components",
) -> dict:
    """Per measure: per family the dense value, and per method its value, R, drop (dense - pruned)
    and paired differences of R and of the drop against each reference; pooled R and drop over
    the families ``pool(measure, families)`` returns (or ``pool[measure]``), with the same
    differences. Each family's entry gets the ``status`` the pool gave it.

    Every number is a ``combine`` dict (``prune_mode='components'``), or a plain percentile
    interval over replicates that also resample the prune seeds (``'resample'``, kept to measure
    its coverage)."""
    k = design.n_prune
    n_split = len(sets[0].test_rows)
    point_d = identity_draws(sets, k, n_split)
    boot_d = bootstrap_draws(sets, k, n_split, n_boot, seed, split_mode)
    mean_w = np.full(k, 1 / k)
    if prune_mode == "resample":
        counts = boot_d.prune
        boot_w = mean_w + math.sqrt(k / (k - 1)) * (counts / k - mean_w) if k > 1 else counts / k
    else:
        boot_w = mean_w
    out: dict = {}
    for measure in measures:
        fam_pt, fam_bt = family_values(sets, measure, point_d), family_values(sets, measure, boot_d)
        t_pt, t_bt = _tables(fam_pt, design, mean_w), _tables(fam_bt, design, boot_w)
        q_pt, q_bt = quantities(t_pt, design, []), quantities(t_bt, design, [])
        seeds_pt = seeds_bt = None
        if prune_mode != "resample" and k > 1:
            one = np.eye(k)
            seeds_pt = [quantities(_tables(fam_pt, design, one[j]), design, []) for j in range(k)]
            seeds_bt = [quantities(_tables(fam_bt, design, one[j]), design, []) for j in range(k)]

        def number(key, q_pt=q_pt, q_bt=q_bt, seeds_pt=seeds_pt, seeds_bt=seeds_bt):
            point = float(q_pt[key][0])
            if prune_mode == "resample":
                return _percentile_only(point, q_bt[key], level)
            sp = None if seeds_pt is None else np.array([float(s[key][0]) for s in seeds_pt])
            sb = None if seeds_bt is None else np.array([s[key] for s in seeds_bt])
            return combine(point, q_bt[key], sp, sb, level)

        fams: dict = {}
        for f in t_pt:
            fams[f] = {"dense": number(("family", f, "dense")), "methods": {}}
            for m in design.methods:
                e = {what: number(("family", f, m, what)) for what in ("value", "R", "drop")}
                e["diff"] = {r: {"R": number(("family", f, m, "dR", r)), "drop": number(("family", f, m, "ddrop", r))}
                             for r in design.references if r in design.methods and r != m}
                fams[f]["methods"][m] = e
        picked = pool(measure, fams) if callable(pool) else pool.get(measure, [])
        chosen = [f for f in picked if f in t_pt]
        pooled: dict = {"families": chosen, "methods": {}}
        if chosen:
            q_pt, q_bt = quantities(t_pt, design, chosen), quantities(t_bt, design, chosen)
            if seeds_pt is not None:
                seeds_pt = [quantities(_tables(fam_pt, design, np.eye(k)[j]), design, chosen) for j in range(k)]
                seeds_bt = [quantities(_tables(fam_bt, design, np.eye(k)[j]), design, chosen) for j in range(k)]
            for m in design.methods:
                entry = {"R": number(("pooled", m, "R"), q_pt, q_bt, seeds_pt, seeds_bt),
                         "drop": number(("pooled", m, "drop"), q_pt, q_bt, seeds_pt, seeds_bt), "diff": {}}
                for r in design.references:
                    if r in design.methods and r != m:
                        entry["diff"][r] = {"R": number(("pooled", m, "dR", r), q_pt, q_bt, seeds_pt, seeds_bt),
                                            "drop": number(("pooled", m, "ddrop", r), q_pt, q_bt, seeds_pt, seeds_bt)}
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
    "seed_effects",
    "set_values",
    "family_values",
    "over_prune_seeds",
    "quantities",
    "combine",
    "analyse",
]
