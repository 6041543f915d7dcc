"""DSnoT's prune-and-grow cycles on one linear layer (pure torch functions).

For a weight W [out, in] with the mean calibration input mu_j and its variance v_j, pruning the
set P of row r changes the row's mean output by

    e_r = sum_{j in P} W_rj mu_j          (the expected reconstruction error of the row),

and each weight contributes c_rj = W_rj mu_j. Starting from any mask with k pruned weights per
row, every cycle, in every row still being updated:

* grow: revive the pruned weight that moves e_r toward 0 the most, i.e. the largest c_rj / v_j^p
  when e_r > 0, the smallest when e_r < 0 (the variance term prefers stable inputs);
* prune: remove a kept weight whose contribution has the sign that also moves e_r toward 0, the
  one with the lowest Wanda score |W_rj| ||X_j|| among those (N:M: the lowest-Wanda kept weight
  of the revived weight's own group of m, so every group keeps exactly m - n);
* accept the swap only while |e_r| is above ``threshold`` and (``same_sign``) the swap does not
  carry e_r across 0; a row whose swap is refused stops for good, as in the paper.

Each weight is moved at most once (grow candidates are the initially pruned weights, prune
candidates the initially kept ones, each list walked once), so per-row counts, and N:M groups,
stay exactly those of the starting mask. The criterion is the *mean* error only; the true squared
error ||W X^T - W' X^T||^2 can rise, which is why the pruner compares rows against the starting
mask with the Gram statistic afterwards (:func:`row_errors`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_INF = float("inf")


def row_errors(weight: torch.Tensor, new_weight: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """Per-row ||w_r X^T - w'_r X^T||^2 = d_r G d_r^T, d = W - W', in float64."""
    d = weight.double() - new_weight.double()
    return ((d @ gram.double()) * d).sum(dim=1)


@dataclass
class DSnoTResult:
    keep: torch.Tensor  # bool [out, in], True = kept, after the cycles
    mean_error_before: torch.Tensor  # e_r of the starting mask [out]
    mean_error_after: torch.Tensor  # e_r after the cycles [out]
    cycles: int  # cycles run
    swaps: int  # accepted grow/prune pairs, all rows together


def _sorted_candidates(values: torch.Tensor, valid: torch.Tensor, descending: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: indices of the ``valid`` entries ordered by ``values`` (stable), and how many there are."""
    fill = -_INF if descending else _INF
    order = torch.sort(torch.where(valid, values, torch.full_like(values, fill)), dim=1, descending=descending, stable=True).indices
    return order, valid.sum(dim=1)


def dsnot_refine(weight: torch.Tensor, keep: torch.Tensor, mean: torch.Tensor, sq_norm: torch.Tensor, var: torch.Tensor,
                 nm: tuple[int, int] | None = None, max_cycles: int = 50, threshold: float = 0.1,
                 var_power: float = 1.0, same_sign: bool = True) -> DSnoTResult:
    """Run DSnoT's cycles from the keep-mask ``keep``; see the module docstring."""
    w = weight.detach().float()
    keep = keep.clone().bool()
    out, inp = w.shape
    rows = torch.arange(out, device=w.device)
    contrib = w * mean.float().reshape(1, -1)
    wanda = w.abs() * sq_norm.float().clamp_min(0).sqrt().reshape(1, -1)
    pruned0 = ~keep
    error = (contrib * pruned0).sum(dim=1)
    before = error.clone()
    sign0 = torch.sign(error)
    grow_metric = contrib / var.float().clamp_min(1e-12).pow(var_power).reshape(1, -1)
    grow_order, n_grow = _sorted_candidates(grow_metric, pruned0)
    lo = torch.zeros(out, dtype=torch.long, device=w.device)
    hi = n_grow - 1
    if nm is None:
        neg_order, n_neg = _sorted_candidates(wanda, keep & (contrib < 0))
        pos_order, n_pos = _sorted_candidates(wanda, keep & (contrib >= 0))
        p_neg = torch.zeros(out, dtype=torch.long, device=w.device)
        p_pos = torch.zeros(out, dtype=torch.long, device=w.device)
    else:
        m = nm[1]
        prunable = torch.where(keep, wanda, torch.full_like(wanda, _INF))  # initially kept and still kept
    updating = torch.ones(out, dtype=torch.bool, device=w.device)
    cycles = swaps = 0
    for _ in range(max_cycles):
        updating &= error.abs() > threshold
        if not bool(updating.any()):
            break
        cycles += 1
        up = error > 0
        avail = lo <= hi
        g_pos = torch.where(up, hi, lo).clamp(min=0, max=inp - 1)
        grow = grow_order[rows, g_pos]
        if nm is None:
            p_ptr = torch.where(up, p_neg, p_pos)
            avail &= p_ptr < torch.where(up, n_neg, n_pos)
            p_ptr = p_ptr.clamp(max=inp - 1)
            drop = torch.where(up, neg_order[rows, p_ptr], pos_order[rows, p_ptr])
            p_neg = p_neg + up.long()
            p_pos = p_pos + (~up).long()
        else:
            start = grow - grow % m
            block = start.unsqueeze(1) + torch.arange(m, device=w.device).unsqueeze(0)
            vals = prunable[rows.unsqueeze(1), block]
            best = vals.argmin(dim=1)
            avail &= torch.isfinite(vals[rows, best])
            drop = start + best
        lo = lo + (~up).long()
        hi = hi - up.long()
        after = error + contrib[rows, drop] - contrib[rows, grow]
        ok = updating & avail
        if same_sign:
            ok &= torch.sign(after) == sign0
        updating &= ok
        if not bool(ok.any()):
            break
        r = rows[ok]
        keep[r, grow[ok]] = True
        keep[r, drop[ok]] = False
        if nm is not None:
            prunable[r, drop[ok]] = _INF
        error = torch.where(ok, after, error)
        swaps += int(ok.sum())
    return DSnoTResult(keep=keep, mean_error_before=before, mean_error_after=error, cycles=cycles, swaps=swaps)
