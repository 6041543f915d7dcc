"""A seeded random pruner: removes a random floor(in * s) weights of every row.

Useful as a control: any method worth using must beat it on perplexity and probe accuracy.
It imports only the public ``truthprune`` API and no torch at module level.
"""

from truthprune import PluginConfig, Pruner, PruneResult, hookimpl


class RandomConfig(PluginConfig):
    seed: int = 0


class RandomPruner(Pruner):
    name = "random"
    description = "Random weights per row (control baseline); deterministic for a seed."
    Config = RandomConfig

    def prune(self, weight, stats, target):
        import torch

        from truthprune import mask_from_scores

        gen = torch.Generator().manual_seed(self.config.seed + weight.shape[0] * 7919 + weight.shape[1])
        scores = torch.rand(weight.shape, generator=gen)
        return PruneResult(mask=mask_from_scores(scores, target))


@hookimpl
def register_pruners(register):
    register(RandomPruner)
