"""Pure mask-selection maths shared by every score-based pruner.

A score matrix has the weight's shape [out, in]; a higher score means "keep". The comparison
group is each output row (Wanda's per-output grouping). All functions return a bool mask with
True where the weight is pruned, and are deterministic: ties are broken by column index (the
lower index is pruned first), via a stable sort.
"""

from __future__ import annotations

import math

import torch

from ..errors import UserError
from ..plugin.interfaces import SparsityTarget


# Rows per sort: a full sort of a [5632 x 2048] score matrix allocates 92 MB of int64 indices
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


def unstructured_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Prune the floor(in * s) lowest-scoring weights of every row."""
    out_features, in_features = scores.shape
    k = prune_count(in_features, sparsity)
    mask = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    if k == 0:
        return mask
    for r in range(0, out_features, _ROW_CHUNK):  # rows are independent; chunks bound the sort's memory
        order = torch.sort(scores[r : r + _ROW_CHUNK], dim=1, stable=True).indices[:, :k]
        mask[r : r + _ROW_CHUNK].scatter_(1, order, True)
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
