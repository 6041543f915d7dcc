"""The meta pruning metric S = |W| * ||X_j||^beta * C_j^(-gamma) (see :mod:`.space`), in torch."""

from __future__ import annotations

import torch


def meta_scores(weight: torch.Tensor, sq_norm: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """log S [out, in] (float32, higher = keep); ``sq_norm``: per-input sum of squared inputs.

    The logarithm ranks every row exactly as S does and cannot overflow or underflow for any
    exponent; a zero weight gets -inf (always pruned first). A zero input norm counts as the
    smallest positive float. beta = 1, gamma = 0 ranks like Wanda's |W| * ||X||.
    """
    w = weight.detach().abs().float()
    tiny = torch.finfo(torch.float32).tiny
    log_s = torch.log(w.clamp_min(tiny))
    if beta:
        log_s = log_s + (0.5 * beta) * torch.log(sq_norm.float().clamp_min(tiny)).reshape(1, -1)
    if gamma:
        log_s = log_s - gamma * torch.log(w.sum(0).clamp_min(tiny)).reshape(1, -1)
    return torch.where(w > 0, log_s, torch.full((), float("-inf")))
