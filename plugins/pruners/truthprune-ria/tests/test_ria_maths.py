"""RIA's score on a hand-made tensor, and the N:M channel permutation on hand-worked and random cases."""

from __future__ import annotations

import itertools

import pytest
import torch

from truthprune import SparsityTarget, mask_from_scores, nm_mask
from truthprune_ria import heuristic_permutation, nm_permutation, refine_permutation, retained_score, ria_scores


def test_ria_equals_its_formula_on_a_hand_made_tensor():
    w = torch.tensor([[1.0, -2.0], [3.0, 4.0]])
    sq = torch.tensor([4.0, 16.0])  # ||X_0|| = 2, ||X_1|| = 4
    # |W| column sums (4, 6), row sums (3, 7); activation term ||X_j||^0.5 = (sqrt 2, 2)
    want = torch.tensor([
        [(1 / 4 + 1 / 3) * 2 ** 0.5, (2 / 6 + 2 / 3) * 2.0],
        [(3 / 4 + 3 / 7) * 2 ** 0.5, (4 / 6 + 4 / 7) * 2.0],
    ])
    torch.testing.assert_close(ria_scores(w, sq), want, rtol=1e-6, atol=0)
    # a = 0: relative importance alone; a = 2: times ||X_j||^2 = q_j
    torch.testing.assert_close(ria_scores(w, sq, a=0.0), want / torch.tensor([[2 ** 0.5, 2.0]]), rtol=1e-6, atol=0)
    torch.testing.assert_close(ria_scores(w, sq, a=2.0), want / torch.tensor([[2 ** 0.5, 2.0]]) * sq, rtol=1e-6, atol=0)
    # per-row selection at 50 %: row 0 prunes column 0 (0.82 < 2.0), row 1 column 0 (1.67 < 2.48)
    assert mask_from_scores(ria_scores(w, sq), SparsityTarget(0.5)).tolist() == [[True, False], [True, False]]


def test_zero_rows_and_columns_contribute_nothing():
    w = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 2.0]])
    s = ria_scores(w, torch.ones(3), a=0.0)
    assert torch.isfinite(s).all()
    torch.testing.assert_close(s, torch.tensor([[0.0, 0.0, 0.0], [1 / 1 + 1 / 3, 0.0, 2 / 2 + 2 / 3]]))


def test_hand_worked_permutation_and_why_unpermuting_breaks_nm():
    s = torch.tensor([[9.0, 9.0, 9.0, 9.0, 1.0, 1.0, 1.0, 1.0]])
    # identity order: group {9,9,9,9} keeps 18 and group {1,1,1,1} keeps 2
    assert retained_score(s, 2, 4) == 20.0
    perm = heuristic_permutation(s, 4)
    assert perm.tolist() == [0, 3, 4, 7, 1, 2, 5, 6]  # snake deal: every group gets two 9s and two 1s
    assert retained_score(s, 2, 4, perm) == 36.0
    assert nm_permutation(s, 2, 4).tolist() == perm.tolist()
    # the mask chosen in the permuted order is 2:4 there ...
    stored = nm_mask(s[:, perm], 2, 4)
    assert (stored.reshape(1, -1, 4).sum(-1) == 2).all()
    # ... but mapped back to the original columns it is not: original group 0 (the four 9s) loses
    # nothing and group 1 (the four 1s) loses all four. A permutation only helps if the model
    # stores the permuted order, which is why the plugin reorders the MLP channels themselves.
    back = torch.zeros_like(stored)
    back[:, perm] = stored
    assert back.reshape(1, -1, 4).sum(-1).tolist() == [[0, 4]]


def _scores(out=24, inp=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(out, inp, generator=g) * torch.rand(1, inp, generator=g) ** 4  # uneven channel importance


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("nm", [(2, 4), (1, 4), (4, 8)])
def test_assignment_rounds_never_lower_the_retained_score(seed, nm):
    n, m = nm
    s = _scores(seed=seed)
    start = heuristic_permutation(s, m)
    assert sorted(start.tolist()) == list(range(64))
    steps = [retained_score(s, n, m, start)]
    perm = start
    for _ in range(3):
        perm = refine_permutation(s, perm, n, m, rounds=1)
        assert sorted(perm.tolist()) == list(range(64))
        steps.append(retained_score(s, n, m, perm))
    assert all(b >= a * (1 - 1e-12) for a, b in zip(steps, steps[1:]))
    best = nm_permutation(s, n, m)
    assert retained_score(s, n, m, best) >= retained_score(s, n, m) and retained_score(s, n, m, best) >= steps[0]


def test_permutation_within_the_optimum_on_a_brute_forced_case():
    s = _scores(out=6, inp=8, seed=4)
    ident = torch.arange(8)
    best = max(retained_score(s, 2, 4, torch.tensor(list(g) + [c for c in range(8) if c not in g]))
               for g in itertools.combinations(range(8), 4))
    got = retained_score(s, 2, 4, nm_permutation(s, 2, 4))
    assert retained_score(s, 2, 4, ident) <= got <= best + 1e-9
    assert got >= 0.99 * best
