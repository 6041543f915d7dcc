"""RIA's score and its channel permutation for N:M (pure torch functions).

Score. For a weight W [out, in] and the per-column sum of squared inputs q_j = sum_t x_tj^2,

    RIA_ij = ( |W_ij| / sum_k |W_kj|  +  |W_ij| / sum_k |W_ik| ) * ||X_j||_2 ** a,   ||X_j||_2 = sqrt(q_j)

the weight's share of its input column plus its share of its output row (relative importance),
times the input channel's norm to the power a (0.5 in the paper). Weights are compared within
each output row, as Wanda does.

Channel permutation. An N:M pattern prunes n of every m *consecutive* input columns, so which
columns share a group decides what survives. For a column order P (new column c reads old column
P[c]) the retained score is sum_rows sum_groups top-(m-n) of the group's scores. RIA maximises it
in two steps: a heuristic that spreads the channels, sorted by total score, over the groups so
that every group gets one channel of each importance tier (snake order), then rounds of linear
sum assignment: for each slot p of the groups, the channels in slot p are taken out and
reassigned to the groups by the Hungarian algorithm (scipy), with the exact gain of putting
channel c into group b. The current assignment is one candidate, so a round never lowers the
retained score. With k = m - n kept per group and the group's other m - 1 scores sorted
(r_1 >= r_2 >= ...), keeping the top k of the group plus a score v is

    top_k(rest + v) = (r_1 + ... + r_{k-1}) + max(r_k, v),

so the gain matrix is a sum over rows of element-wise maxima, computed in row chunks.
"""

from __future__ import annotations

import torch

_ROW_CHUNK = 64


def ria_scores(weight: torch.Tensor, sq_norm: torch.Tensor, a: float = 0.5) -> torch.Tensor:
    """RIA_ij in float32 (an all-zero row or column contributes 0 to its share)."""
    w = weight.detach().abs().float()
    col = w.sum(dim=0, keepdim=True)
    row = w.sum(dim=1, keepdim=True)
    share = torch.where(col > 0, w / col.clamp_min(1e-30), torch.zeros_like(w))
    share = share + torch.where(row > 0, w / row.clamp_min(1e-30), torch.zeros_like(w))
    act = sq_norm.float().clamp_min(0).pow(a / 2).reshape(1, -1)  # ||X_j||_2 ** a
    return share * act


def retained_score(scores: torch.Tensor, n: int, m: int, perm: torch.Tensor | None = None) -> float:
    """Sum over rows and groups of the top-(m - n) scores per group of m consecutive columns
    (after reordering the columns by ``perm``), in float64."""
    s = scores if perm is None else scores[:, perm]
    groups = s.double().reshape(s.shape[0], -1, m)
    return float(groups.topk(m - n, dim=2).values.sum())


def heuristic_permutation(scores: torch.Tensor, m: int) -> torch.Tensor:
    """Channels sorted by total score, dealt to the groups in snake order (0..K-1, K-1..0, ...)."""
    in_features = scores.shape[1]
    k = in_features // m
    order = torch.argsort(scores.double().sum(dim=0), descending=True, stable=True)
    slots = torch.empty(k, m, dtype=torch.long)
    for tier in range(m):
        chunk = order[tier * k:(tier + 1) * k]
        slots[:, tier] = chunk if tier % 2 == 0 else chunk.flip(0)
    return slots.reshape(-1)


def _slot_gain(scores: torch.Tensor, slots: torch.Tensor, p: int, keep: int) -> torch.Tensor:
    """[candidate c, group b] retained score of group b's other channels plus channel slots[c, p]."""
    k, m = slots.shape
    others = [q for q in range(m) if q != p]
    rest = scores[:, slots[:, others].reshape(-1)].reshape(scores.shape[0], k, m - 1)
    rest = rest.sort(dim=2, descending=True).values
    base = rest[:, :, :keep - 1].sum(dim=(0, 2))  # [b]: what group b keeps for sure
    kth = rest[:, :, keep - 1]  # [rows, b]: the value a newcomer competes with
    cand = scores[:, slots[:, p]]  # [rows, c]
    gain = torch.zeros(k, k, dtype=torch.float64)
    for r in range(0, scores.shape[0], _ROW_CHUNK):
        gain += torch.maximum(kth[r:r + _ROW_CHUNK].unsqueeze(1), cand[r:r + _ROW_CHUNK].unsqueeze(2)).sum(0)
    return gain + base.unsqueeze(0)


def refine_permutation(scores: torch.Tensor, perm: torch.Tensor, n: int, m: int, rounds: int = 2) -> torch.Tensor:
    """Rounds of per-slot linear sum assignment from ``perm``; never lowers the retained score."""
    from scipy.optimize import linear_sum_assignment

    s = scores.double()
    slots = perm.reshape(-1, m).clone()
    keep = m - n
    for _ in range(rounds):
        before = retained_score(s, n, m, slots.reshape(-1))
        for p in range(m):
            gain = _slot_gain(s, slots, p, keep).numpy()
            cand, group = linear_sum_assignment(gain, maximize=True)
            new = slots[:, p].clone()
            new[torch.as_tensor(group)] = slots[torch.as_tensor(cand), p]
            slots[:, p] = new
        if retained_score(s, n, m, slots.reshape(-1)) <= before * (1 + 1e-12):
            break  # converged: a further round cannot find a better assignment
    return slots.reshape(-1)


def nm_permutation(scores: torch.Tensor, n: int, m: int, rounds: int = 2) -> torch.Tensor:
    """The column order for an N:M mask: the heuristic refined by assignment, or the identity
    when that is not strictly better (ties keep the model's own order)."""
    ident = torch.arange(scores.shape[1])
    if scores.shape[1] % m or scores.shape[1] // m < 2:
        return ident
    perm = refine_permutation(scores, heuristic_permutation(scores, m), n, m, rounds)
    if retained_score(scores, n, m, perm) > retained_score(scores, n, m, ident):
        return perm
    return ident
