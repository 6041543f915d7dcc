"""OWL's pure functions on hand-worked examples."""

import pytest
import torch

from truthprune_owl import SPARSITY_FLOOR, owl_sparsities, outlier_ratio


def test_outlier_ratio_pools_all_linears_of_the_layer():
    # pooled: 8 entries, sum 4 + 24 = 28, mean 3.5, threshold 5 x 3.5 = 17.5 -> only 21 -> 12.5 %
    a = torch.ones(2, 2)
    b = torch.tensor([[1.0, 1.0, 1.0, 21.0]])
    assert outlier_ratio([a, b], 5.0) == pytest.approx(12.5)
    # b alone: mean 6, threshold 30 -> no outlier; pooling is what makes 21 an outlier
    assert outlier_ratio([b], 5.0) == 0.0


def test_outlier_ratio_is_strictly_greater():
    s = torch.tensor([[1.0, 1.0, 1.0, 5.0]])  # mean 2
    assert outlier_ratio([s], 2.5) == 0.0  # 5 is not > 2.5 x 2
    assert outlier_ratio([s], 2.4) == pytest.approx(25.0)


def test_outlier_ratio_is_scale_free_and_rejects_empty():
    s = torch.rand(8, 16, generator=torch.Generator().manual_seed(0)) ** 4
    assert outlier_ratio([s * 1000.0], 3.0) == outlier_ratio([s], 3.0)
    with pytest.raises(ValueError):
        outlier_ratio([], 5.0)


def test_owl_mapping_hand_worked():
    # n = 2*0.1*(D-1)/2 = [0, .1, .2], mean .1 -> s = .5 + .1 - n
    assert owl_sparsities([1.0, 2.0, 3.0], 0.5, 0.1) == pytest.approx([0.6, 0.5, 0.4])


def test_owl_floor_replaces_non_positive_sparsity():
    # s = 0.05 + 0.1 - [0, .1, .2] = [.15, .05, -.05] -> last becomes 0.01
    assert owl_sparsities([1.0, 2.0, 3.0], 0.05, 0.1) == pytest.approx([0.15, 0.05, SPARSITY_FLOOR])


def test_owl_constant_ratios_give_uniform_sparsity():
    assert owl_sparsities([1.3, 1.3, 1.3], 0.5, 0.08) == pytest.approx([0.5, 0.5, 0.5])


def test_owl_parameter_weighted_recentring():
    # weights 1:1:2 -> weighted mean n = (0 + .1 + .4)/4 = .125; s = .625 - n
    got = owl_sparsities([1.0, 2.0, 3.0], 0.5, 0.1, weights=[1, 1, 2])
    assert got == pytest.approx([0.625, 0.525, 0.425])
    assert (got[0] + got[1] + 2 * got[2]) / 4 == pytest.approx(0.5)


def test_owl_vectors_reproduce_reference(reference_vectors):
    for model, case in reference_vectors.items():
        inp = case["inputs"]
        got = owl_sparsities(inp["outlier_ratio_percent"], inp["target_sparsity"], inp["lambda"])
        assert got == pytest.approx(case["expected"]["owl_sparsity"], abs=1e-6), model
