"""logreg probe on synthetic activations with a planted truth direction."""

from __future__ import annotations

import numpy as np
import pytest

from truthprune import UserError, get_registry


def planted(n=600, d=40, seed=0, signal=2.5):
    rng = np.random.default_rng(seed)
    t = rng.normal(size=d)
    t /= np.linalg.norm(t)
    y = rng.integers(0, 2, size=n)
    scales = np.exp(rng.normal(size=d))  # anisotropic nuisance variance, plus an offset
    x = rng.normal(size=(n, d)) * 0.5 + 5.0 + signal * (2 * y - 1)[:, None] * t
    x[:, :5] += rng.normal(size=(n, 5)) * scales[:5]
    return x.astype(np.float32), y, t


def cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize(
    "options, min_cos",
    [
        ({}, 0.8),
        ({"C": None, "standardize": False, "max_iter": 100}, 0.8),
        ({"standardize": False}, 0.8),
        ({"C": 1.0, "l1_ratio": 1.0}, 0.7),  # L1 sparsifies a dense planted direction
    ],
)
def test_recovers_planted_direction(options, min_cos):
    x, y, t = planted()
    probe = get_registry().create("probe", "logreg", options)
    probe.fit(x[:400], y[:400])
    assert probe.score(x[400:], y[400:]) > 0.95
    assert cos(probe.direction, t) > min_cos
    assert set(np.unique(probe.predict(x[400:]))) <= {0, 1}


def test_is_deterministic_and_standardisation_folds_into_direction():
    x, y, _ = planted(seed=1)
    a = get_registry().create("probe", "logreg", {}).fit(x, y)
    b = get_registry().create("probe", "logreg", {}).fit(x, y)
    assert np.array_equal(a.direction, b.direction)
    # decision = w_raw . x + const: the raw-space direction reproduces the decision function
    dec = a.decision_function(x)
    proj = x.astype(np.float64) @ a.direction
    assert np.allclose(dec - proj, (dec - proj)[0], atol=1e-6)


def test_bad_options_are_user_errors():
    with pytest.raises(UserError, match="C"):
        get_registry().create("probe", "logreg", {"C": -1})
    with pytest.raises(UserError, match="unknown option 'penalty'"):
        get_registry().create("probe", "logreg", {"penalty": "l2"})
