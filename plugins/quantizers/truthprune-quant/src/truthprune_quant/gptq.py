"""GPTQ: quantize one column at a time and push each column's rounding error onto the columns not
yet quantized, weighted by the inverse Hessian of the layer's reconstruction loss (optimal brain
surgeon updates), so the layer's *outputs* on calibration data change as little as possible.

The loss of a linear layer on inputs X [n, in] is ``||X W^T - X Q^T||^2``; its Hessian in each
output row is ``H = 2 X^T X / n``, built from the engine's Gram statistic (``STAT_GRAM`` = X^T X
summed over calibration tokens). The steps, in the order the code runs them:

1. *Dead inputs*: a column whose input was always 0 has ``H_jj = 0``. Its diagonal is set to 1,
   which decouples it (its error is not propagated; it is simply rounded). Optionally its weights
   are set to 0 (``zero_dead``, what the GPTQ reference code does).
2. *Act-order* (optional): columns are processed in decreasing ``H_jj`` (largest activations
   first); groups are then consecutive in that order (``g_idx`` records each column's group).
3. *Damping*: ``H += percdamp * mean(diag H) * I`` keeps the inverse well conditioned.
4. ``U`` = upper Cholesky factor of ``H^-1``. Row ``j`` of ``U``, divided by ``U_jj``, is the OBS
   update for quantizing column ``j`` given that columns ``< j`` are already fixed; it replaces
   re-inverting the shrinking Hessian after every column.
5. *Blocked lazy updates*: inside a block of columns the updates are applied one column at a
   time; the accumulated block error is applied to all later columns in one matrix product.
   Blocks are multiples of the group size, so a group's scale is always computed from its
   weights' current (already updated) values.

Pruned weights (``mask``) are quantized to exactly 0, and their deviation from 0 (earlier columns'
updates move them) is propagated like any rounding error, so the surviving weights compensate;
their scale/zero are computed with the masked entries counted as 0.
"""

from __future__ import annotations

import torch

from .grid import Quantized, from_codes, grid_params, to_codes


def gptq_hessian(gram: torch.Tensor, n_tokens: int, dtype: torch.dtype) -> torch.Tensor:
    """``H = 2 X^T X / n`` from the Gram statistic (a fresh tensor; the statistic is not modified)."""
    return gram.detach().to(dtype) * (2.0 / max(int(n_tokens), 1))


def _block_size(blocksize: int, group_size: int) -> int:
    if group_size <= 0:
        return blocksize
    return group_size * max(1, blocksize // group_size)


def gptq_quantize(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    mask: torch.Tensor | None,
    bits: int,
    group_size: int = 128,
    symmetric: bool = False,
    percdamp: float = 0.01,
    blocksize: int = 128,
    act_order: bool = False,
    zero_dead: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Quantized:
    """Quantize ``weight`` [out, in] given ``hessian`` [in, in]; returns codes, scales, zero-points,
    the group of every column (original order) and the dequantized weights (original order)."""
    W = weight.detach().to(dtype).clone()
    H = hessian.detach().to(dtype).clone()
    rows, cols = W.shape
    M = mask.clone() if mask is not None else torch.zeros_like(W, dtype=torch.bool)
    W.masked_fill_(M, 0.0)

    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    if zero_dead:
        W[:, dead] = 0.0
    perm = None
    if act_order:
        perm = torch.argsort(torch.diag(H), descending=True, stable=True)
        W, H, M = W[:, perm], H[perm][:, perm], M[:, perm]
    H.diagonal().add_(percdamp * torch.mean(torch.diag(H)))
    try:
        L = torch.linalg.cholesky(H)
        U = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    except RuntimeError as err:  # torch.linalg.LinAlgError subclasses RuntimeError
        raise ValueError(f"GPTQ: the damped Hessian is not positive definite ({err}); raise percdamp") from None

    grouped = 0 < group_size < cols
    n_groups = -(-cols // group_size) if grouped else 1
    scales = torch.zeros(rows, n_groups, dtype=dtype)
    zeros = torch.zeros(rows, n_groups, dtype=dtype)
    codes = torch.zeros(rows, cols, dtype=dtype)
    Q = torch.zeros_like(W)
    if not grouped:
        scale, zero = grid_params(W, bits, symmetric)
        scales[:, 0], zeros[:, 0] = scale, zero

    block = _block_size(blocksize, group_size)
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        W1 = W[:, i1:i2].clone()
        U1 = U[i1:i2, i1:i2]
        E1 = torch.zeros_like(W1)
        for i in range(i2 - i1):
            c = i1 + i
            if grouped and c % group_size == 0:
                g = c // group_size
                scale, zero = grid_params(W1[:, i:i + group_size].masked_fill(M[:, c:c + group_size], 0.0), bits, symmetric)
                scales[:, g], zeros[:, g] = scale, zero
            w = W1[:, i]
            q_codes = to_codes(w, scale, zero, bits)
            q_codes = torch.where(M[:, c], zero, q_codes)
            q = from_codes(q_codes, scale, zero)
            codes[:, c], Q[:, c] = q_codes, q
            err = (w - q) / U1[i, i]
            W1[:, i:] -= err.unsqueeze(1) * U1[i, i:].unsqueeze(0)
            E1[:, i] = err
        W[:, i2:] -= E1 @ U[i1:i2, i2:]

    g_idx = (torch.arange(cols) // group_size) if grouped else torch.zeros(cols, dtype=torch.long)
    if perm is not None:
        inv = torch.argsort(perm)
        codes, Q = codes[:, inv], Q[:, inv]
        g_idx = g_idx[inv]
    return Quantized(codes.to(torch.uint8), scales, zeros, g_idx.to(torch.int32), Q)
