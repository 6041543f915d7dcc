"""Statistics of bench/truth_retention.py on synthetic numbers (fast, deterministic, no model)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from retention import protocol, rules, simulate, stats  # noqa: E402


def test_top_layers_picks_best_third_with_stable_ties():
    acc = [0.5, 0.9, 0.6, 0.9, 0.7, 0.55]
    assert stats.top_layers(acc) == [1, 3]  # ceil(6/3) = 2 best, ascending
    assert stats.top_layers([0.5] * 30) == list(range(10))  # all tied: the lowest indices
    assert stats.top_layers([0.1, 0.2, 0.3, 0.4]) == [2, 3]
    assert stats.top_layers(acc, fraction=1.0) == list(range(6))
    with pytest.raises(ValueError):
        stats.top_layers([])


def test_retention_arithmetic_and_mde():
    assert stats.retention(0.7, 0.8) == pytest.approx(0.2 / 0.3)
    assert stats.retention(0.5, 0.8) == pytest.approx(0.0)
    assert np.isnan(stats.retention(0.6, 0.5))  # dense at chance: undefined, not infinite
    assert stats.mde(0.01) == pytest.approx(0.028016, abs=1e-5)  # (1.96 + 0.84) * SE


def test_placement_values_average_to_the_auroc():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    for ties in (False, True):
        y = rng.integers(0, 2, 60)
        s = rng.normal(size=60) + y
        if ties:
            s = np.round(s)  # many ties: each counts half
        v = protocol.placement(s, y)
        assert v.mean() == pytest.approx(roc_auc_score(y, s))
        assert v[y == 1].mean() == pytest.approx(v[y == 0].mean())
    assert np.all(protocol.placement(np.zeros(4), np.array([0, 1, 0, 1])) == 0.5)


def _set(name, family, clusters, tests, values):
    return stats.SetData(name, family, np.asarray(clusters), [np.asarray(t) for t in tests],
                         {"acc": [np.asarray(v, dtype=np.float32) for v in values]})


def test_point_estimates_and_pooling_by_hand():
    # units: 0 dense, 1-2 method "a" (prune seeds 0, 1); one set per family, two split seeds
    s1 = _set("x", "f1", [0, 0, 1, 1], [[0, 1], [2, 3]], [[[1, 1], [1, 0], [0, 1]], [[1, 0], [0, 0], [1, 0]]])
    s2 = _set("y", "f2", [0, 1, 2], [[0, 1, 2], [0, 1, 2]], [[[1, 1, 0]] * 3, [[1, 1, 1], [1, 0, 1], [1, 1, 0]]])
    design = stats.Design(dense=0, methods={"a": [1, 2]}, references=[])
    res = stats.analyse([s1, s2], design, ["acc"], {"acc": ["f1", "f2"]}, n_boot=200)["acc"]
    # f1: dense (1 + 0.5)/2 = 0.75; a = mean of seeds 0/1 units: ((0.5 + 0) / 2 + (0.5 + 0.5) / 2) / 2 = 0.375
    assert res["families"]["f1"]["dense"]["point"] == pytest.approx(0.75)
    assert res["families"]["f1"]["methods"]["a"]["value"]["point"] == pytest.approx(0.375)
    r1 = (0.375 - 0.5) / 0.25
    d2, a2 = (2 / 3 + 1) / 2, ((2 / 3 + 2 / 3) / 2 + (2 / 3 + 2 / 3) / 2) / 2
    r2 = (a2 - 0.5) / (d2 - 0.5)
    assert res["families"]["f1"]["methods"]["a"]["R"]["point"] == pytest.approx(r1)
    assert res["pooled"]["methods"]["a"]["R"]["point"] == pytest.approx((r1 + r2) / 2)
    assert res["pooled"]["methods"]["a"]["drop"]["point"] == pytest.approx(((0.75 - 0.375) + (d2 - a2)) / 2)


def test_twins_and_sets_sharing_entities_move_together():
    """Two sets of one family with the same clusters and values get the same value in every
    replicate; the same data in another family is drawn independently."""
    rng = np.random.default_rng(1)
    vals = [rng.random((3, 8)) for _ in range(4)]
    tests = [np.arange(8)] * 4
    clusters = np.repeat(np.arange(4), 2)
    sets = [_set("x", "f", clusters, tests, vals), _set("neg_x", "f", clusters, tests, vals), _set("z", "g", clusters, tests, vals)]
    draws = stats.bootstrap_draws(sets, 2, 4, 300, seed=0)
    vx, vn, vz = (stats.set_values(s, "acc", draws) for s in sets)
    np.testing.assert_array_equal(vx, vn)
    assert not np.allclose(vx, vz)


def test_draws_do_not_depend_on_the_number_of_methods():
    rng = np.random.default_rng(2)
    v3 = [rng.random((3, 10)) * [[0.2], [1], [1]] + [[0.8], [0], [0]] for _ in range(3)]  # dense above chance
    v5 = [np.concatenate([v, v[1:]]) for v in v3]  # two more units, copies of 1 and 2
    a = _set("x", "f", np.arange(10), [np.arange(10)] * 3, v3)
    b = _set("x", "f", np.arange(10), [np.arange(10)] * 3, v5)
    d1 = stats.analyse([a], stats.Design(0, {"m": [1, 2]}, []), ["acc"], {"acc": ["f"]}, n_boot=100, seed=4)
    d2 = stats.analyse([b], stats.Design(0, {"m": [1, 2], "copy": [3, 4]}, ["m"]), ["acc"], {"acc": ["f"]}, n_boot=100, seed=4)
    assert d1["acc"]["pooled"]["methods"]["m"]["R"] == d2["acc"]["pooled"]["methods"]["m"]["R"]
    same = d2["acc"]["pooled"]["methods"]["copy"]["diff"]["m"]["R"]
    assert same["point"] == 0 and same["ci"] == [0.0, 0.0]  # identical methods: the paired difference is exactly 0


def test_seed_effects_take_out_the_items():
    """v = item effect + seed shift: the seed effects are the shifts (centred), whatever the items."""
    rng = np.random.default_rng(3)
    a, g = rng.normal(size=12), np.array([0.1, -0.2, 0.05, 0.3])
    tests = [np.sort(rng.choice(12, 6, replace=False)) for _ in g]
    vals = [np.array([a[t] + g[r], a[t] + 2 * g[r]]) for r, t in enumerate(tests)]  # two units
    s = stats.SetData("x", "f", np.arange(12), tests, {"acc": vals})
    eff = stats.seed_effects(s, "acc")
    assert eff.shape == (4, 2)
    full = stats.SetData("x", "f", np.arange(12), [np.arange(12)] * 4,
                         {"acc": [np.array([a + g[r], a + 2 * g[r]]) for r in range(4)]})
    np.testing.assert_allclose(stats.seed_effects(full, "acc")[:, 0], g - g.mean(), atol=1e-12)
    np.testing.assert_allclose(stats.seed_effects(full, "acc")[:, 1], 2 * (g - g.mean()), atol=1e-12)


def test_combine_without_and_with_prune_seed_variance():
    from scipy.stats import t

    rng = np.random.default_rng(0)
    boot = 0.5 + 0.02 * rng.standard_normal(4000)
    # every prune seed gives the same estimate: the plain percentile interval, infinite df
    same = stats.combine(0.5, boot, np.full(3, 0.5), np.repeat(boot[None], 3, axis=0))
    assert same["ci"] == pytest.approx(list(stats.percentile_interval(boot)), abs=1e-12) and same["df"] == math.inf
    assert same["mde"] == pytest.approx(stats.mde(boot.std(ddof=1)), rel=1e-6)
    # the seeds disagree far beyond what the statement draws explain: the t interval with K-1 df
    seeds = np.array([0.3, 0.5, 0.7])
    tiny = 0.5 + 1e-4 * rng.standard_normal(4000)
    wide = stats.combine(0.5, tiny, seeds, np.repeat(tiny[None], 3, axis=0) + (seeds - 0.5)[:, None])
    half = t.ppf(0.975, 2) * seeds.std(ddof=1) / math.sqrt(3)
    assert wide["df"] == pytest.approx(2, rel=1e-3)
    assert wide["ci"] == pytest.approx([0.5 - half, 0.5 + half], abs=0.004)  # up to the percentiles of the tiny part
    assert wide["sd_prune"] == pytest.approx(seeds.std(ddof=1) / math.sqrt(3), rel=1e-3)
    # seed spread that the statement draws fully explain adds nothing
    noisy = stats.combine(0.5, boot, np.array([0.49, 0.5, 0.51]),
                          np.stack([boot - 0.01 + 0.02 * rng.standard_normal(4000) for _ in range(3)]))
    assert noisy["sd_prune"] == 0.0


def _family(dense, refs, lo=None):
    d = {"point": dense, "ci": [lo if lo is not None else dense - 0.02, dense + 0.02]}
    return {"dense": d, "methods": {m: {"R": {"point": r}} for m, r in refs.items()}}


def test_ceiling_and_floor_rules():
    refs = ["wanda", "tplo"]
    assert rules.family_status(_family(0.95, {"wanda": 0.99, "tplo": 0.97, "ours": 0.5}), refs) == "ceiling"
    assert rules.family_status(_family(0.95, {"wanda": 0.99, "tplo": 0.90}), refs) == "ok"
    assert rules.family_status(_family(0.59, {"wanda": 0.5}), refs) == "floor"  # below 0.60
    assert rules.family_status(_family(0.65, {"wanda": 0.5}, lo=0.57), refs) == "floor"  # margin 0.15, lower 0.07 < half
    assert rules.family_status(_family(0.65, {"wanda": 0.5}, lo=0.58), refs) == "ok"
    assert rules.family_status(_family(0.9, {"ours": 1.0}), refs) == "ok"  # no reference: never at the ceiling
    assert rules.verdict({"ci": [0.01, 0.2]}) == "better" and rules.verdict({"ci": [-0.2, -0.01]}) == "worse"
    assert rules.verdict({"ci": [-0.01, 0.2]}) == "no difference shown"
    assert rules.verdict({"ci": [0.05, 0.2]}, margin=0.1) == "no difference shown"


# The coverage simulation mirrors the protocol (same statements re-split, twins, sets sharing
# entities, correlated layers, prune-seed effects); bench/README.md reports a 2000-experiment run.
N_EXPERIMENTS = 240


def test_intervals_cover_the_truth_at_the_nominal_rate():
    res = simulate.coverage(simulate.Params(), N_EXPERIMENTS, n_boot=1000, seed=11)
    # if the true coverage were 0.95, an estimate from N experiments falls within 3 binomial SE
    # of it with probability 0.997: the tolerance is what the simulation's size justifies
    tol = 3 * math.sqrt(0.95 * 0.05 / N_EXPERIMENTS)
    for key in ("R pooled ref", "R pooled m", "dR pooled m-ref"):
        assert abs(res["coverage"][key] - 0.95) <= tol, (key, res["coverage"][key], tol)
    assert res["binomial_se_at_nominal"] == pytest.approx(tol / 3)


def test_simulation_truth_is_the_population_value():
    p = simulate.Params()
    truth = simulate.true_values(p, 3)
    for m, acc in p.accuracy.items():
        assert truth[m][0] == pytest.approx(acc)
