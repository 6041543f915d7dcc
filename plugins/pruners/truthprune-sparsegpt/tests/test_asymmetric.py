"""Asymmetric (dense-target) OBS against independent float64 least-squares solutions on a tiny layer,
and its reduction to plain SparseGPT when the dense and pruned inputs coincide."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from truthprune import LinearStats, SparsityTarget, get_registry
from truthprune_sparsegpt import dense_target_weight, obs_prune


def _layer(n=400, d=8, out=5, seed=0, tiny_cols=0):
    """Pruned inputs X_p, dense inputs X_d (X_p plus a correlated drift), weight W; float64 numpy."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / d**0.5 + np.eye(d)
    xp = rng.normal(size=(n, d)) @ mix
    xd = xp + 0.3 * rng.normal(size=(n, d)) @ mix + 0.2
    # inputs that barely fire, the same in both models and orthogonal to every other input: OBS prunes them first
    q, _ = np.linalg.qr(np.hstack([xp[:, tiny_cols:], xd[:, tiny_cols:], np.ones((n, 1))]))
    faint = rng.normal(size=(n, tiny_cols))
    faint = 1e-3 * (faint - q @ (q.T @ faint))
    xp[:, :tiny_cols], xd[:, :tiny_cols] = faint, faint
    w = rng.normal(size=(out, d))
    w[:, :tiny_cols] *= 0.1
    return xp, xd, w


def _stats(xp, xd) -> tuple[torch.Tensor, torch.Tensor]:
    """H = 2 X_p^T X_p / n and C = 2 X_p^T X_d / n, as the plugin forms them from the engine's statistics."""
    n = xp.shape[0]
    return torch.tensor(2 * xp.T @ xp / n), torch.tensor(2 * xp.T @ xd / n)


def _ridge_lstsq(xp, xd, w, lam, keep=None):
    """Independent solution of min ||X_d w^T - X_p[:, K] v^T||^2 * 2/n + lam ||v - w_K||^2, row by row (numpy lstsq)."""
    n, d = xp.shape
    out = np.zeros_like(w)
    for r in range(w.shape[0]):
        k = np.arange(d) if keep is None else np.flatnonzero(keep[r])
        a = np.vstack([np.sqrt(2 / n) * xp[:, k], np.sqrt(lam) * np.eye(len(k))])
        b = np.concatenate([np.sqrt(2 / n) * xd @ w[r], np.sqrt(lam) * w[r, k]])
        out[r, k] = np.linalg.lstsq(a, b, rcond=None)[0]
    return out


def test_unconstrained_start_is_the_least_squares_fit_to_the_dense_outputs():
    xp, xd, w = _layer()
    h, c = _stats(xp, xd)
    start = dense_target_weight(torch.tensor(w), h, c, percdamp=0.0)
    expect = np.linalg.lstsq(xp, xd @ w.T, rcond=None)[0].T
    assert np.allclose(start.numpy(), expect, atol=1e-9)
    new, mask = obs_prune(start, h, SparsityTarget(0.0), percdamp=0.0)  # nothing pruned: the sweep keeps W*
    assert not mask.any() and np.allclose(new.numpy(), expect, atol=1e-9)


def test_dampening_is_a_ridge_towards_the_dense_weight():
    xp, xd, w = _layer(seed=1)
    h, c = _stats(xp, xd)
    percdamp = 0.05
    lam = percdamp * float(torch.diagonal(h).mean())
    start = dense_target_weight(torch.tensor(w), h, c, percdamp=percdamp)
    assert np.allclose(start.numpy(), _ridge_lstsq(xp, xd, w, lam), atol=1e-9)


@pytest.mark.parametrize("percdamp", [0.0, 0.01])
def test_pruned_solution_is_the_constrained_least_squares_fit(percdamp):
    """When OBS prunes the leading columns, the sweep's result is the exact constrained optimum."""
    xp, xd, w = _layer(seed=2, tiny_cols=2)
    h, c = _stats(xp, xd)
    start = dense_target_weight(torch.tensor(w), h, c, percdamp=percdamp)
    new, mask = obs_prune(start, h, SparsityTarget(0.25), percdamp=percdamp)
    assert mask[:, :2].all() and not mask[:, 2:].any()  # the precondition of the exactness argument
    lam = percdamp * float(torch.diagonal(h).mean())
    expect = _ridge_lstsq(xp, xd, w, lam, keep=~mask.numpy())
    assert np.allclose(new.numpy(), expect, atol=1e-8)
    # and it fits the dense outputs better than the symmetric (target=pruned) solution does
    sym, _ = obs_prune(torch.tensor(w), h, SparsityTarget(0.25), percdamp=percdamp)
    err = lambda v: float(np.square(xd @ w.T - xp @ v.numpy().T).mean())  # noqa: E731
    assert err(new) < err(sym)


def test_equal_inputs_reduce_to_plain_sparsegpt():
    xp, _, w = _layer(seed=3)
    h, c = _stats(xp, xp)
    start = dense_target_weight(torch.tensor(w), h, c, percdamp=0.01)
    assert torch.allclose(start, torch.tensor(w), atol=1e-10)
    target = SparsityTarget(0.5, (2, 4))
    a, ma = obs_prune(start, h, target)
    b, mb = obs_prune(torch.tensor(w), h, target)
    assert torch.equal(ma, mb) and torch.allclose(a, b, atol=1e-9)


def test_pruner_option_asks_for_the_cross_statistic_and_uses_it():
    from truthprune import STAT_CROSS

    reg = get_registry()
    plain, dense = reg.create("pruner", "sparsegpt"), reg.create("pruner", "sparsegpt", {"target": "dense"})
    assert STAT_CROSS not in plain.required_stats and STAT_CROSS in dense.required_stats
    assert STAT_CROSS not in type(dense).required_stats  # the class stays as registered
    xp, xd, w = _layer(seed=4, d=16, out=8)
    gram = torch.tensor(xp.T @ xp, dtype=torch.float32)
    cross = torch.tensor(xp.T @ xd, dtype=torch.float32)
    st = LinearStats(n_tokens=xp.shape[0], gram=gram, cross=cross)
    weight = torch.tensor(w, dtype=torch.float32)
    got = dense.prune(weight, st, SparsityTarget(0.5))
    start = dense_target_weight(weight, gram.double() * 2 / xp.shape[0], cross.double() * 2 / xp.shape[0], 0.01)
    new, mask = obs_prune(start, gram.double() * 2 / xp.shape[0], SparsityTarget(0.5))
    assert torch.equal(got.mask, mask) and torch.equal(got.weight, new.float())
    assert got.weight.dtype == torch.float32
