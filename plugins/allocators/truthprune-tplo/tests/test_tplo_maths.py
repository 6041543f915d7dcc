"""SWL, TPLO, the automatic pivot and tplo-joint on hand-worked examples and published inputs."""

import pytest

from truthprune import truth_profile
from truthprune_owl import owl_sparsities
from truthprune_tplo import choose_pivot, swl_sparsities, tplo_joint_sparsities, tplo_sparsities

PROFILE = [0.1, 0.2, 0.3, 0.4]  # L pi - 1 = [-0.6, -0.2, 0.2, 0.6]
OUTLIERS = [3.0, 1.0, 2.0, 2.0]  # n (lam 0.1) = [0.2, 0, 0.1, 0.1], mean 0.1


def test_swl_hand_worked():
    assert swl_sparsities(PROFILE, 0.5, 0.1) == pytest.approx([0.56, 0.52, 0.48, 0.44])


def test_swl_has_no_floor():
    # target 0.02, c 0.1 -> last layer 0.02 - 0.06 = -0.04 (the allocator rejects it, the formula keeps it)
    assert swl_sparsities(PROFILE, 0.02, 0.1)[-1] == pytest.approx(-0.04)


def test_tplo_hand_worked():
    # o = [.6, .4, .5, .5]; t = [.44, .48, .52, .56]; pivot 2 -> u = [.6, .4, .52, .56], mean .52
    # shift .02 -> density [.58, .38, .50, .54] -> sparsity [.42, .62, .50, .46]
    got = tplo_sparsities(OUTLIERS, PROFILE, 0.5, 0.1, 0.1, 2)
    assert got == pytest.approx([0.42, 0.62, 0.50, 0.46])
    assert sum(got) / 4 == pytest.approx(0.5)


def test_tplo_pivot_extremes_are_swl_and_owl():
    assert tplo_sparsities(OUTLIERS, PROFILE, 0.5, 0.1, 0.1, 0) == pytest.approx(swl_sparsities(PROFILE, 0.5, 0.1))
    assert tplo_sparsities(OUTLIERS, PROFILE, 0.5, 0.1, 0.1, 4) == pytest.approx(owl_sparsities(OUTLIERS, 0.5, 0.1))


def test_tplo_floor_and_argument_checks():
    assert min(tplo_sparsities(OUTLIERS, PROFILE, 0.05, 0.1, 0.1, 2)) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="pivot"):
        tplo_sparsities(OUTLIERS, PROFILE, 0.5, 0.1, 0.1, 5)
    with pytest.raises(ValueError, match="outlier ratios"):
        tplo_sparsities(OUTLIERS[:3], PROFILE, 0.5, 0.1, 0.1, 1)


def test_choose_pivot_hand_worked():
    # peak at 5 (1.0); first value >= 0.5 is index 3 -> (3 + 5) // 2 = 4
    assert choose_pivot([0.0, 0.1, 0.3, 0.5, 0.6, 1.0, 0.8]) == 4
    assert choose_pivot([1.0, 0.5, 0.2]) == 0  # peak at the first layer: all layers by truth
    with pytest.raises(ValueError):
        choose_pivot([])


def test_choose_pivot_lands_on_the_published_pivots(appendix_ratios):
    published = {"Llama-3-8B-Instruct": 10, "Llama-2-13b-chat": 12, "Mistral-7B-Instruct-v0.3": 12}
    assert set(appendix_ratios) == set(published)
    for model, pivot in published.items():
        assert choose_pivot(truth_profile(appendix_ratios[model])) == pivot, model


def test_choose_pivot_is_robust_to_the_onset_fraction(appendix_ratios):
    published = {"Llama-3-8B-Instruct": 10, "Llama-2-13b-chat": 12, "Mistral-7B-Instruct-v0.3": 12}
    for fraction in (0.3, 0.4, 0.5, 0.6, 0.7):
        for model, pivot in published.items():
            assert abs(choose_pivot(truth_profile(appendix_ratios[model]), fraction) - pivot) <= 1


def test_joint_hand_worked():
    # a = minmax(D) = [0, .5, 1]; b = minmax(pi) = [1, 0, 0]
    d, pi = [1.0, 2.0, 3.0], [0.5, 0.25, 0.25]
    # w = .5: z = [.5, .25, .5] -> n = .2 * [1, 0, 1], mean .2/1.5 -> s = .5 + .1333 - n
    assert tplo_joint_sparsities(d, pi, 0.5, 0.1, 0.5) == pytest.approx([0.5 + 0.4 / 3 - 0.2, 0.5 + 0.4 / 3, 0.5 + 0.4 / 3 - 0.2])
    # w = 0: truth only -> n = [.2, 0, 0]
    assert tplo_joint_sparsities(d, pi, 0.5, 0.1, 0.0) == pytest.approx([0.5 + 0.2 / 3 - 0.2, 0.5 + 0.2 / 3, 0.5 + 0.2 / 3])
    # w = 1 is exactly OWL
    assert tplo_joint_sparsities(d, pi, 0.5, 0.1, 1.0) == pytest.approx(owl_sparsities(d, 0.5, 0.1))


def test_joint_combines_both_signals_per_layer():
    # layer 2 is high in both signals, layers 0/1 in one each, layer 3 in none
    d, pi = [2.0, 1.0, 2.0, 1.0], [0.1, 0.4, 0.4, 0.1]
    got = tplo_joint_sparsities(d, pi, 0.5, 0.08, 0.5)
    assert got[2] == min(got) and got[3] == max(got)
    assert got[0] == pytest.approx(got[1])
    assert sum(got) / 4 == pytest.approx(0.5)
    assert max(got) - min(got) == pytest.approx(0.16)
    with pytest.raises(ValueError, match="outlier_weight"):
        tplo_joint_sparsities(d, pi, 0.5, 0.08, 1.5)


def test_weighted_recentring_keeps_the_parameter_weighted_mean():
    w = [1, 2, 3, 4]
    for got in (
        swl_sparsities(PROFILE, 0.5, 0.1, weights=w),
        tplo_sparsities(OUTLIERS, PROFILE, 0.5, 0.1, 0.1, 2, weights=w),
        tplo_joint_sparsities(OUTLIERS, PROFILE, 0.5, 0.1, 0.3, weights=w),
    ):
        assert sum(a * b for a, b in zip(got, w)) / sum(w) == pytest.approx(0.5)


def test_functions_reproduce_reference_vectors(reference_vectors):
    for model, case in reference_vectors.items():
        inp, exp = case["inputs"], case["expected"]
        pi = truth_profile(inp["separation_ratio"])
        s, lam, c = inp["target_sparsity"], inp["lambda"], inp["swl_scaling"]
        assert pi == pytest.approx(exp["truth_profile"], abs=1e-6), model
        assert swl_sparsities(pi, s, c) == pytest.approx(exp["swl_sparsity"], abs=1e-6), model
        got = tplo_sparsities(inp["outlier_ratio_percent"], pi, s, lam, c, inp["tplo_pivot"])
        assert got == pytest.approx(exp["tplo_sparsity"], abs=1e-6), model
        assert choose_pivot(pi) == inp["tplo_pivot"], model
