"""The affine integer grid shared by RTN and GPTQ, and round-to-nearest (RTN) itself.

One group of weights (a slice of an output row) gets ``scale`` and an integer ``zero``;
a weight ``w`` becomes the code ``q = clamp(round(w / scale) + zero, 0, 2**bits - 1)`` and reads
back as ``(q - zero) * scale`` (truthprune's :func:`truthprune.dequantize`).

* The range always contains 0 (``xmin <= 0 <= xmax``) and the zero-point is an integer, so 0.0
  is a grid point: code ``zero`` is exactly 0. That is how a pruned weight stays pruned.
* Asymmetric: ``scale = (xmax - xmin) / maxq``, ``zero = round(-xmin / scale)``.
* Symmetric: ``xmax = max(|xmin|, xmax)``, ``scale = 2 xmax / maxq``, ``zero = 2**(bits-1)``.
* An all-zero group uses the range [-1, 1] (any positive scale works; every code is ``zero``).

Either way every weight inside the range is read back within ``scale / 2`` of its value.
Pure functions on tensors; no truthprune import, so they are easy to test in isolation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Quantized:
    """codes uint8 [out, in]; scales float [out, groups]; zeros float (integer-valued) [out, groups];
    g_idx int32 [in] (group of each input column); deq: the dequantized weights, float."""

    codes: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor
    g_idx: torch.Tensor
    deq: torch.Tensor


def grid_params(w: torch.Tensor, bits: int, symmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row (scale, zero) for the weights ``w`` [out, k] (one group per row)."""
    maxq = 2**bits - 1
    xmin = w.min(dim=1).values.clamp(max=0)
    xmax = w.max(dim=1).values.clamp(min=0)
    if symmetric:
        xmax = torch.maximum(-xmin, xmax)
        xmin = -xmax
    empty = (xmin == 0) & (xmax == 0)
    xmin = torch.where(empty, torch.full_like(xmin, -1.0), xmin)
    xmax = torch.where(empty, torch.full_like(xmax, 1.0), xmax)
    scale = (xmax - xmin) / maxq
    if symmetric:
        zero = torch.full_like(scale, float((maxq + 1) // 2))
    else:
        zero = torch.round(-xmin / scale)
    return scale, zero


def to_codes(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes (float, integer-valued) of ``w`` [out, k] (or [out]) with per-row scale/zero [out]."""
    if w.dim() == 2:
        scale, zero = scale.unsqueeze(1), zero.unsqueeze(1)
    return torch.clamp(torch.round(w / scale) + zero, 0, 2**bits - 1)


def from_codes(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    if q.dim() == 2:
        scale, zero = scale.unsqueeze(1), zero.unsqueeze(1)
    return (q - zero) * scale


def group_index(columns: int, group_size: int) -> torch.Tensor:
    """Group of each column in order: ``c // group_size``; one group when ``group_size`` is 0
    (one scale per output channel) or not smaller than the row."""
    if group_size <= 0 or group_size >= columns:
        return torch.zeros(columns, dtype=torch.int32)
    return (torch.arange(columns) // group_size).to(torch.int32)


def rtn_quantize(weight: torch.Tensor, mask: torch.Tensor | None, bits: int, group_size: int,
                 symmetric: bool) -> Quantized:
    """Round every weight to its group's grid; masked weights get the zero-point code (read back 0)."""
    w = weight.detach().float()
    if mask is not None:
        w = w.masked_fill(mask, 0.0)
    cols = w.shape[1]
    g_idx = group_index(cols, group_size)
    n_groups = int(g_idx[-1].item()) + 1
    width = cols if n_groups == 1 else group_size
    codes = torch.empty_like(w)
    scales = torch.empty(w.shape[0], n_groups, dtype=w.dtype)
    zeros = torch.empty_like(scales)
    for g in range(n_groups):
        sl = slice(g * width, min((g + 1) * width, cols))
        scale, zero = grid_params(w[:, sl], bits, symmetric)
        codes[:, sl] = to_codes(w[:, sl], scale, zero, bits)
        scales[:, g], zeros[:, g] = scale, zero
    if mask is not None:
        codes = torch.where(mask, zeros[:, g_idx.long()], codes)
    deq = (codes - zeros[:, g_idx.long()]) * scales[:, g_idx.long()]
    return Quantized(codes.to(torch.uint8), scales, zeros, g_idx, deq)
