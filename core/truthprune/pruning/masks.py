"""Pure mask-selection maths shared by every score-based pruner.

A score matrix has the weight's shape [out, in]; a higher score means "keep". The comparison
group is each output row (Wanda's per-output grouping). All functions return a bool mask with
True where the weight is pruned, and are deterministic: ties are broken by column index (the
lower index is pruned first), as a stable sort would break them.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import UserError
from ..plugin.interfaces import SparsityTarget


# Rows per selection: a full sort of a [5632 x 2048] score matrix allocates 92 MB of int64 indices
# on top of the values; chunks of rows give the same masks with a bounded working set.
_ROW_CHUNK = 512


def prune_count(in_features: int, sparsity: float) -> int:
    """Weights pruned per row: floor(in * s).

    A tiny epsilon absorbs binary floating-point error (0.29 * 100 = 28.999999999999996 must
    give 29, as a person computing floor(29.0) expects).
    """
    return int(math.floor(in_features * sparsity + 1e-9))


def wanda_scores(weight: torch.Tensor, sq_norm: torch.Tensor) -> torch.Tensor:
    """Wanda's |W_ij| * ||X_j||_2 in float32, from the per-column sum of squared inputs."""
    return weight.detach().abs().float() * sq_norm.float().sqrt().reshape(1, -1)


def _kth_smallest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """[rows, 1] k-th smallest value of every row (exact). On the CPU numpy's introselect, which
    is several times faster than ``torch.kthvalue`` there; elsewhere ``torch.kthvalue``."""
    if scores.device.type != "cpu":
        return torch.kthvalue(scores, k, dim=1, keepdim=True).values
    values = scores.detach()
    if values.dtype not in (torch.float32, torch.float64):
        values = values.float()  # half types: exact in float32, converted back exactly below
    kth = np.partition(values.numpy(), k - 1, axis=1)[:, k - 1 : k]
    return torch.from_numpy(np.ascontiguousarray(kth)).to(scores.dtype)


def lowest_per_row(scores: torch.Tensor, k: int) -> torch.Tensor:
    """True at the ``k`` lowest entries of every row of ``scores`` [rows, n]; among equal scores
    the lower column goes first: exactly the first ``k`` of a stable ascending sort.

    Why not a sort: selecting the k-th value (linear time) and then the ties at it in column
    order gives the same mask several times faster (measured 14x on one row of 196,608 float64
    SparseGPT scores, 7x on Wanda's [1536, 576] rows). Scores holding NaN fall back to the
    sort (NaN sorts last there; a selection leaves it undefined).
    """
    rows, n = scores.shape
    if k <= 0:
        return torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    if k >= n:
        return torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    if bool(torch.isnan(scores).any()):
        mask = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
        return mask.scatter_(1, torch.sort(scores, dim=1, stable=True).indices[:, :k], True)
    kth = _kth_smallest(scores, k)
    below = scores < kth
    tied = scores == kth
    room = k - below.sum(dim=1, keepdim=True)  # how many of the ties at the k-th value are pruned
    if bool((tied.sum(dim=1, keepdim=True) <= room).all()):  # no row has more ties than room (distinct scores)
        return below | tied
    return below | (tied & (tied.cumsum(dim=1) <= room))


def unstructured_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Prune the floor(in * s) lowest-scoring weights of every row."""
    out_features, in_features = scores.shape
    k = prune_count(in_features, sparsity)
    mask = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    if k == 0:
        return mask
    for r in range(0, out_features, _ROW_CHUNK):  # rows are independent; chunks bound the working memory
        mask[r : r + _ROW_CHUNK] = lowest_per_row(scores[r : r + _ROW_CHUNK], k)
    return mask


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Prune the n lowest of every block of m consecutive inputs in each row ("2:4" = 2 of 4)."""
    out_features, in_features = scores.shape
    if not 0 < n < m:
        raise UserError(f"N:M pattern {n}:{m} needs 0 < N < M (e.g. 2:4)")
    if in_features % m:
        raise UserError(f"N:M pattern {n}:{m} needs input width divisible by {m}, got {in_features}")
    blocks = scores.reshape(out_features, in_features // m, m)
    mask = torch.zeros(blocks.shape, dtype=torch.bool, device=scores.device)
    for r in range(0, out_features, _ROW_CHUNK):
        order = torch.sort(blocks[r : r + _ROW_CHUNK], dim=2, stable=True).indices[:, :, :n]
        mask[r : r + _ROW_CHUNK].scatter_(2, order, True)
    return mask.reshape(out_features, in_features)


def mask_from_scores(scores: torch.Tensor, target: SparsityTarget) -> torch.Tensor:
    """The mask a score-based pruner returns for ``target`` (N:M wins over the fraction)."""
    if target.nm is not None:
        return nm_mask(scores, *target.nm)
    return unstructured_mask(scores, target.sparsity)
