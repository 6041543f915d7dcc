"""The search space and the meta metric on hand-worked values."""

from __future__ import annotations

import pytest
import torch

from truthprune import SparsityTarget, UserError, mask_from_scores, wanda_scores
from truthprune_optishear.metric import meta_scores
from truthprune_optishear.space import SearchSpace, check_span, decode, knot_offsets, layer_sparsities


def test_knot_offsets_interpolate_linearly_between_evenly_spread_knots():
    # knots at layers 0, 2, 4 with offsets -0.1, 0.1, 0.0
    assert knot_offsets([-0.1, 0.1, 0.0], 5).tolist() == pytest.approx([-0.1, 0.0, 0.1, 0.05, 0.0])
    assert knot_offsets([], 3).tolist() == [0.0, 0.0, 0.0]
    assert knot_offsets([0.05], 2).tolist() == [0.05, 0.05]


def test_layer_sparsities_recentre_to_the_parameter_weighted_target():
    # offsets [-0.1, 0.1] on layers of 1 and 3 parameters: weighted mean 0.05 -> s = 0.5 + o - 0.05
    assert layer_sparsities([-0.1, 0.1], 0.5, [1, 3]) == pytest.approx([0.35, 0.55])
    s = layer_sparsities([0.08, -0.02, 0.1, -0.1], 0.7, [5] * 30)
    assert sum(s) / 30 == pytest.approx(0.7, abs=1e-12)


def test_decode_and_bounds():
    space = SearchSpace(knots=2, span=0.05)
    lo, hi = space.bounds()
    assert lo.tolist() == [0, 0, -0.05, -0.05] and hi.tolist() == [2, 1, 0.05, 0.05]
    assert decode([1.0, 0.5, 0.01, -0.02], space) == (1.0, 0.5, [0.01, -0.02])
    with pytest.raises(ValueError):
        decode([1.0, 0.5], space)


def test_span_that_could_leave_0_1_is_refused():
    check_span(0.5, 0.1, 4)
    check_span(0.9, 0.3, 0)  # no profile searched: any span
    with pytest.raises(UserError, match="--span 0.120 or less"):
        check_span(0.75, 0.15, 4)


def test_meta_metric_named_points():
    g = torch.Generator().manual_seed(0)
    w, sq = torch.randn(8, 16, generator=g), torch.rand(16, generator=g) * 10
    t = SparsityTarget(0.5)
    assert torch.equal(mask_from_scores(meta_scores(w, sq, 1.0, 0.0), t), mask_from_scores(wanda_scores(w, sq), t))
    assert torch.equal(mask_from_scores(meta_scores(w, sq, 0.0, 0.0), t), mask_from_scores(w.abs(), t))


def test_meta_metric_hand_worked():
    """W = [[1, 2], [3, 1]], ||X||^2 = [4, 1], beta 1, gamma 1: column sums [4, 3];
    S = |W| * [2, 1] / [4, 3] = [[0.5, 0.667], [1.5, 0.333]] -> row 0 prunes column 0, row 1 column 1
    (Wanda, S = [[2, 2], [6, 1]], would tie row 0 and prune column 0 by index)."""
    w, sq = torch.tensor([[1.0, 2.0], [3.0, 1.0]]), torch.tensor([4.0, 1.0])
    s = meta_scores(w, sq, 1.0, 1.0).exp()
    assert s.flatten().tolist() == pytest.approx([0.5, 2 / 3, 1.5, 1 / 3], rel=1e-5)
    assert mask_from_scores(s, SparsityTarget(0.5)).tolist() == [[True, False], [False, True]]
    w2 = torch.tensor([[1.0, 2.0], [3.0, 1.0]])
    w2[0, 1] = 0.0
    assert meta_scores(w2, sq, 1.0, 1.0)[0, 1] == float("-inf")
