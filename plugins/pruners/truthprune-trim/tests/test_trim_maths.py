"""TRIM's maths on hand-worked counts and small random layers."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from truthprune import SparsityTarget, mask_from_scores, wanda_scores
from truthprune_trim import exact_row_counts, row_cosine, row_count_mask, trim_mask


def test_exact_row_counts_hand_worked():
    # 3 rows of 10 inputs, total 15: real counts 3, 5, 7 already sum to 15
    k = exact_row_counts(torch.tensor([0.3, 0.5, 0.7]), 10, 15, 0, 9)
    assert k.tolist() == [3, 5, 7]
    # real counts 2.6, 5.2, 7.2 (sum 15): floors 2, 5, 7 leave 1 for the largest fraction (row 0)
    assert exact_row_counts(torch.tensor([0.26, 0.52, 0.72]), 10, 15, 0, 9).tolist() == [3, 5, 7]
    # bounds bind: 8 would exceed hi = 6, the shift moves the rest to the other rows
    k = exact_row_counts(torch.tensor([0.1, 0.1, 0.9]), 10, 15, 2, 6)
    assert k.tolist() == [5, 4, 6] or k.tolist() == [4, 5, 6]
    assert int(k.sum()) == 15 and int(k.max()) <= 6
    with pytest.raises(ValueError):
        exact_row_counts(torch.tensor([0.5, 0.5]), 10, 19, 0, 9)


def test_row_count_mask_prunes_lowest_per_row():
    s = torch.tensor([[4.0, 1.0, 3.0, 2.0], [1.0, 2.0, 3.0, 4.0]])
    m = row_count_mask(s, torch.tensor([1, 3]))
    assert m.tolist() == [[False, True, False, False], [True, True, True, False]]


def test_row_cosine_equals_explicit_outputs():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=gen)
    w = torch.randn(3, 6, generator=gen)
    p = w * (torch.rand(3, 6, generator=gen) > 0.5)
    want = torch.nn.functional.cosine_similarity(x @ w.t(), x @ p.t(), dim=0)
    torch.testing.assert_close(row_cosine(w, p, x.t() @ x), want, rtol=1e-4, atol=1e-5)


def _layer(out=16, inp=40, tokens=300, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, inp, generator=gen) * torch.linspace(0.2, 3.0, inp)
    w = torch.randn(out, inp, generator=gen) * torch.linspace(0.3, 2.0, out).unsqueeze(1)
    return w, x.t() @ x, (x * x).sum(0)


@pytest.mark.parametrize("sparsity", [0.5, 0.7, 0.33, 0.05])
@pytest.mark.parametrize("seed", [0, 1])
def test_row_sparsities_average_exactly_to_the_target(sparsity, seed):
    w, g, sq = _layer(seed=seed)
    res = trim_mask(w, wanda_scores(w, sq), g, sparsity, iterations=8, step=0.1)
    per_row = res.mask.sum(1)
    assert torch.equal(per_row, res.counts)
    k = int(40 * sparsity + 1e-9)
    assert int(per_row.sum()) == 16 * k  # exactly the uniform total: mean row sparsity = k / in
    assert sum(Fraction(int(c), 40) for c in per_row) / 16 == Fraction(k, 40)  # exact rational mean
    assert per_row.min() >= 0 and per_row.max() <= 39


def test_variance_of_row_quality_goes_down_and_rows_differ():
    w, g, sq = _layer(seed=2)
    res = trim_mask(w, wanda_scores(w, sq), g, 0.7, iterations=10, step=0.05)
    assert len(res.variances) == 11
    assert min(res.variances) < res.variances[0]  # iterating helped
    assert res.variances[res.chosen] == min(res.variances)
    assert res.counts.unique().numel() > 1  # row sparsities really differ
    uniform = mask_from_scores(wanda_scores(w, sq), SparsityTarget(0.7))
    q_uniform = row_cosine(w, w.masked_fill(uniform, 0), g)
    q_trim = row_cosine(w, w.masked_fill(res.mask, 0), g)
    assert q_trim.var() < q_uniform.var()


def test_zero_iterations_is_the_plain_score_mask():
    w, g, sq = _layer()
    res = trim_mask(w, wanda_scores(w, sq), g, 0.5, iterations=0)
    assert torch.equal(res.mask, mask_from_scores(wanda_scores(w, sq), SparsityTarget(0.5)))
