"""UniPruning's error curves and mirror-descent controller on hand-worked cases: the budget
sums exactly, the allocation's parameter-weighted mean is the target, the optimum is found."""

from __future__ import annotations

import pytest
import torch

from truthprune_unipruning import box_simplex_projection, curve_slope, curve_value, error_curve, mirror_descent

GRID = torch.linspace(0, 1, 201, dtype=torch.float64)


def test_error_curve_on_a_hand_made_layer():
    w = torch.tensor([[1.0, 2.0], [3.0, 1.0]])
    q = torch.tensor([1.0, 4.0])
    # S^2 = W^2 q = [[1, 16], [9, 4]], total 30; pruning one weight per row removes 1 + 4
    assert error_curve(w, q, grid=2).tolist() == pytest.approx([0.0, 5 / 30, 1.0])
    # grid 4: half a weight per row (s = 1/4) is half of the first one's error, 3/4 is 5 + (16 + 9) / 2
    assert error_curve(w, q, grid=4).tolist() == pytest.approx([0.0, 2.5 / 30, 5 / 30, 17.5 / 30, 1.0])
    assert error_curve(torch.zeros(2, 2), q, grid=2).tolist() == [0.0, 0.0, 0.0]


def test_interpolation_and_slope():
    curves = torch.tensor([[0.0, 0.2, 1.0]], dtype=torch.float64)  # grid 2
    assert curve_value(curves, torch.tensor([0.25])).tolist() == pytest.approx([0.1])
    assert curve_value(curves, torch.tensor([0.75])).tolist() == pytest.approx([0.6])
    assert curve_slope(curves, torch.tensor([0.25])).tolist() == pytest.approx([0.4])
    assert curve_slope(curves, torch.tensor([1.0])).tolist() == pytest.approx([1.6])  # the last segment


def test_projection_sums_exactly_and_respects_the_box():
    v = torch.tensor([5.0, 1.0, 1.0, 0.1], dtype=torch.float64)
    lo = torch.full((4,), 0.1, dtype=torch.float64)
    hi = torch.full((4,), 0.4, dtype=torch.float64)
    b = box_simplex_projection(v, lo, hi)
    assert abs(float(b.sum()) - 1.0) <= 1e-15
    assert (b >= lo).all() and (b <= hi).all()
    assert b[0] == 0.4 and b[3] == 0.1 and b[1] == b[2] == pytest.approx(0.25)  # clipped, clipped, shared rest
    inside = torch.tensor([0.3, 0.3, 0.2, 0.2], dtype=torch.float64)
    torch.testing.assert_close(box_simplex_projection(inside, lo, hi), inside)  # a feasible point is its own projection
    with pytest.raises(ValueError):
        box_simplex_projection(v, lo, torch.full((4,), 0.2, dtype=torch.float64))


@pytest.mark.parametrize(("params", "delta", "want"), [
    # min s_A^2 + 3 s_B^2 with s_A + s_B = 1: 2 s_A = 6 s_B -> (0.75, 0.25)
    ([100, 100], 0.3, [0.75, 0.25]),
    # the same with |s - 0.5| <= 0.1: the box binds -> (0.6, 0.4)
    ([100, 100], 0.1, [0.6, 0.4]),
    # 3 s_A + s_B = 2: 2 s_A = 3 lam, 6 s_B = lam -> lam = 3/7, s = (9/14, 1/14)
    ([300, 100], 0.5, [9 / 14, 1 / 14]),
])
def test_mirror_descent_hand_worked(params, delta, want):
    res = mirror_descent(torch.stack([GRID**2, 3 * GRID**2]), params, 0.5, delta)
    assert res.sparsities == pytest.approx(want, abs=2e-3)
    # the budget sums exactly at every step, so the parameter-weighted mean is the target
    assert max(abs(x - 1.0) for x in res.budget_sums) <= 1e-12
    mean = sum(n * s for n, s in zip(params, res.sparsities)) / sum(params)
    assert abs(mean - 0.5) <= 1e-12
    assert all(abs(s - 0.5) <= delta + 1e-12 for s in res.sparsities)
    assert min(res.objective) < res.objective[0]


def test_identical_layers_stay_uniform_and_zero_iterations_is_uniform():
    # every layer's relative error counts once, so equal layers of equal size share the budget equally
    curves = torch.stack([GRID**2] * 3)
    assert mirror_descent(curves, [20, 20, 20], 0.6, 0.2).sparsities == pytest.approx([0.6] * 3, abs=1e-9)
    different = torch.stack([GRID**2, 5 * GRID**2, GRID])
    assert mirror_descent(different, [10, 20, 30], 0.6, 0.2, iterations=0).sparsities == pytest.approx([0.6] * 3)


@pytest.mark.parametrize("target", [0.3, 0.5, 0.7, 0.9])
def test_random_curves_budget_exact_and_better_than_uniform(target):
    g = torch.Generator().manual_seed(int(target * 10))
    k = torch.rand(6, generator=g, dtype=torch.float64) * 4 + 0.5
    p = torch.rand(6, generator=g, dtype=torch.float64) + 1.2
    curves = k.unsqueeze(1) * GRID.unsqueeze(0) ** p.unsqueeze(1)  # convex, different per layer
    params = [int(x) for x in torch.randint(50, 500, (6,), generator=g)]
    res = mirror_descent(curves, params, target, 0.08)
    mean = sum(n * s for n, s in zip(params, res.sparsities)) / sum(params)
    assert abs(mean - target) <= 1e-12 and all(0 <= s < 1 for s in res.sparsities)
    assert min(res.objective) <= res.objective[0]
