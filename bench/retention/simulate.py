"""Coverage of the retention intervals, measured on synthetic experiments that mirror the protocol.

Why: an interval that leaves out a source of variance looks precise and is wrong. Each synthetic
experiment builds what the benchmark stores from a model whose true R is known, and the
three-level bootstrap of ``stats`` is scored on whether its 95 % intervals contain the truth.

What is mirrored. Families of three shapes: a set with its row-aligned negated twin (TiU's
``X``/``neg_X``), a single set, and two sets that are separate topics but name the same
entities (``larger_than``/``smaller_than``). Each entity has a true and a false statement. The
*same* statements are re-split by every split seed with the entity-grouped 20 % split the
benchmark uses. Item scores are averaged over correlated layers. Pruned units come from K
prune seeds whose effect varies between calibration draws.

Generative model (probit). Unit u = (model m, prune seed k) is right on item i of set s, split
seed r, layer l when

    mu_{m,f} + p_{m,k} + q_{m,k,f} + g_{m,r,t} + h_{m,r,l} - a_{s,i} - v_{m,i} - e_{m,r,i,l} > 0

with a = entity + row (shared by twins) + set-specific difficulty, v a model-specific item
effect (pruned models share part of it), p/q the prune-seed effect (model-wide / per family),
g the split seed's effect on the probe (per topic, partly shared by the models), h a layer effect
correlated across layers, e item noise correlated across layers. All are centred normal, so the
population accuracy is Phi(mu / sqrt(total variance)) and the true R is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .stats import Design, SetData, analyse, retention


@dataclass(frozen=True)
class Params:
    """Variance components (probit scale) and sizes. The defaults match what the SmolLM2 run
    stores for the retrained probe (bench/README.md, "Coverage"): held-out sets of 32-120
    statements per seed, per-statement means over seeds with a spread of about 0.3, dense and
    pruned item scores correlated about 0.5, split-seed shifts of 0.01-0.03 in accuracy."""

    entities: tuple[int, ...] = (80, 150, 100)  # twin family, single-set family, shared-entity family
    split_seeds: int = 10
    prune_seeds: int = 3
    layers: int = 4
    accuracy: dict = field(default_factory=lambda: {"dense": 0.82, "ref": 0.72, "m": 0.75})
    sd_entity: float = 0.6
    sd_row: float = 0.5
    sd_set: float = 0.3
    sd_model_item: float = 0.5
    share_pruned_item: float = 0.6
    sd_prune: float = 0.06
    sd_prune_family: float = 0.04
    sd_split: float = 0.05
    share_split: float = 0.5
    sd_layer: float = 0.1
    share_layer: float = 0.7
    sd_noise: float = 0.45
    share_noise: float = 0.6

    def total_sd(self, pruned: bool) -> float:
        v = (self.sd_entity**2 + self.sd_row**2 + self.sd_set**2 + self.sd_model_item**2 + self.sd_split**2
             + self.sd_layer**2 + self.sd_noise**2)
        if pruned:
            v += self.sd_prune**2 + self.sd_prune_family**2
        return math.sqrt(v)


def _phi_inv(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def true_values(params: Params, n_families: int) -> dict[str, list[float]]:
    """Population accuracy per model and family (the same targets in every family here)."""
    out = {}
    for m, acc in params.accuracy.items():
        pruned = m != "dense"
        mu = _phi_inv(acc) * params.total_sd(pruned)
        out[m] = [_phi(mu / params.total_sd(pruned))] * n_families
    return out


def _families(params: Params, rng) -> list[tuple[str, list[tuple[str, int, bool]]]]:
    """[(family, [(set, entities, twin_of_previous)])] for the three shapes."""
    e1, e2, e3 = params.entities
    return [("twin", [("x", e1, False), ("neg_x", e1, True)]), ("single", [("y", e2, False)]),
            ("shared", [("z1", e3, False), ("z2", e3, False)])]


def _split(groups: np.ndarray, seed: list[int]) -> np.ndarray:
    from truthprune import grouped_split

    return grouped_split(groups, 0.2, seed)[1]


def experiment(params: Params, rng: np.random.Generator) -> tuple[list[SetData], Design]:
    """One synthetic benchmark run: sets with item values for measure 'acc', and the design."""
    models = list(params.accuracy)
    pruned = [m for m in models if m != "dense"]
    units = [("dense", None)] + [(m, k) for m in pruned for k in range(params.prune_seeds)]
    n_u, S, L = len(units), params.split_seeds, params.layers
    mu = {m: _phi_inv(params.accuracy[m]) * params.total_sd(m != "dense") for m in models}
    prune_eff = {(m, k): rng.normal(0, params.sd_prune) for m in pruned for k in range(params.prune_seeds)}
    sets: list[SetData] = []
    for fi, (family, members) in enumerate(_families(params, rng)):
        n_ent = members[0][1]
        ent = rng.normal(0, params.sd_entity, n_ent)
        fam_prune = {key: rng.normal(0, params.sd_prune_family) for key in prune_eff}
        row_eff = None
        for si, (name, _, twin) in enumerate(members):
            n = 2 * n_ent
            clusters = np.repeat(np.arange(n_ent), 2)
            if not twin:
                row_eff = rng.normal(0, params.sd_row, n)
                topic_seed = fi * 10 + si
            diff = ent[clusters] + row_eff + rng.normal(0, params.sd_set, n)
            shared_v = rng.normal(0, 1, n)
            model_v = {}
            for m in models:
                own = rng.normal(0, 1, n)
                w = params.share_pruned_item if m != "dense" else 0.0
                model_v[m] = params.sd_model_item * (math.sqrt(w) * shared_v + math.sqrt(1 - w) * own)
            tests = [_split(clusters, [0, r, topic_seed]) for r in range(S)]
            g_shared = rng.normal(0, 1, S)
            values = []
            for r, test in enumerate(tests):
                nt = len(test)
                v = np.empty((n_u, nt))
                for j, (m, k) in enumerate(units):
                    g = params.sd_split * (math.sqrt(params.share_split) * g_shared[r]
                                           + math.sqrt(1 - params.share_split) * rng.normal())
                    h = params.sd_layer * (math.sqrt(params.share_layer) * rng.normal()
                                           + math.sqrt(1 - params.share_layer) * rng.normal(size=L))
                    e = params.sd_noise * (math.sqrt(params.share_noise) * rng.normal(size=(nt, 1))
                                           + math.sqrt(1 - params.share_noise) * rng.normal(size=(nt, L)))
                    p = 0.0 if k is None else prune_eff[(m, k)] + fam_prune[(m, k)]
                    eta = mu[m] + p + g + h[None, :] - diff[test, None] - model_v[m][test, None] - e
                    v[j] = (eta > 0).mean(axis=1)
                values.append(v)
            sets.append(SetData(name, family, clusters, tests, {"acc": values}))
    methods = {m: [j for j, (mm, _) in enumerate(units) if mm == m] for m in pruned}
    return sets, Design(dense=0, methods=methods, references=[pruned[0]])


def coverage(params: Params, n_experiments: int, n_boot: int = 400, seed: int = 0, level: float = 0.95,
             split_mode: str = "centred", prune_mode: str = "components") -> dict:
    """Share of experiments whose intervals contain the truth: per family R of every method, the
    pooled R of every method, and the pooled paired difference of each method against the first."""
    rng = np.random.default_rng(seed)
    truth = true_values(params, 3)
    models = [m for m in params.accuracy if m != "dense"]
    ref = models[0]
    fams = ["twin", "single", "shared"]
    true_r = {m: [retention(truth[m][i], truth["dense"][i]) for i in range(3)] for m in models}
    true_pooled = {m: float(np.mean(true_r[m])) for m in models}
    hits: dict[str, int] = {}
    widths: dict[str, list[float]] = {}

    def score(key, ci, value):
        hits[key] = hits.get(key, 0) + int(ci[0] <= value <= ci[1])
        widths.setdefault(key, []).append(ci[1] - ci[0])

    for e in range(n_experiments):
        sets, design = experiment(params, rng)
        res = analyse(sets, design, ["acc"], {"acc": fams}, n_boot=n_boot, seed=e, level=level, split_mode=split_mode, prune_mode=prune_mode)["acc"]
        for m in models:
            for i, f in enumerate(fams):
                score(f"R {f} {m}", res["families"][f]["methods"][m]["R"]["ci"], true_r[m][i])
            score(f"R pooled {m}", res["pooled"]["methods"][m]["R"]["ci"], true_pooled[m])
            if m != ref:
                score(f"dR pooled {m}-{ref}", res["pooled"]["methods"][m]["diff"][ref]["R"]["ci"],
                      true_pooled[m] - true_pooled[ref])
    return {
        "experiments": n_experiments,
        "n_boot": n_boot,
        "coverage": {k: v / n_experiments for k, v in hits.items()},
        "mean_width": {k: float(np.mean(v)) for k, v in widths.items()},
        "binomial_se_at_nominal": math.sqrt(level * (1 - level) / n_experiments),
    }


__all__ = ["Params", "experiment", "coverage", "true_values", "replace"]
