"""Registration and the Frank-Wolfe pruner class; the maths is in :mod:`truthprune_fw.maths`.

No torch at module level (``truthprune plugins`` imports this). The pruner needs the Gram
statistic (the objective) and Wanda's per-column square sums (the warm start is exactly Wanda's
mask), so it works per linear layer in memory mode, under ``--offload`` and under torchrun.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from truthprune import STAT_GRAM, STAT_SQ_NORM, PluginConfig, Pruner, PruneResult, hookimpl


class FWConfig(PluginConfig):
    iterations: int = Field(20, ge=0)
    """Frank-Wolfe iterations per linear layer (0: the Wanda warm start itself)."""
    step: Literal["linesearch", "standard"] = "linesearch"
    """Step rule: exact per-row line search (monotone), or the classic 2/(t+2)."""
    update: bool = False
    """After rounding, refit the kept weights by least squares on the calibration inputs."""
    update_iterations: int = Field(50, ge=1)
    """Conjugate-gradient iterations of that least-squares refit."""
    damp: float = Field(0.01, ge=0)
    """Damping of the refit, as a fraction of the Gram diagonal's mean."""


class FWPruner(Pruner):
    name = "fw"
    description = "Frank-Wolfe: relaxed min ||WX - (M*W)X||^2 over k-sparse mask hulls, from Wanda's mask, rounded."
    Config = FWConfig
    required_stats = frozenset({STAT_SQ_NORM, STAT_GRAM})

    def __init__(self, config=None):
        super().__init__(config)
        self.last = None  # the FWResult of the most recent linear (diagnostics, tests)

    def prune(self, weight, stats, target):
        from truthprune import wanda_scores

        from .maths import frank_wolfe_mask, least_squares_update

        cfg = self.config
        res = frank_wolfe_mask(weight, stats.gram, wanda_scores(weight, stats.sq_norm), target,
                               iterations=cfg.iterations, step=cfg.step)
        self.last = res
        new = least_squares_update(weight, res.keep, stats.gram, cfg.update_iterations, cfg.damp) if cfg.update else None
        return PruneResult(mask=~res.keep, weight=new)


@hookimpl
def register_pruners(register):
    register(FWPruner)
