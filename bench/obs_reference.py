"""SparseGPT's OBS arithmetic as truthprune computed it before the speed-ups, kept as the float64
reference the benches compare against (bench/obs_precision.py, bench/peer_llmcompressor.py).

What differs from the shipped ``truthprune_sparsegpt.obs`` (the maths is the same; rounding and
speed are not): U comes from a Cholesky, an explicit inverse and a second Cholesky; each block's
selection is a full stable sort; each block's sweep pushes every column's error onto all of the
block's later columns, in W's [out, in] layout; one factorisation per linear. The steps that did
not change (H, dead inputs, budgets, N:M selection, scores, input checks) are the plugin's own.
"""

from __future__ import annotations

import torch
from truthprune import SparsityTarget, UserError, single_thread
from truthprune_sparsegpt.obs import _check, block_budgets, fix_dead_inputs, obs_scores, row_lowest_n_mask


def explicit_inverse_factor(hessian: torch.Tensor, percdamp: float) -> torch.Tensor:
    h = hessian.clone()
    h.diagonal().add_(percdamp * torch.diagonal(h).mean())
    chol, info = torch.linalg.cholesky_ex(h)
    if int(info) != 0:
        raise UserError(f"sparsegpt: the damped Hessian is not positive definite (percdamp={percdamp})")
    return torch.linalg.cholesky(torch.cholesky_inverse(chol), upper=True)


def sorted_lowest_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if k > 0:
        mask[torch.sort(scores.flatten(), stable=True).indices[:k]] = True
    return mask.reshape(scores.shape)


def _full_width_sweep(w_block: torch.Tensor, u1: torch.Tensor, nm, budget: int | None):
    w1 = w_block.clone()
    d = torch.diagonal(u1)
    q1 = torch.zeros_like(w1)
    err1 = torch.zeros_like(w1)
    mask1 = sorted_lowest_k(obs_scores(w1, d), budget) if nm is None else torch.zeros(w1.shape, dtype=torch.bool)
    for i in range(w1.shape[1]):
        if nm is not None and i % nm[1] == 0:
            g = slice(i, i + nm[1])
            mask1[:, g] = row_lowest_n_mask(obs_scores(w1[:, g], d[g]), nm[0])
        col = w1[:, i]
        q = col.masked_fill(mask1[:, i], 0.0)
        q1[:, i] = q
        e = (col - q) / d[i]
        w1[:, i:] -= e.unsqueeze(1) * u1[i, i:].unsqueeze(0)
        err1[:, i] = e
    return q1, err1, mask1


def obs_prune(weight: torch.Tensor, hessian: torch.Tensor, target: SparsityTarget, blocksize: int = 128,
              percdamp: float = 0.01, compute_dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """(new weight in ``weight``'s dtype, bool mask) with the arithmetic described above."""
    _check(weight, hessian, target, blocksize, percdamp)
    w = weight.detach().to(compute_dtype).clone()
    h = hessian.detach().to(device=w.device, dtype=compute_dtype).clone()
    rows, cols = w.shape
    fix_dead_inputs(w, h)
    u = explicit_inverse_factor(h, percdamp)
    nm = target.nm
    if nm is not None:
        blocksize = max(nm[1], blocksize // nm[1] * nm[1])
    budgets = None if nm is not None else block_budgets(rows, cols, target.sparsity, blocksize)
    mask = torch.zeros(w.shape, dtype=torch.bool, device=w.device)
    for b, c0 in enumerate(range(0, cols, blocksize)):
        c1 = min(c0 + blocksize, cols)
        with single_thread(w.device.type == "cpu"):
            q1, err1, mask[:, c0:c1] = _full_width_sweep(w[:, c0:c1], u[c0:c1, c0:c1], nm, None if budgets is None else budgets[b])
        w[:, c0:c1] = q1
        if c1 < cols:
            w[:, c1:] -= err1 @ u[c0:c1, c1:]
    return w.to(weight.dtype), mask
