"""Registration and the thin ``sparsegpt`` pruner class: form H from the engine's Gram statistic
and hand it to :func:`truthprune_sparsegpt.obs.obs_prune`. No torch at module level: the CLI
imports this module to list plugins."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from truthprune import STAT_CROSS, STAT_GRAM, PluginConfig, Pruner, PruneResult, UserError, hookimpl


class SparseGPTConfig(PluginConfig):
    blocksize: int = Field(128, ge=1)
    """Columns per lazy-batch block (N:M rounds it down to a multiple of M)."""
    percdamp: float = Field(0.01, ge=0)
    """Dampening added to diag(H): percdamp x mean(diag H)."""
    dtype: Literal["float64", "float32"] = "float64"
    """Precision of the OBS updates (the statistic itself arrives as float32)."""
    target: Literal["pruned", "dense"] = "pruned"
    """pruned: fit the layer's own outputs on the pruned model's inputs (SparseGPT). dense: fit the dense
    model's outputs (asymmetric OBS; the engine carries dense-model copies of the calibration streams)."""


class SparseGPTPruner(Pruner):
    name = "sparsegpt"
    description = "SparseGPT: OBS reconstruction from H = 2X^T X/n, block-wise masks on w^2/[H^-1]_jj^2, updated weights."
    Config = SparseGPTConfig
    required_stats = frozenset({STAT_GRAM})

    def __init__(self, config=None):
        super().__init__(config)
        if self.config.target == "dense":
            self.required_stats = frozenset({STAT_GRAM, STAT_CROSS})

    def hessian(self, stats):
        """H = 2 X^T X / n in the compute precision; a subclass may add terms to it."""
        import torch

        from .obs import hessian_from_gram

        if stats.gram is None:
            raise UserError("sparsegpt needs the 'gram' statistic; the engine did not collect it")
        return hessian_from_gram(stats.gram, stats.n_tokens, getattr(torch, self.config.dtype))

    def cross(self, stats):
        """C = 2 X_p^T X_d / n (target=dense), scaled like :meth:`hessian`; a subclass may add terms."""
        import torch

        from .asymmetric import cross_from_stat

        if stats.cross is None:
            raise UserError("sparsegpt target=dense needs the 'cross' statistic; the engine did not collect it")
        return cross_from_stat(stats.cross, stats.n_tokens, getattr(torch, self.config.dtype))
    def factor(self, hessian):
        """U of H (:func:`~truthprune_sparsegpt.obs.obs_factor`), shared by consecutive linears
        with an equal H (q/k/v, gate/up); bit-identical to factorising each."""
        from .obs import FactorCache

        if not hasattr(self, "_factors"):
            self._factors = FactorCache()
        return self._factors.get(hessian, self.config.percdamp)

    def prune(self, weight, stats, target):
        import torch

        from .obs import obs_prune

        dtype = getattr(torch, self.config.dtype)
        h = self.hessian(stats)
        start = weight
        if self.config.target == "dense":
            from .asymmetric import dense_target_weight

            start = dense_target_weight(weight, h, self.cross(stats), self.config.percdamp, dtype)
        new_weight, mask = obs_prune(start, h, target, blocksize=self.config.blocksize, percdamp=self.config.percdamp,
                                     compute_dtype=dtype, factor=self.factor(h))
        return PruneResult(mask=mask, weight=new_weight.to(weight.dtype))


@hookimpl
def register_pruners(register):
    register(SparseGPTPruner)
