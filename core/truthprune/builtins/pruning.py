"""Built-in magnitude pruner and uniform allocator: the simplest members of each interface."""

from __future__ import annotations

from truthprune.plugin.interfaces import LayerInfo, LinearStats, Pruner, PruneResult, SparsityAllocator, SparsityTarget


class MagnitudePruner(Pruner):
    name = "magnitude"
    description = "Prune the smallest |W| per output row (no calibration statistics needed)."

    def prune(self, weight, stats: LinearStats, target: SparsityTarget) -> PruneResult:
        from truthprune.pruning.masks import mask_from_scores

        return PruneResult(mask=mask_from_scores(weight.detach().abs().float(), target))


class UniformAllocator(SparsityAllocator):
    name = "uniform"
    description = "The same sparsity in every decoder layer."

    def allocate(self, target: float, info: LayerInfo) -> list[float]:
        return [float(target)] * info.num_layers
