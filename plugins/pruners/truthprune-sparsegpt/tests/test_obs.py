"""The OBS maths of truthprune-sparsegpt on tiny tensors: agreement with an independent float64
OBS sweep (explicit inverse-Hessian updates, no Cholesky, no lazy batches), reconstruction error
below Wanda's, exact counts, N:M exactness, determinism, dead inputs, bad input."""

from __future__ import annotations

import pytest
import torch

from truthprune import LinearStats, SparsityTarget, UserError, get_registry, mask_from_scores, wanda_scores
from truthprune_sparsegpt import FactorCache, SparseGPTPruner, block_budgets, inverse_hessian_factor, obs_prune


def _correlated_inputs(n: int, d: int, seed: int) -> torch.Tensor:
    """Inputs with strongly correlated columns and uneven scales (where OBS beats Wanda)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5 + torch.eye(d, dtype=torch.float64)
    scale = torch.rand(d, generator=g, dtype=torch.float64) * 3 + 0.1
    return (torch.randn(n, d // 2, generator=g, dtype=torch.float64) @ torch.randn(d // 2, d, generator=g, dtype=torch.float64)
            + 0.3 * torch.randn(n, d, generator=g, dtype=torch.float64)) @ mix * scale


def _layer(rows: int, cols: int, seed: int = 0, n: int = 200):
    x = _correlated_inputs(n, cols, seed)
    w = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    return w, x, 2 * x.T @ x / n


def _reference_obs(w, h, target, blocksize, percdamp):
    """Independent float64 OBS: one column at a time over all rows, with the inverse Hessian of the
    not-yet-processed columns kept explicitly and shrunk by Gaussian elimination after each column.

    Mask rule: at each block start, the scores w^2 / [H_F^-1]_jj with [H_F^-1]_jj taken from an
    explicit inverse of H restricted to columns j..end; block budgets as documented in obs.py.
    """
    w, h = w.clone().double(), h.clone().double()
    rows, cols = w.shape
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += percdamp * torch.diagonal(h).mean() * torch.eye(cols, dtype=torch.float64)
    diag_f = torch.stack([torch.linalg.inv(h[j:, j:])[0, 0] for j in range(cols)])  # [H_{F_j}^-1]_jj
    hinv = torch.linalg.inv(h)
    mask = torch.zeros(rows, cols, dtype=torch.bool)
    if target.nm is None:
        budgets = block_budgets(rows, cols, target.sparsity, blocksize)
    for j in range(cols):
        if target.nm is None and j % blocksize == 0:
            stop = min(j + blocksize, cols)
            scores = (w[:, j:stop] ** 2 / diag_f[j:stop]).flatten()
            order = torch.sort(scores, stable=True).indices[: budgets[j // blocksize]]
            block = torch.zeros(scores.numel(), dtype=torch.bool)
            block[order] = True
            mask[:, j:stop] = block.reshape(rows, stop - j)
        if target.nm is not None and j % target.nm[1] == 0:
            n, m = target.nm
            scores = w[:, j : j + m] ** 2 / diag_f[j : j + m]
            mask[torch.arange(rows).unsqueeze(1), j + torch.sort(scores, dim=1, stable=True).indices[:, :n]] = True
        assert torch.isclose(hinv[0, 0], diag_f[j], rtol=1e-9)
        delta = torch.where(mask[:, j], w[:, j], torch.zeros_like(w[:, j]))  # what column j loses
        w[:, j:] -= (delta / hinv[0, 0]).unsqueeze(1) * hinv[0, :].unsqueeze(0)
        w[:, j] = torch.where(mask[:, j], torch.zeros_like(w[:, j]), w[:, j])
        hinv = hinv[1:, 1:] - hinv[1:, :1] @ hinv[:1, 1:] / hinv[0, 0]
    return w, mask


@pytest.mark.parametrize(
    "rows, cols, target, blocksize",
    [
        (6, 12, SparsityTarget(0.5), 4),
        (5, 10, SparsityTarget(0.37), 4),  # width not a multiple of the block; uneven budgets
        (7, 16, SparsityTarget(0.6), 128),  # one block
        (4, 16, SparsityTarget(0.5, (2, 4)), 8),
        (4, 16, SparsityTarget(0.5, (4, 8)), 6),  # block rounded down to 8 for N:M
    ],
)
def test_matches_independent_float64_obs(rows, cols, target, blocksize):
    w, _, h = _layer(rows, cols)
    h[3, :] = 0.0
    h[:, 3] = 0.0  # one dead input
    got_w, got_mask = obs_prune(w, h, target, blocksize=blocksize, percdamp=0.01)
    eff = blocksize if target.nm is None else max(target.nm[1], blocksize // target.nm[1] * target.nm[1])
    ref_w, ref_mask = _reference_obs(w, h, target, eff, 0.01)
    assert torch.equal(got_mask, ref_mask)
    assert got_w.dtype == torch.float64
    assert torch.allclose(got_w, ref_w, rtol=1e-6, atol=1e-9 * ref_w.abs().max().item())
    assert (got_w[got_mask] == 0).all()


def test_reconstruction_error_below_wanda():
    w, x, h = _layer(24, 48, seed=3, n=400)
    sq_norm = (x * x).sum(0)
    target = SparsityTarget(0.5)
    sgpt_w, sgpt_mask = obs_prune(w, h, target)
    wanda_mask = mask_from_scores(wanda_scores(w, sq_norm), target)
    wanda_w = w.masked_fill(wanda_mask, 0.0)
    assert sgpt_mask.sum() == wanda_mask.sum() == 24 * 24
    err_sgpt = torch.linalg.norm(x @ (w - sgpt_w).T)
    err_wanda = torch.linalg.norm(x @ (w - wanda_w).T)
    assert err_sgpt < 0.8 * err_wanda, (err_sgpt, err_wanda)


@pytest.mark.parametrize("rows, cols, sparsity, blocksize", [(7, 50, 0.5, 16), (3, 129, 0.6, 128), (10, 33, 0.29, 5), (2, 9, 0.0, 4)])
def test_unstructured_count_is_exact(rows, cols, sparsity, blocksize):
    w, _, h = _layer(rows, cols, seed=5)
    _, mask = obs_prune(w.float(), h.float(), SparsityTarget(sparsity), blocksize=blocksize)
    assert int(mask.sum()) == int(rows * cols * sparsity + 1e-9)
    assert sum(block_budgets(rows, cols, sparsity, blocksize)) == int(mask.sum())


@pytest.mark.parametrize("nm, blocksize", [((2, 4), 128), ((4, 8), 128), ((2, 4), 6), ((1, 3), 4)])
def test_nm_exactly_n_per_group_in_every_row(nm, blocksize):
    w, _, h = _layer(9, 48, seed=7)
    new_w, mask = obs_prune(w.float(), h.float(), SparsityTarget(0.5, nm), blocksize=blocksize)
    n, m = nm
    assert (mask.reshape(9, -1, m).sum(-1) == n).all()
    assert (new_w[mask] == 0).all() and new_w.dtype == torch.float32


def test_deterministic_and_inputs_untouched():
    w, _, h = _layer(16, 40, seed=11)
    w32, h32 = w.float(), h.float()
    before = (w32.clone(), h32.clone())
    a = obs_prune(w32, h32, SparsityTarget(0.55), blocksize=16)
    b = obs_prune(w32, h32, SparsityTarget(0.55), blocksize=16)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(w32, before[0]) and torch.equal(h32, before[1])


def test_dead_inputs_zero_their_weight_column():
    w, x, _ = _layer(5, 12, seed=13)
    x[:, [2, 7]] = 0.0  # inputs that never fire
    h = 2 * x.T @ x / x.shape[0]
    new_w, mask = obs_prune(w, h, SparsityTarget(0.25))
    assert (new_w[:, [2, 7]] == 0).all()
    assert mask[:, [2, 7]].all()  # score 0: they are the cheapest weights to prune
    assert torch.isfinite(new_w).all()


def test_pruner_forms_h_from_gram_and_returns_weights():
    w, x, _ = _layer(6, 16, seed=17)
    pruner = get_registry().create("pruner", "sparsegpt", {"blocksize": 8})
    assert isinstance(pruner, SparseGPTPruner) and pruner.required_stats == {"gram"}
    stats = LinearStats(n_tokens=x.shape[0], gram=(x.T @ x).float())
    result = pruner.prune(w.float(), stats, SparsityTarget(0.5))
    direct_w, direct_mask = obs_prune(w.float(), 2 * (x.T @ x).float().double() / x.shape[0], SparsityTarget(0.5), blocksize=8)
    assert torch.equal(result.mask, direct_mask) and torch.equal(result.weight, direct_w)
    assert result.weight.dtype == torch.float32


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda w, h: obs_prune(w, h[:3, :3], SparsityTarget(0.5)), "does not match"),
        (lambda w, h: obs_prune(w, h, SparsityTarget(0.5, (2, 4)), blocksize=4), "divisible by 4"),
        (lambda w, h: obs_prune(w, h, SparsityTarget(0.5), blocksize=0), "blocksize"),
        (lambda w, h: obs_prune(w, -torch.eye(h.shape[0], dtype=h.dtype), SparsityTarget(0.5), percdamp=0.0), "percdamp"),
    ],
)
def test_bad_input_is_a_user_error(call, fragment):
    w, _, h = _layer(4, 10)
    with pytest.raises(UserError, match=fragment):
        call(w, h)


@pytest.mark.parametrize("opts, field", [({"blocksize": 0}, "'blocksize'"), ({"percdamp": -1}, "'percdamp'"),
                                         ({"dtype": "float16"}, "'dtype'"), ({"damp": 0.1}, "'damp'")])
def test_config_errors_name_the_field(opts, field):
    with pytest.raises(UserError, match=field):
        get_registry().create("pruner", "sparsegpt", opts)


def test_inverse_hessian_factor_is_the_upper_cholesky_factor_of_the_inverse():
    _, _, h = _layer(3, 24, seed=19)
    u = inverse_hessian_factor(h, 0.01)
    damped = h + 0.01 * torch.diagonal(h).mean() * torch.eye(24, dtype=h.dtype)
    assert torch.equal(u, u.triu()) and (torch.diagonal(u) > 0).all()
    assert torch.allclose(u.T @ u, torch.linalg.inv(damped), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("target", [SparsityTarget(0.5), SparsityTarget(0.5, (2, 4))])
def test_shared_factor_and_sub_blocks_change_no_bit(target, monkeypatch):
    """A factor computed once (FactorCache) and the sub-block sweep give exactly the per-linear,
    column-by-column result (the sub-block products only reorder float64 sums: equal here after
    the cast to float32, and the masks equal)."""
    import truthprune_sparsegpt.obs as obs

    w, _, h = _layer(12, 64, seed=23)
    w32 = w.float()
    cache = FactorCache()
    u = cache.get(h, 0.01)
    assert cache.get(h.clone(), 0.01) is u  # an equal H: reused
    other = cache.get(h, 0.02)  # another percdamp: recomputed
    assert other is not u and not torch.equal(other, u)
    shared = obs_prune(w32, h, target, blocksize=32, factor=cache.get(h, 0.01))
    monkeypatch.setattr(obs, "SUB_BLOCK", 10**9)  # one column at a time over the whole block
    alone = obs_prune(w32, h, target, blocksize=32)
    assert torch.equal(shared[1], alone[1]) and torch.equal(shared[0], alone[0])
