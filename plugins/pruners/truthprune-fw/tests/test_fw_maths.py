"""Frank-Wolfe maths on a hand-worked layer and on small random layers."""

from __future__ import annotations

import pytest
import torch

from truthprune import SparsityTarget, wanda_scores
from truthprune_fw import frank_wolfe_mask, least_squares_update, reconstruction_error
from truthprune_fw.maths import row_errors


def _hand_case():
    # columns 2 and 3 are strongly anti-correlated: pruning both cancels (error 0.2) while Wanda,
    # which only sees the diagonal, prunes the two smallest-norm columns 0 and 1 (error 2.0)
    w = torch.ones(1, 4)
    g = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.2, -1.1], [0, 0, -1.1, 1.2]])
    return w, g


def test_hand_worked_single_iteration():
    w, g = _hand_case()
    warm = wanda_scores(w, g.diagonal())
    res = frank_wolfe_mask(w, g, warm, SparsityTarget(0.5), iterations=1)
    # warm keep [0,0,1,1]: E = [1,1,0,0], f = 2; LMO keeps {0,1}; gamma = 2 / 2.2; f = 2 - 4g + 2.2g^2
    gamma = 2 / 2.2
    assert res.objective == pytest.approx([2.0, 2 - 4 * gamma + 2.2 * gamma**2], rel=1e-6)
    assert res.keep.tolist() == [[True, True, False, False]]
    assert res.warm_error == pytest.approx(2.0) and res.rounded_error == pytest.approx(0.2, rel=1e-6)
    assert res.rows_improved == 1


def _layer(out=12, inp=24, tokens=200, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, inp, generator=gen) @ torch.randn(inp, inp, generator=gen) * 0.3  # correlated inputs
    x[:, 3] *= 8.0  # an outlier feature, as in LLM activations
    w = torch.randn(out, inp, generator=gen)
    return w, x.t() @ x, (x * x).sum(0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("target", [SparsityTarget(0.5), SparsityTarget(0.7), SparsityTarget(0.5, (2, 4))])
def test_objective_decreases_monotonically_and_rounding_beats_warm_start(seed, target):
    w, g, sq = _layer(seed=seed)
    res = frank_wolfe_mask(w, g, wanda_scores(w, sq), target, iterations=30)
    obj = torch.tensor(res.objective, dtype=torch.float64)
    assert (obj[1:] <= obj[:-1] * (1 + 1e-5) + 1e-6).all(), res.objective
    assert obj[-1] < obj[0]
    assert res.rounded_error <= res.warm_error
    # the returned numbers are the true errors of the masks
    warm_keep = ~__import__("truthprune").mask_from_scores(wanda_scores(w, sq), target)
    assert reconstruction_error(w, w * warm_keep, g) == pytest.approx(res.warm_error, rel=1e-4)
    assert reconstruction_error(w, w * res.keep, g) == pytest.approx(res.rounded_error, rel=1e-4)
    # exact counts: per row, or per group of m for N:M
    if target.nm is None:
        assert (res.keep.sum(1) == w.shape[1] - int(w.shape[1] * target.sparsity)).all()
    else:
        n, m = target.nm
        assert (res.keep.reshape(w.shape[0], -1, m).sum(-1) == m - n).all()


def test_standard_step_rule_and_zero_iterations():
    w, g, sq = _layer()
    warm = ~__import__("truthprune").mask_from_scores(wanda_scores(w, sq), SparsityTarget(0.5))
    zero = frank_wolfe_mask(w, g, wanda_scores(w, sq), SparsityTarget(0.5), iterations=0)
    assert torch.equal(zero.keep, warm) and len(zero.objective) == 1
    std = frank_wolfe_mask(w, g, wanda_scores(w, sq), SparsityTarget(0.5), iterations=20, step="standard")
    assert std.rounded_error <= std.warm_error and len(std.objective) == 21


def test_row_errors_equal_explicit_activations():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(50, 6, generator=gen)
    w = torch.randn(3, 6, generator=gen)
    keep = torch.rand(3, 6, generator=gen) > 0.5
    want = ((x @ w.t() - x @ (w * keep).t()) ** 2).sum(0)
    torch.testing.assert_close(row_errors(w, keep.float(), x.t() @ x), want, rtol=1e-4, atol=1e-5)


def test_least_squares_update_matches_closed_form():
    w, g, sq = _layer(out=4, inp=10)
    keep = ~__import__("truthprune").mask_from_scores(wanda_scores(w, sq), SparsityTarget(0.5))
    damp = 0.01
    new = least_squares_update(w, keep, g, iterations=200, damp=damp)
    assert torch.equal(new == 0, ~keep | (new == 0)) and (new[~keep] == 0).all()
    gd = (g + damp * g.diagonal().mean() * torch.eye(10)).double()
    for r in range(4):
        k = keep[r]
        want = torch.linalg.solve(gd[k][:, k], (w[r].double() @ gd)[k])  # [W' G]_K = [W G]_K
        torch.testing.assert_close(new[r, k].double(), want, rtol=1e-3, atol=1e-4)
    assert reconstruction_error(w, new, g) < reconstruction_error(w, w * keep, g)
