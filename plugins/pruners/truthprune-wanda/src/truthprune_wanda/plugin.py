"""Registration and the thin Wanda pruner class; the maths is in :mod:`truthprune_wanda.variant`
and in truthprune's shared mask functions. No torch import at module level (fast CLI start)."""

from __future__ import annotations

from truthprune import STAT_SQ_NORM, PluginConfig, Pruner, PruneResult, hookimpl


class WandaConfig(PluginConfig):
    variant: bool = False
    """Wanda's appendix variant: per-row cumulative-score threshold, alpha found by bisection."""


class WandaPruner(Pruner):
    name = "wanda"
    description = "Wanda: prune the lowest |W_ij|*||X_j|| per output row (unstructured, N:M, or the alpha variant)."
    Config = WandaConfig
    required_stats = frozenset({STAT_SQ_NORM})

    def scores(self, weight, stats):
        from truthprune import wanda_scores

        return wanda_scores(weight, stats.sq_norm)

    def prune(self, weight, stats, target):
        from truthprune import mask_from_scores

        scores = self.scores(weight, stats)
        if self.config.variant and target.nm is None:
            from .variant import variant_mask

            return PruneResult(mask=variant_mask(scores, target.sparsity))
        return PruneResult(mask=mask_from_scores(scores, target))


@hookimpl
def register_pruners(register):
    register(WandaPruner)
