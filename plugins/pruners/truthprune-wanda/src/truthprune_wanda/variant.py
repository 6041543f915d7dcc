"""Wanda's appendix variant (reference section 5): a per-row threshold on cumulative scores.

For a given alpha, each row prunes every score up to the largest sorted score whose cumulative
sum is <= alpha * row sum (ties with that threshold included, so rows differ in count). Alpha is
found by bisection on the matrix-level pruned fraction, exactly as the reference does.
"""

from __future__ import annotations

import torch


def variant_mask_for_alpha(scores: torch.Tensor, alpha: float) -> torch.Tensor:
    """The mask for one alpha: True where score <= that row's cumulative-sum threshold."""
    sorted_scores, _ = torch.sort(scores, dim=1)
    cumsum = torch.cumsum(sorted_scores, dim=1)
    limit = alpha * scores.sum(dim=1, keepdim=True)
    below = cumsum <= limit
    # index of the last sorted entry still under the limit; rows with none prune nothing
    count = below.sum(dim=1, keepdim=True)
    idx = (count - 1).clamp(min=0)
    threshold = torch.gather(sorted_scores, 1, idx)
    mask = scores <= threshold
    return mask & (count > 0)


def variant_mask(
    scores: torch.Tensor,
    target: float,
    alpha: float = 0.4,
    low: float = 0.0,
    high: float = 0.8,
    tol: float = 0.001,
    max_steps: int = 60,
) -> torch.Tensor:
    """Bisection on alpha until the pruned fraction is within ``tol`` of ``target``."""
    mask = variant_mask_for_alpha(scores, alpha)
    for _ in range(max_steps):
        achieved = mask.float().mean().item()
        if abs(achieved - target) <= tol or high - low < tol:
            break
        if achieved > target:
            alpha, high = (low + alpha) / 2.0, alpha
        else:
            alpha, low = (alpha + high) / 2.0, alpha
        mask = variant_mask_for_alpha(scores, alpha)
    return mask
