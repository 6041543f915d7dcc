"""UniPruning's two halves as pure functions: the local saliency's error curve of a layer, and
the mirror-descent controller that shares one keep budget among the layers.

Local saliency (the anchor). Wanda's score S_ij = |W_ij| ||X_j|| is also the diagonal
approximation of the output error: removing weight ij changes row i's outputs by about
S_ij^2 (cross terms between columns ignored). Pruning the fraction s of every row, lowest scores
first, therefore costs the linear the *relative* error

    L(s) = sum_rows sum_{k < in s} sorted(S_i.^2)_k / sum S^2,

a convex, increasing function of s (the increments are the sorted scores). A decoder layer's
curve is the mean over its linears; :func:`error_curve` samples it at s = k / grid.

Global controller. With n_l prunable weights in layer l and the target t, the layers share the
keep budget K = (1 - t) sum n_l. Writing b_l = n_l (1 - s_l) / K for layer l's share, the
problem is

    min_b  sum_l L_l(1 - b_l K / n_l)   over   {b : sum_l b_l = 1,  b_lo <= b <= b_hi},

the box coming from |s_l - t| <= delta. Mirror descent with the entropy mirror map
(exponentiated gradient) keeps b positive and on the simplex: b <- b * exp(-eta_t g / (max g - min g))
followed by the Kullback-Leibler projection onto the box-constrained simplex, which is
b_l = clip(c b~_l, lo_l, hi_l) with the scalar c found by bisection (:func:`box_simplex_projection`).
The last step moves the remaining rounding residual onto the unclamped shares, so the shares sum
to 1 to float64 precision and the allocation's parameter-weighted mean *is* the target. The
best iterate (lowest objective) is returned; step sizes eta_t = eta / sqrt(t + 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


def error_curve(weight: torch.Tensor, sq_norm: torch.Tensor, grid: int) -> torch.Tensor:
    """[grid + 1] relative diagonal output error of pruning the fraction k / grid of every row by
    Wanda's score, k = 0..grid (float64; zeros for an all-zero layer).

    The count in * s is taken as continuous (the error of a fractional count interpolates between
    its neighbours), so narrow layers give a curve with a useful slope everywhere rather than a
    staircase; the engine then prunes floor(in * s) per row.
    """
    s2 = weight.detach().double() ** 2 * sq_norm.double().clamp_min(0).reshape(1, -1)
    total = float(s2.sum())
    if total <= 0:
        return torch.zeros(grid + 1, dtype=torch.float64)
    in_features = s2.shape[1]
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), s2.sort(dim=1).values.cumsum(dim=1).sum(dim=0)])  # [in + 1]
    x = torch.arange(grid + 1, dtype=torch.float64) * (in_features / grid)
    lo = x.floor().long().clamp(max=in_features - 1)
    frac = x - lo
    return (cum[lo] * (1 - frac) + cum[lo + 1] * frac) / total


def _segment(curve: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    grid = curve.shape[-1] - 1
    pos = (s.double() * grid).clamp(0, grid)
    i = pos.floor().long().clamp(max=grid - 1)
    return i, pos - i


def curve_value(curves: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Each layer's curve ([L, grid + 1]) at its sparsity s ([L]), linearly interpolated."""
    i, frac = _segment(curves, s)
    rows = torch.arange(curves.shape[0])
    return curves[rows, i] * (1 - frac) + curves[rows, i + 1] * frac


def curve_slope(curves: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """dL/ds of each layer's interpolated curve at s (the right-hand segment at a grid point)."""
    i, _ = _segment(curves, s)
    rows = torch.arange(curves.shape[0])
    return (curves[rows, i + 1] - curves[rows, i]) * (curves.shape[-1] - 1)


def box_simplex_projection(v: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, steps: int = 200) -> torch.Tensor:
    """KL projection of positive ``v`` onto {b : sum b = 1, lo <= b <= hi}: b = clip(c v, lo, hi),
    c by bisection on log c, then the residual spread over the unclamped entries."""
    v, lo, hi = v.double(), lo.double(), hi.double()
    if float(lo.sum()) > 1 + 1e-12 or float(hi.sum()) < 1 - 1e-12:
        raise ValueError(f"the box [{float(lo.sum())}, {float(hi.sum())}] does not contain a point of the simplex")
    a, z = -60.0, 60.0  # log c
    for _ in range(steps):
        mid = 0.5 * (a + z)
        if float(torch.clamp(math.exp(mid) * v, lo, hi).sum()) < 1.0:
            a = mid
        else:
            z = mid
    b = torch.clamp(math.exp(0.5 * (a + z)) * v, lo, hi)
    for _ in range(3):  # the residual is ~1e-16: two passes leave nothing that float64 can represent
        free = (b > lo) & (b < hi)
        residual = 1.0 - float(b.sum())
        if residual == 0.0 or not bool(free.any()):
            break
        b = torch.where(free, b + residual * b / float(b[free].sum()), b).clamp(lo, hi)
    return b


@dataclass
class MirrorDescentResult:
    sparsities: list[float]  # per layer, the best iterate
    objective: list[float] = field(default_factory=list)  # sum of layer errors, uniform start first
    budget_sums: list[float] = field(default_factory=list)  # sum of shares after every step (1 up to rounding)


def mirror_descent(curves: torch.Tensor, params: list[int], target: float, delta: float, iterations: int = 300,
                   eta: float = 0.5) -> MirrorDescentResult:
    """Per-layer sparsities minimising the summed error curves at the parameter-weighted mean ``target``,
    each within ``delta`` of it (and below 1), from the uniform allocation."""
    n = torch.tensor(params, dtype=torch.float64)
    keep_total = float(n.sum()) * (1.0 - target)
    s_lo = torch.full_like(n, max(0.0, target - delta))
    s_hi = torch.full_like(n, min(target + delta, 0.5 * (1.0 + target)))  # stays below 1
    b_lo, b_hi = n * (1 - s_hi) / keep_total, n * (1 - s_lo) / keep_total

    def sparsity(b):
        return 1.0 - b * keep_total / n

    b = n / n.sum()  # every layer at the target
    best_b = b
    best = float(curve_value(curves, sparsity(b)).sum())
    res = MirrorDescentResult(sparsities=[], objective=[best], budget_sums=[float(b.sum())])
    for t in range(iterations):
        grad = curve_slope(curves, sparsity(b)) * (-keep_total / n)
        scale = float(grad.max() - grad.min())  # a constant part of the gradient does not move b on the simplex
        if scale == 0.0:
            break
        b = box_simplex_projection(b * torch.exp(-eta / math.sqrt(t + 1) * (grad - grad.min()) / scale), b_lo, b_hi)
        f = float(curve_value(curves, sparsity(b)).sum())
        res.objective.append(f)
        res.budget_sums.append(float(b.sum()))
        if f < best:
            best, best_b = f, b
    res.sparsities = [float(x) for x in sparsity(best_b).clamp(min=0.0)]
    return res
