"""CCS on synthetic affirmative/negated pairs with planted truth and polarity directions."""

from __future__ import annotations

import numpy as np
import pytest

from truthprune import ProbeMeta, UserError, get_registry
from truthprune_ccs.maths import ccs_loss_and_grad


def pairs(n=300, d=24, seed=0):
    """Affirmative a = 2τ t + noise; its negation a' = -2τ t + 3 w + noise (truth flips)."""
    q, _ = np.linalg.qr(np.random.default_rng(1234).normal(size=(d, 2)))  # same directions for every draw
    t, w = q.T
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    tau = (2 * y - 1)[:, None]
    common = rng.normal(size=(n, d)) * 0.5  # shared by a statement and its negation
    aff = 2 * tau * t + common + rng.normal(size=(n, d)) * 0.3 + 1.0
    neg = -2 * tau * t + common + 3 * w + rng.normal(size=(n, d)) * 0.3 + 1.0
    x = np.concatenate([aff, neg])
    labels = np.concatenate([y, 1 - y])
    pol = np.concatenate([np.ones(n, int), -np.ones(n, int)])
    pair = np.concatenate([np.arange(n) + n, -np.ones(n, int)])
    return x, labels, ProbeMeta(polarity=pol, pair=pair, seed=0), t


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(size=(7, 4)), rng.normal(size=(7, 4))
    w, b = rng.normal(size=4), 0.3
    _, gw, gb = ccs_loss_and_grad(w, b, pos, neg)
    eps = 1e-6
    for i in range(4):
        e = np.zeros(4)
        e[i] = eps
        num = (ccs_loss_and_grad(w + e, b, pos, neg)[0] - ccs_loss_and_grad(w - e, b, pos, neg)[0]) / (2 * eps)
        assert abs(num - gw[i]) < 1e-6
    num_b = (ccs_loss_and_grad(w, b + eps, pos, neg)[0] - ccs_loss_and_grad(w, b - eps, pos, neg)[0]) / (2 * eps)
    assert abs(num_b - gb) < 1e-6


def test_loss_by_hand():
    # one pair, w = 0, b = 0: p = 0.5 for both -> (0.5 - 0.5)^2 + 0.5^2 = 0.25
    loss, _, _ = ccs_loss_and_grad(np.zeros(2), 0.0, np.ones((1, 2)), np.ones((1, 2)))
    assert loss == pytest.approx(0.25)


def test_ccs_recovers_planted_direction_with_correct_sign():
    x, y, meta, t = pairs()
    probe = get_registry().create("probe", "ccs", {"steps": 1000})
    probe.fit(x, y, meta)
    cos = float(probe.direction @ t / np.linalg.norm(probe.direction))
    assert cos > 0.8  # aligned, and the sign is fixed by the labels
    xt, yt, mt, _ = pairs(seed=1)
    assert probe.score(xt, yt, mt) > 0.95
    assert probe.score(xt, yt, None) > 0.9  # unknown polarity: centred by the average mean


def test_ccs_is_seeded():
    x, y, meta, _ = pairs(n=100)
    a = get_registry().create("probe", "ccs", {"steps": 50}).fit(x, y, meta)
    b = get_registry().create("probe", "ccs", {"steps": 50}).fit(x, y, meta)
    c = get_registry().create("probe", "ccs", {"steps": 50, "seed": 7}).fit(x, y, meta)
    assert np.array_equal(a.direction, b.direction) and not np.array_equal(a.direction, c.direction)


def test_ccs_needs_pairs():
    x, y, meta, _ = pairs(n=20)
    with pytest.raises(UserError, match="pairs"):
        get_registry().create("probe", "ccs", {}).fit(x, y, ProbeMeta(polarity=meta.polarity))
