"""Registration and the Wanda++ pruner class (no torch at module level: fast CLI start).

Wanda++ works per decoder block, so the pruner sets ``uses_block`` and gets truthprune's block
hooks: ``begin_block`` computes the regional gradients G of the block (stored in each linear's
``LinearStats.extra``), ``prune`` ranks weights per output row by

    score = |W| * ||X||  +  alpha * |W| * |G|

(Wanda's score plus the regional-gradient term), and ``end_block`` runs the regional
optimisation of the kept weights with the masks fixed (kept only if it lowered the block error on
the first mini-batch). With ``alpha = 0`` and ``ro_steps = 0``
it is exactly Wanda (no gradient is computed and no weight changes).
"""

from __future__ import annotations

from pydantic import Field
from truthprune import STAT_SQ_NORM, PluginConfig, Pruner, PruneResult, hookimpl

GRAD_KEY = "wandapp.regional_grad"


class WandappConfig(PluginConfig):
    alpha: float = Field(100.0, ge=0)
    """Weight of the regional-gradient term |W|*|G| next to Wanda's |W|*||X|| (0: Wanda's score)."""
    ro_steps: int = Field(2, ge=0)
    """Regional-optimisation steps per decoder block (one calibration mini-batch each, in order)."""
    lr: float = Field(1e-5, gt=0)
    """RMSprop learning rate of the regional optimisation."""


class WandappPruner(Pruner):
    name = "wandapp"
    description = "Wanda++: Wanda scores plus alpha*|W|*|regional gradient|, then regional optimisation of kept weights."
    Config = WandappConfig
    required_stats = frozenset({STAT_SQ_NORM})
    uses_block = True

    def __init__(self, config=None):
        super().__init__(config)
        self.ro_losses: dict[int, list[float]] = {}  # per decoder layer: the loss at each RO step

    def begin_block(self, block):
        if self.config.alpha == 0:
            return None
        from .regional import regional_gradients

        return {name: {GRAD_KEY: g} for name, g in regional_gradients(block).items()}

    def scores(self, weight, stats):
        from truthprune import wanda_scores

        scores = wanda_scores(weight, stats.sq_norm)
        grad = stats.extra.get(GRAD_KEY)
        if self.config.alpha and grad is not None:
            scores = scores + self.config.alpha * weight.detach().abs().float() * grad.to(scores.device)
        return scores

    def prune(self, weight, stats, target):
        from truthprune import mask_from_scores

        return PruneResult(mask=mask_from_scores(self.scores(weight, stats), target))

    def end_block(self, block):
        if self.config.ro_steps == 0 or block.n_batches == 0:
            return None
        from .regional import regional_optimisation

        weights, losses = regional_optimisation(block, self.config.ro_steps, self.config.lr)
        self.ro_losses[block.index] = losses
        # losses[0] and losses[-1] are the same mini-batch before and after: keep the update only if it helped
        return weights if losses[-1] < losses[0] else None


@hookimpl
def register_pruners(register):
    register(WandappPruner)
