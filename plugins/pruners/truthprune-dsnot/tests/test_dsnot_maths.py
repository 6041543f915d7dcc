"""DSnoT's cycles on hand-worked rows, and the guard: the layer's reconstruction error never
exceeds the base mask's."""

from __future__ import annotations

import pytest
import torch

from truthprune import LinearStats, SparsityTarget, get_registry
from truthprune_dsnot import DSnoTPruner, dsnot_refine, row_errors


def _stats(x: torch.Tensor) -> LinearStats:
    return LinearStats(n_tokens=x.shape[0], sq_norm=(x * x).sum(0), gram=x.t() @ x, sum=x.sum(0))


def _inputs(x, w):
    st = _stats(x)
    mean = st.sum.double() / st.n_tokens
    return st, mean, (st.sq_norm.double() / st.n_tokens - mean**2).clamp_min(0)


def test_hand_worked_swap_lowers_the_mean_and_the_squared_error():
    # constant inputs (every token x = 1): the error of a row is T * (sum of its pruned weights)^2
    x = torch.ones(4, 6)
    w = torch.tensor([[4.0, 3.0, -1.2, 1.0, 0.9, 0.5]])
    st, mean, var = _inputs(x, w)
    keep0 = torch.tensor([[True, True, True, False, False, False]])  # Wanda 50 %: the three smallest |w| go
    res = dsnot_refine(w, keep0, mean, st.sq_norm, var)
    # cycle 1: e = 1.0 + 0.9 + 0.5 = 2.4 > 0 -> grow the largest contribution (1.0), prune the only
    # kept negative one (-1.2): e = 2.4 - 1.2 - 1.0 = 0.2, same sign, accepted; cycle 2: no kept
    # negative weight is left, so the row stops
    assert res.keep.tolist() == [[True, True, False, True, False, False]]
    assert res.mean_error_before.tolist() == pytest.approx([2.4]) and res.mean_error_after.tolist() == pytest.approx([0.2])
    assert res.swaps == 1
    assert row_errors(w, w * keep0, st.gram).tolist() == pytest.approx([4 * 2.4**2])
    assert row_errors(w, w * res.keep, st.gram).tolist() == pytest.approx([4 * 0.2**2])
    out = DSnoTPruner().prune(w, st, SparsityTarget(0.5))
    assert torch.equal(out.mask, ~res.keep)


def _variance_trap():
    # two tokens; column 1 has a small mean but a large variance
    x = torch.tensor([[1.0, 3.2, 0.5, 0.3], [1.0, -3.0, 0.5, 0.3]])
    w = torch.tensor([[2.0, -1.0, 1.0, 1.0]])
    return x, w


def test_hand_worked_variance_trap_is_caught_by_the_guard():
    x, w = _variance_trap()
    st, mean, var = _inputs(x, w)
    keep0 = torch.tensor([[True, True, False, False]])  # Wanda: |w| ||x|| = 2.83, 4.39, 0.71, 0.42
    res = dsnot_refine(w, keep0, mean, st.sq_norm, var)
    # e = 0.5 + 0.3 = 0.8; grow column 2 (c = 0.5), prune column 1 (c = -0.1): e = 0.2, accepted
    assert res.keep.tolist() == [[True, False, True, False]]
    assert res.mean_error_after.tolist() == pytest.approx([0.2])
    base_err = row_errors(w, w * keep0, st.gram)  # outputs off by (0.8, 0.8): 1.28
    refined_err = row_errors(w, w * res.keep, st.gram)  # off by (-2.9, 3.3): 19.30
    assert base_err.tolist() == pytest.approx([1.28]) and refined_err.tolist() == pytest.approx([19.30])
    guarded = DSnoTPruner().prune(w, st, SparsityTarget(0.5))
    assert torch.equal(guarded.mask, ~keep0)  # the guard keeps the base row
    unguarded = DSnoTPruner({"guard": False}).prune(w, st, SparsityTarget(0.5))
    assert torch.equal(unguarded.mask, ~res.keep)


def _layer(out=16, inp=32, tokens=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, inp, generator=g) @ torch.randn(inp, inp, generator=g) * 0.3 + torch.randn(inp, generator=g)
    x[:, 5] *= 6.0
    return torch.randn(out, inp, generator=g), _stats(x)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("base", ["wanda", "magnitude", "sparsegpt"])
@pytest.mark.parametrize("target", [SparsityTarget(0.5), SparsityTarget(0.7), SparsityTarget(0.5, (2, 4))])
def test_never_above_the_base_and_counts_exact(seed, base, target):
    w, st = _layer(seed=seed)
    pruner = DSnoTPruner({"base": base, "threshold": 0.0})
    base_res = get_registry().create("pruner", base).prune(w, st, target)
    base_w = base_res.weight if base_res.weight is not None else w
    out = pruner.prune(w, st, target)
    new_w = (out.weight if out.weight is not None else w) * ~out.mask
    assert float(row_errors(w, new_w, st.gram).sum()) <= float(row_errors(w, base_w * ~base_res.mask, st.gram).sum()) * (1 + 1e-9)
    assert torch.equal(out.mask.sum(1), base_res.mask.sum(1))  # per-row sparsity exactly the base's
    if target.nm is not None:
        assert (out.mask.reshape(w.shape[0], -1, 4).sum(-1) == 2).all()
    assert pruner.last.swaps > 0


def test_refinement_lowers_the_mean_error_of_every_row():
    w, st = _layer(seed=5)
    pruner = DSnoTPruner({"threshold": 0.0, "guard": False})
    pruner.prune(w, st, SparsityTarget(0.6))
    res = pruner.last
    assert (res.mean_error_after.abs() <= res.mean_error_before.abs() + 1e-6).all()
    assert (torch.sign(res.mean_error_after) == torch.sign(res.mean_error_before)).all()  # same_sign rule


def test_zero_cycles_is_the_base_mask():
    w, st = _layer(seed=3)
    base = get_registry().create("pruner", "wanda").prune(w, st, SparsityTarget(0.5))
    assert torch.equal(DSnoTPruner({"max_cycles": 0}).prune(w, st, SparsityTarget(0.5)).mask, base.mask)
