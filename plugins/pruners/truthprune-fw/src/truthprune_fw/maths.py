"""The relaxed per-layer mask problem and its Frank-Wolfe solver (pure torch functions).

For one linear layer with weight W [out, in] and the Gram statistic G = X^T X of its calibration
inputs, the reconstruction error of a keep-mask M (1 = keep) is

    f(M) = ||W X^T - (M * W) X^T||^2 = sum_r e_r G e_r^T,   e_r = w_r * (1 - m_r)

so it is computed from G alone: memory is G plus a few [out, in] matrices, never the
activations. Rows are independent. The relaxation replaces the set of masks keeping exactly k
weights per row (or per group of m for N:M) by its convex hull {0 <= m <= 1, k per group}.

Frank-Wolfe on that hull:
  * gradient  df/dM = -2 W * (E G)   with E = W * (1 - M);
  * linear minimisation oracle: per group, keep the k entries with the most negative gradient
    (a top-k, the same selection code as any score-based pruner, with score = -gradient);
  * step: exact line search per row (the objective is quadratic along the segment, and rows
    are separate blocks of the product domain, so each row gets its own optimal step in [0, 1];
    the objective can then only go down), or the classic 2 / (t + 2).
The E G product is updated incrementally, so an iteration costs one [out, in] x [in, in] matmul.
Rounding keeps the k largest relaxed entries per group; per row, the rounded mask replaces the
warm start only if its error is not larger, so the result is never worse than the warm start.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def row_errors(weight: torch.Tensor, keep: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """Per-row reconstruction error e_r G e_r^T of a (possibly fractional) keep-mask [out]."""
    e = weight * (1 - keep)
    return ((e @ gram) * e).sum(dim=1)


def reconstruction_error(weight: torch.Tensor, new_weight: torch.Tensor, gram: torch.Tensor) -> float:
    """||W X^T - W' X^T||^2 summed over rows, from the Gram statistic (float64)."""
    d = (weight.double() - new_weight.double())
    return float(((d @ gram.double()) * d).sum())


def _keep_mask(scores: torch.Tensor, target) -> torch.Tensor:
    """The exact per-row (or N:M) keep set of highest scores, as float 0/1."""
    from truthprune import mask_from_scores

    return (~mask_from_scores(scores, target)).to(scores.dtype)


@dataclass
class FWResult:
    keep: torch.Tensor  # bool [out, in], True = kept (the rounded mask)
    objective: list[float] = field(default_factory=list)  # relaxed objective, warm start first
    warm_error: float = 0.0  # error of the warm-start mask
    rounded_error: float = 0.0  # error of the returned mask
    rows_improved: int = 0  # rows where the rounded mask replaced the warm start


def frank_wolfe_mask(weight, gram, warm_scores, target, iterations: int = 40, step: str = "linesearch") -> FWResult:
    """Solve the relaxed problem from the warm-start mask (top-k of ``warm_scores``) and round."""
    w = weight.detach().float()
    g = gram.float()
    warm = _keep_mask(warm_scores.float(), target)
    m = warm.clone()
    e = w * (1 - m)
    eg = e @ g
    objective = [float((eg * e).sum())]
    for t in range(iterations):
        grad = -2.0 * w * eg
        s = _keep_mask(-grad, target)
        d = s - m
        u = w * d  # E moves by -gamma * U
        ug = u @ g
        if step == "linesearch":
            num = (eg * u).sum(dim=1)
            den = (ug * u).sum(dim=1)
            gamma = torch.where(den > 0, num / den.clamp(min=1e-30), torch.zeros_like(den)).clamp(0.0, 1.0)
        else:
            gamma = torch.full((w.shape[0],), 2.0 / (t + 2.0), dtype=w.dtype, device=w.device)
        gamma = gamma.unsqueeze(1)
        m = m + gamma * d
        e = e - gamma * u
        eg = eg - gamma * ug
        objective.append(float((eg * e).sum()))
    # rounding: k largest relaxed values per group (ties: the warm start's order decides)
    rank = m.double() + 1e-9 * torch.sign(warm.double() - 0.5)
    rounded = _keep_mask(rank, target).to(w.dtype)
    warm_rows = row_errors(w, warm, g)
    round_rows = row_errors(w, rounded, g)
    better = round_rows <= warm_rows
    keep = torch.where(better.unsqueeze(1), rounded, warm).bool()
    return FWResult(keep=keep, objective=objective, warm_error=float(warm_rows.sum()),
                    rounded_error=float(torch.where(better, round_rows, warm_rows).sum()),
                    rows_improved=int((better & (round_rows < warm_rows)).sum()))


def least_squares_update(weight, keep, gram, iterations: int = 50, damp: float = 0.01) -> torch.Tensor:
    """Kept weights refitted to minimise ||W X^T - W' X^T||^2 with the mask fixed.

    Solves [W' G]_K = [W G]_K on each row's kept set K by conjugate gradients, all rows at once
    (one matmul per iteration), on G + damp * mean(diag G) * I for conditioning, starting from
    the masked weights. Pruned entries stay exactly zero.
    """
    w = weight.detach().float()
    k = keep.to(w.dtype)
    g = gram.float()
    g = g + damp * g.diagonal().mean() * torch.eye(g.shape[0], dtype=g.dtype, device=g.device)
    b = (w @ g) * k
    x = w * k
    r = b - (x @ g) * k
    p = r.clone()
    rs = (r * r).sum(dim=1)
    for _ in range(iterations):
        ap = (p @ g) * k
        alpha = rs / (p * ap).sum(dim=1).clamp(min=1e-30)
        x = x + alpha.unsqueeze(1) * p
        r = r - alpha.unsqueeze(1) * ap
        rs_new = (r * r).sum(dim=1)
        if float(rs_new.max()) <= 1e-20:
            break
        p = r + (rs_new / rs.clamp(min=1e-30)).unsqueeze(1) * p
        rs = rs_new
    return x * k
