"""Statistics of bench/truth_retention.py on synthetic numbers (fast, deterministic, no model)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from retention import stats  # noqa: E402


def test_top_layers_picks_best_third_with_stable_ties():
    acc = [0.5, 0.9, 0.6, 0.9, 0.7, 0.55]
    assert stats.top_layers(acc) == [1, 3]  # ceil(6/3) = 2 best, ascending
    assert stats.top_layers([0.5] * 30) == list(range(10))  # all tied: the lowest indices
    assert stats.top_layers([0.1, 0.2, 0.3, 0.4]) == [2, 3]  # ceil(4/3) = 2
    assert stats.top_layers([0.7]) == [0]
    assert stats.top_layers(acc, fraction=1.0) == list(range(6))
    with pytest.raises(ValueError):
        stats.top_layers([])


def test_retention_arithmetic():
    assert stats.retention(0.7, 0.8) == pytest.approx(0.2 / 0.3)
    assert stats.retention(0.8, 0.8) == pytest.approx(1.0)
    assert stats.retention(0.5, 0.8) == pytest.approx(0.0)
    assert np.isnan(stats.retention(0.6, 0.5))  # dense at chance: undefined, not infinite
    np.testing.assert_allclose(stats.retention(np.array([0.6, 0.7]), np.array([0.7, 0.9])), [0.5, 0.5])


def _const(p_items: list[list[float]], n_layers: int = 2) -> np.ndarray:
    """[models, layers, items] with every layer equal to the given per-item correctness."""
    arr = np.asarray(p_items, dtype=bool)[:, None, :]
    return np.repeat(arr, n_layers, axis=1)


def test_group_and_overall_retention_from_correctness():
    # model 0 = dense, 1 = pruned; two seeds, accuracies per seed averaged first
    a = [_const([[1, 1, 1, 0], [1, 1, 0, 0]]), _const([[1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]])]
    # seed 0: dense 0.75, pruned 0.5; seed 1: dense 0.5, pruned 0.375 -> D = 0.625, P = 0.4375
    b = [_const([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]]), _const([[1, 1, 1, 1], [1, 1, 1, 0]])]
    # seed 0: 5/6 vs 4/6; seed 1: 1.0 vs 0.75 -> D = 11/12, P = 17/24
    correct = {"a": a, "b": b}
    acc = stats.set_accuracies(correct)
    np.testing.assert_allclose(acc["a"], [0.625, 0.4375])
    np.testing.assert_allclose(acc["b"], [11 / 12, 17 / 24])
    groups = {"g1": ["a", "b"], "g2": ["b"]}
    r = stats.group_retention(acc, groups)
    d1, p1 = (0.625 + 11 / 12) / 2, (0.4375 + 17 / 24) / 2
    assert r["g1"][1] == pytest.approx((p1 - 0.5) / (d1 - 0.5))
    assert r["g2"][1] == pytest.approx((17 / 24 - 0.5) / (11 / 12 - 0.5))
    assert r["g1"][0] == pytest.approx(1.0)
    assert stats.overall(r, ["g1", "g2"])[1] == pytest.approx((r["g1"][1] + r["g2"][1]) / 2)


def test_layers_average_before_items():
    # layer 0 always right, layer 1 always wrong: accuracy 0.5 whatever the items
    arr = np.zeros((1, 2, 5), dtype=bool)
    arr[0, 0] = True
    assert stats.set_accuracies({"s": [arr]})["s"][0] == pytest.approx(0.5)


def _synthetic(rng, n_seeds, n_items, p_dense, p_pruned, seed_sd=0.02, shared=0.6):
    """One data set: per seed a split effect shifts both models; items are correlated between
    the models (a shared latent difficulty), as real probes on related activations are."""
    per_seed = []
    for _ in range(n_seeds):
        shift = rng.normal(0.0, seed_sd)
        u_shared = rng.random(n_items)
        rows = []
        for p in (p_dense, p_pruned):
            u = np.where(rng.random(n_items) < shared, u_shared, rng.random(n_items))
            rows.append(u < p + shift)
        per_seed.append(np.stack(rows)[:, None, :])
    return per_seed


def test_bootstrap_interval_covers_the_true_retention():
    """Coverage of the 95 % interval of R over repeated synthetic experiments."""
    p_dense, p_pruned = 0.8, 0.7
    true_r = (p_pruned - 0.5) / (p_dense - 0.5)
    rng = np.random.default_rng(123)
    hits, widths = 0, []
    n_exp = 120
    for e in range(n_exp):
        correct = {"s": _synthetic(rng, n_seeds=5, n_items=150, p_dense=p_dense, p_pruned=p_pruned)}
        res = stats.summarize(correct, {"g": ["s"]}, {}, n_boot=300, seed=e)
        lo, hi = res["R"]["g"]["ci"][1]
        hits += lo <= true_r <= hi
        widths.append(hi - lo)
    coverage = hits / n_exp
    assert 0.85 <= coverage <= 1.0, coverage
    assert 0.05 < np.mean(widths) < 0.6


def test_bootstrap_is_deterministic_and_independent_of_other_models():
    rng = np.random.default_rng(0)
    data = _synthetic(rng, 3, 40, 0.8, 0.7)
    extra = [np.concatenate([arr, arr[1:2]]) for arr in data]  # a third model, a copy of the second
    b1 = stats.bootstrap_set_accuracies({"s": data}, n_boot=50, seed=7)["s"]
    b2 = stats.bootstrap_set_accuracies({"s": data}, n_boot=50, seed=7)["s"]
    b3 = stats.bootstrap_set_accuracies({"s": extra}, n_boot=50, seed=7)["s"]
    np.testing.assert_array_equal(b1, b2)
    np.testing.assert_array_equal(b1, b3[:, :2])
    np.testing.assert_array_equal(b3[:, 1], b3[:, 2])


def test_paired_difference_is_tighter_than_unpaired_and_exact_for_identical_models():
    rng = np.random.default_rng(5)
    per_seed = []
    for _ in range(5):
        u = rng.random(200)  # item difficulty shared by all three models
        per_seed.append(np.stack([u < 0.85, u < 0.72, u < 0.70])[:, None, :])
    res = stats.summarize({"s": per_seed}, {"g": ["s"]}, {"all": ["g"]}, pairs=[(1, 2), (2, 2)], n_boot=400)
    d = res["diff"]["1-2"]["g"]
    assert d["point"] == pytest.approx(res["R"]["g"]["point"][1] - res["R"]["g"]["point"][2])
    # model 1 beats model 2 on every item that model 2 gets right: the paired interval excludes 0
    assert d["ci"][0] > 0
    lo1, hi1 = res["R"]["g"]["ci"][1]
    lo2, hi2 = res["R"]["g"]["ci"][2]
    assert lo1 < hi2  # ... although the two unpaired intervals overlap
    assert res["diff"]["2-2"]["all"]["ci"] == [0.0, 0.0]


def test_interval_ignores_nan_and_checks_shapes():
    assert stats.percentile_interval(np.array([np.nan, 1.0, 1.0])) == (1.0, 1.0)
    assert all(np.isnan(stats.percentile_interval(np.array([np.nan]))))
    with pytest.raises(ValueError):
        stats.set_accuracies({"a": [np.zeros((2, 1, 3), bool)], "b": [np.zeros((3, 1, 3), bool)]})
