"""TTPD on synthetic activations with planted truth, polarity-sensitive and polarity directions."""

from __future__ import annotations

import numpy as np
import pytest

from truthprune import ProbeMeta, UserError, get_registry
from truthprune_ttpd.maths import centre_by_group, truth_polarity_directions


def unit(v):
    return v / np.linalg.norm(v)


def planted(n=400, d=32, seed=0):
    """a = 2τ t_G + 3τp t_P + 2p w + noise: t_P flips with polarity, so a single direction
    fitted on mixed data is misled, while t_G generalises across polarities."""
    q, _ = np.linalg.qr(np.random.default_rng(1234).normal(size=(d, 3)))  # same directions for every draw
    t_g, t_p, w = q.T
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    p = np.where(np.arange(n) % 2 == 0, 1, -1)
    tau = (2 * y - 1)[:, None]
    x = 2 * tau * t_g + 3 * tau * p[:, None] * t_p + 2 * p[:, None] * w + rng.normal(size=(n, d)) * 0.7 + 4.0
    groups = (p < 0).astype(int)
    return x, y, p, groups, t_g, t_p


def test_least_squares_recovers_exact_directions():
    rng = np.random.default_rng(0)
    t_g, t_p = rng.normal(size=5), rng.normal(size=5)
    tau = np.array([1, -1, 1, -1, 1, -1.0])
    p = np.array([1, 1, -1, -1, 1, -1.0])
    acts = tau[:, None] * t_g + (tau * p)[:, None] * t_p
    g, pp = truth_polarity_directions(acts, (tau > 0).astype(int), p)
    assert np.allclose(g, t_g) and np.allclose(pp, t_p)


def test_centre_by_group():
    x = np.array([[1.0, 2], [3, 4], [10, 10], [20, 30]])
    c = centre_by_group(x, np.array([0, 0, 1, 1]))
    assert np.allclose(c, [[-1, -1], [1, 1], [-5, -10], [5, 10]])


def test_ttpd_finds_general_truth_direction():
    x, y, p, g, t_g, _ = planted()
    probe = get_registry().create("probe", "ttpd", {})
    assert probe.needs_polarity
    probe.fit(x[:300], y[:300], ProbeMeta(polarity=p[:300], group=g[:300]))
    assert probe.score(x[300:], y[300:]) > 0.95
    assert float(unit(probe.direction) @ t_g) > 0.95


def test_ttpd_generalises_to_unseen_polarity_mix():
    """Trained on both polarities, tested on each polarity alone: both stay accurate."""
    x, y, p, g, _, _ = planted(seed=1)
    probe = get_registry().create("probe", "ttpd", {}).fit(x[:300], y[:300], ProbeMeta(polarity=p[:300], group=g[:300]))
    for sign in (1, -1):
        rows = np.flatnonzero(p[300:] == sign) + 300
        assert probe.score(x[rows], y[rows]) > 0.9


def test_ttpd_single_polarity_still_works_and_missing_polarity_errors():
    x, y, p, g, t_g, _ = planted(seed=2)
    aff = p > 0
    probe = get_registry().create("probe", "ttpd", {}).fit(x[aff], y[aff], ProbeMeta(polarity=p[aff]))
    assert probe.polarity_direction is None and probe.score(x[aff], y[aff]) > 0.95
    with pytest.raises(UserError, match="polarity"):
        get_registry().create("probe", "ttpd", {}).fit(x, y)
