"""TRIM's maths: exact integer row counts, per-row quality from the Gram statistic, the iteration.

A layer allocated sparsity s prunes P = out * floor(in * s) weights in total (the same total as a
uniform per-row pruner, so layer allocators compose unchanged). TRIM spreads those P over the
rows unevenly: row r prunes k_r weights, sum_r k_r = P exactly, so the mean of the row
sparsities k_r / in is the layer's sparsity exactly.

Quality of row r is the cosine similarity between its dense output y_r = X w_r^T and its pruned
output X w'_r^T over the calibration tokens. With G = X^T X all three inner products are
quadratic forms of G:  q_r = (w_r G w'_r^T) / sqrt((w_r G w_r^T)(w'_r G w'_r^T)).

The iteration starts from uniform counts (the plain score mask), and repeatedly moves sparsity
towards rows whose quality is above the mean and away from rows below it, by ``step`` times
the standardised deviation, within ``target +- max_deviation``; it returns the iterate whose
qualities have the smallest variance across rows (the uniform start included, so the spread is
never worse than the plain mask's). Everything is deterministic: no sampling, stable sorts,
bisection and largest-remainder rounding with ties to the lower row index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

_ROW_CHUNK = 512  # rows per sort (bounded working memory, as in truthprune's own masks)


def prune_count(in_features: int, sparsity: float) -> int:
    """floor(in * s), with truthprune's epsilon for binary floating-point error."""
    return int(math.floor(in_features * sparsity + 1e-9))


def exact_row_counts(row_sparsity: torch.Tensor, in_features: int, total: int, lo: int, hi: int) -> torch.Tensor:
    """Integer counts k_r in [lo, hi] with sum exactly ``total``, closest to row_sparsity * in.

    A shift c (found by bisection) makes sum_r clip(s_r * in + c, lo, hi) = total; the real
    counts are then floored and the remainder goes to the largest fractional parts.
    """
    out = row_sparsity.numel()
    if not out * lo <= total <= out * hi:
        raise ValueError(f"cannot place {total} pruned weights in {out} rows with {lo}..{hi} each")
    real = row_sparsity.double() * in_features

    def placed(c: float) -> torch.Tensor:
        return (real + c).clamp(lo, hi)

    a, b = -float(in_features) - 1.0, float(in_features) + 1.0
    for _ in range(200):
        mid = (a + b) / 2
        if float(placed(mid).sum()) < total:
            a = mid
        else:
            b = mid
    t = placed(b)
    k = t.floor().long().clamp(lo, hi)
    rest = int(total - int(k.sum()))
    if rest > 0:  # the largest fractional parts (stable: lower row first) get one more
        frac = torch.where(k < hi, t - k.double(), torch.full_like(t, -1.0))
        order = torch.sort(-frac, stable=True).indices[:rest]
        k[order] += 1
    elif rest < 0:
        frac = torch.where(k > lo, t - k.double(), torch.full_like(t, 2.0))
        order = torch.sort(frac, stable=True).indices[: -rest]
        k[order] -= 1
    return k


def row_count_mask(scores: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Prune the counts[r] lowest-scoring weights of row r (ties: lower column index first)."""
    out_features, in_features = scores.shape
    mask = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    cols = torch.arange(in_features, device=scores.device).unsqueeze(0)
    for r in range(0, out_features, _ROW_CHUNK):
        order = torch.sort(scores[r : r + _ROW_CHUNK], dim=1, stable=True).indices
        mask[r : r + _ROW_CHUNK].scatter_(1, order, cols < counts[r : r + _ROW_CHUNK].to(scores.device).unsqueeze(1))
    return mask


def row_cosine(weight: torch.Tensor, pruned: torch.Tensor, gram: torch.Tensor, wg: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row cosine similarity of dense and pruned outputs over the calibration tokens."""
    w = weight.float()
    wg = w @ gram if wg is None else wg
    pg = pruned.float() @ gram
    cross = (wg * pruned).sum(1)
    dense = (wg * w).sum(1).clamp(min=0)
    sparse = (pg * pruned).sum(1).clamp(min=0)
    den = (dense * sparse).sqrt()
    return torch.where(den > 0, cross / den.clamp(min=1e-30), torch.ones_like(den))


@dataclass
class TrimResult:
    mask: torch.Tensor  # bool [out, in], True = pruned
    counts: torch.Tensor  # pruned weights per row
    variances: list[float] = field(default_factory=list)  # quality variance per iterate (uniform first)
    means: list[float] = field(default_factory=list)  # mean quality per iterate
    chosen: int = 0  # which iterate was returned


def trim_mask(weight, scores, gram, sparsity: float, iterations: int = 10, step: float = 0.05,
              max_deviation: float = 0.1) -> TrimResult:
    """TRIM's row-wise mask for one layer at ``sparsity`` (see the module doc)."""
    out_features, in_features = weight.shape
    base = prune_count(in_features, sparsity)
    total = out_features * base
    lo = max(0, prune_count(in_features, sparsity - max_deviation)) if sparsity > max_deviation else 0
    hi = min(in_features - 1, math.ceil(in_features * (sparsity + max_deviation) - 1e-9))
    lo, hi = min(lo, base), max(hi, base)
    w = weight.detach().float()
    g = gram.float()
    wg = w @ g
    s = torch.full((out_features,), base / in_features, dtype=torch.float64)
    counts = torch.full((out_features,), base, dtype=torch.long)
    best = None
    result = TrimResult(mask=torch.zeros(0), counts=counts)
    for it in range(iterations + 1):
        mask = row_count_mask(scores, counts)
        q = row_cosine(w, w.masked_fill(mask, 0), g, wg).double()
        var, mean = float(q.var(unbiased=False)), float(q.mean())
        result.variances.append(var)
        result.means.append(mean)
        if best is None or var < best[0]:
            best = (var, it, mask, counts)
        if it == iterations:
            break
        z = (q - q.mean()) / (q.std(unbiased=False) + 1e-12)
        s = s + step * z  # well-kept rows can give up more weights, struggling rows get some back
        counts = exact_row_counts(s, in_features, total, lo, hi)
        s = counts.double() / in_features
    _, result.chosen, result.mask, result.counts = best
    return result
