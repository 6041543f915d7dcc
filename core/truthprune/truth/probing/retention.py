"""How much of the truth probe survives pruning, at one layer, with an interval.

A run's report needs one number with an honest interval: *retention*
R = (pruned accuracy - 0.5) / (dense accuracy - 0.5), the share of the dense model's
above-chance probe accuracy that a probe retrained on the pruned model keeps (1 = all of it,
0 = chance), read at the dense model's best layer. Its transfer twin uses the dense model's own
probe on the pruned activations instead of a retrained one.

The interval covers the two sources of variance a run has: which statements land in the
held-out split (several entity-grouped split seeds, resampled) and which held-out statements were
drawn (resampled within each split). Dense, pruned and transfer outcomes are paired: every
replicate resamples the same statements for all three. Split seed 0 is the protocol's own split
(:func:`truthprune.truth.probing.protocol.heldout_accuracy`), so the point estimates at seed 0
equal the report's per-layer numbers.

What it does not cover: the choice of the best layer on the same statements, which favours the
dense model slightly (so R is, if anything, a little low).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ...plugin.interfaces import Probe
from ..datasets import StatementSet

CHANCE = 0.5
KINDS = ("dense", "pruned", "transfer")


def layer_outcomes(
    sets: Sequence[StatementSet],
    dense_acts: Mapping[str, np.ndarray],
    pruned_acts: Mapping[str, np.ndarray],
    position: int,
    make_probe: Callable[[], Probe],
    seeds: int = 5,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Per-statement outcomes at layer index ``position``: kind -> array [seeds, sets] of boolean
    arrays (object dtype) over that split's held-out rows. ``dense``: a probe fitted on dense
    activations, scored on dense; ``pruned``: fitted and scored on pruned; ``transfer``: the dense
    probe scored on pruned."""
    from .protocol import _split_seed, assemble, build_topics
    from .splits import grouped_split

    topics = build_topics(sets)
    order = {s.name: j for j, s in enumerate(sets)}
    out = {kind: np.empty((seeds, len(sets)), dtype=object) for kind in KINDS}
    needs_pairs = bool(getattr(make_probe(), "needs_polarity", False))
    for topic in topics:
        units = [topic.members] if needs_pairs else [[m] for m in topic.members]
        for r in range(seeds):
            train, test = grouped_split(topic.groups, test_fraction, _split_seed(seed, r, topic.name))
            for unit in units:
                fitted = {}
                for kind, acts in (("dense", dense_acts), ("pruned", pruned_acts)):
                    x, y, meta = assemble([(m, acts[m.name][position], train) for m in unit], seed=seed + r)
                    fitted[kind] = make_probe().fit(x, y, meta)
                for m in unit:
                    xd, yt, mt = assemble([(m, dense_acts[m.name][position], test)], seed=seed + r)
                    xp, _, _ = assemble([(m, pruned_acts[m.name][position], test)], seed=seed + r)
                    j = order[m.name]
                    out["dense"][r, j] = np.asarray(fitted["dense"].predict(xd, mt)) == yt
                    out["pruned"][r, j] = np.asarray(fitted["pruned"].predict(xp, mt)) == yt
                    out["transfer"][r, j] = np.asarray(fitted["dense"].predict(xp, mt)) == yt
    return out


def retention(pruned: Any, dense: Any) -> Any:
    """(pruned - 0.5) / (dense - 0.5); nan where the dense probe is at or below chance."""
    dense = np.asarray(dense, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (np.asarray(pruned, dtype=np.float64) - CHANCE) / (dense - CHANCE)
    return np.where(dense > CHANCE, r, np.nan)


def _interval(samples: np.ndarray, level: float) -> list[float] | None:
    finite = samples[np.isfinite(samples)]
    if len(finite) < 0.9 * len(samples):  # the ratio is undefined in too many replicates
        return None
    lo, hi = np.percentile(finite, [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)]


def bootstrap_retention(outcomes: Mapping[str, np.ndarray], n_boot: int = 1000, seed: int = 0,
                        level: float = 0.95) -> dict[str, Any]:
    """Point estimates and percentile intervals of the accuracies (mean over sets, then over
    split seeds), their difference and both retentions. Two levels per replicate: split seeds
    drawn with replacement, then each chosen split's held-out statements drawn with replacement
    per set, the same draw for dense, pruned and transfer (paired)."""
    rng = np.random.default_rng([seed, 20231])
    n_seeds, n_sets = outcomes["dense"].shape
    acc = {kind: np.empty((n_seeds, n_sets, n_boot)) for kind in KINDS}
    point = {kind: np.empty((n_seeds, n_sets)) for kind in KINDS}
    for r in range(n_seeds):
        for j in range(n_sets):
            n = len(outcomes["dense"][r, j])
            idx = rng.integers(0, n, size=(n_boot, n))
            for kind in KINDS:
                hits = np.asarray(outcomes[kind][r, j], dtype=np.float64)
                point[kind][r, j] = hits.mean()
                acc[kind][r, j] = hits[idx].mean(axis=1)
    chosen = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    cols = np.arange(n_boot)[:, None]
    boot = {kind: acc[kind].mean(axis=1)[chosen, cols].mean(axis=1) for kind in KINDS}  # [n_boot]
    est = {kind: float(point[kind].mean()) for kind in KINDS}

    def entry(value: float, samples: np.ndarray) -> dict[str, Any]:
        return {"value": None if not np.isfinite(value) else float(value), "ci": _interval(samples, level)}

    n_test = int(np.mean([[len(outcomes["dense"][r, j]) for j in range(n_sets)] for r in range(n_seeds)]) * n_sets)
    return {
        "seeds": int(n_seeds),
        "bootstrap": int(n_boot),
        "level": level,
        "heldout_per_split": n_test,
        **{f"{kind}_accuracy": entry(est[kind], boot[kind]) for kind in KINDS},
        "accuracy_change": entry(est["pruned"] - est["dense"], boot["pruned"] - boot["dense"]),
        "retention": entry(float(retention(est["pruned"], est["dense"])), retention(boot["pruned"], boot["dense"])),
        "transfer_retention": entry(float(retention(est["transfer"], est["dense"])),
                                    retention(boot["transfer"], boot["dense"])),
    }


def layer_retention(sets: Sequence[StatementSet], dense_acts: Mapping[str, np.ndarray],
                    pruned_acts: Mapping[str, np.ndarray], layers: Sequence[int], layer: int,
                    make_probe: Callable[[], Probe], seeds: int = 5, seed: int = 0,
                    test_fraction: float = 0.2) -> dict[str, Any]:
    """:func:`bootstrap_retention` of the outcomes at decoder layer ``layer`` (one of ``layers``)."""
    outcomes = layer_outcomes(sets, dense_acts, pruned_acts, list(layers).index(layer), make_probe, seeds,
                              test_fraction, seed)
    return {"layer": int(layer), **bootstrap_retention(outcomes, seed=seed)}


__all__ = ["layer_outcomes", "retention", "bootstrap_retention", "layer_retention", "CHANCE"]
