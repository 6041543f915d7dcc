"""Built-in pruner ``wanda`` (core's default): prune the lowest |W_ij| * ||X_j|| per output row.

A core built-in rather than a plugin so that core alone runs ``truthprune run`` (docs/architecture.md,
"Core runs on its own"). ``WandaPruner`` is public (``truthprune.WandaPruner``) so presets such as
``owl`` and ``tplo`` subclass it. The maths is core's shared mask functions
(:func:`truthprune.pruning.masks.wanda_scores`, :func:`~truthprune.pruning.masks.mask_from_scores`)
plus the appendix variant below. No torch import at module level (fast CLI start).
"""

from __future__ import annotations

from typing import Any

from truthprune.plugin.interfaces import PluginConfig, Pruner, PruneResult
from truthprune.plugin.pruning_inputs import STAT_SQ_NORM


class WandaConfig(PluginConfig):
    variant: bool = False
    """Wanda's appendix variant: per-row cumulative-score threshold, alpha found by bisection."""


class WandaPruner(Pruner):
    name = "wanda"
    description = "Wanda: prune the lowest |W_ij|*||X_j|| per output row (unstructured, N:M, or the alpha variant)."
    Config = WandaConfig
    required_stats = frozenset({STAT_SQ_NORM})

    def scores(self, weight, stats):
        from truthprune.pruning.masks import wanda_scores

        return wanda_scores(weight, stats.sq_norm)

    def prune(self, weight, stats, target):
        from truthprune.pruning.masks import mask_from_scores

        scores = self.scores(weight, stats)
        if self.config.variant and target.nm is None:
            return PruneResult(mask=variant_mask(scores, target.sparsity))
        return PruneResult(mask=mask_from_scores(scores, target))


# Wanda's appendix variant (reference section 5): a per-row threshold on cumulative scores. For a
# given alpha, each row prunes every score up to the largest sorted score whose cumulative sum is
# <= alpha * row sum (ties with that threshold included, so rows differ in count). Alpha is found
# by bisection on the matrix-level pruned fraction, exactly as the reference does.


def variant_mask_for_alpha(scores: Any, alpha: float) -> Any:
    """The mask for one alpha: True where score <= that row's cumulative-sum threshold."""
    import torch

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


def variant_mask(scores: Any, target: float, alpha: float = 0.4, low: float = 0.0, high: float = 0.8,
                 tol: float = 0.001, max_steps: int = 60) -> Any:
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
