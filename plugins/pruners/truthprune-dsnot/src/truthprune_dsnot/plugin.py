"""Registration and the DSnoT pruner class; the maths is in :mod:`truthprune_dsnot.maths`.

DSnoT refines another pruner's mask, so the base is resolved by name through the registry
(``--pruner-opt base=sparsegpt``, its options as ``base_options``): any installed per-linear
pruner works. The base is created when DSnoT is, i.e. at plan time, so an unknown base name or a
bad base option fails before anything loads; a structured base is refused there with the
reason. Everything else about the run follows the base: its statistics, default allocator,
block hooks (RIA's channel permutation, Wanda++'s regional steps run around DSnoT's masks) and
whether statistics come from the dense model.

Statistics: the base's own, plus ``sum`` (mean input), ``sq_norm`` (Wanda score and input
variance) and ``gram`` (the exact reconstruction error of the guard). The guard keeps, row by row,
whichever of the base's result and the refined mask reconstructs the row's calibration outputs
better, so the layer's error ||W X^T - W' X^T||^2 never exceeds the base's. A base that also
updates the kept weights (SparseGPT) is compared with those weights; the refined rows use the
dense weights, as in the paper (which refines the base's mask, not its reconstruction).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from truthprune import STAT_GRAM, STAT_SQ_NORM, STAT_SUM, PluginConfig, Pruner, PruneResult, UserError, hookimpl


class DSnoTConfig(PluginConfig):
    base: str = "wanda"
    """The pruner whose mask is refined (any installed per-linear pruner, e.g. wanda, sparsegpt, ria)."""
    base_options: dict[str, Any] = Field(default_factory=dict)
    """Options of the base pruner, e.g. base_options='{"variant": true}'."""
    max_cycles: int = Field(50, ge=0)
    """Prune-and-grow cycles per linear (0: the base mask itself)."""
    threshold: float = Field(0.1, ge=0.0)
    """A row stops once its expected reconstruction error |e_r| is at most this."""
    var_power: float = Field(1.0, ge=0.0)
    """Exponent of the input variance dividing the growing score (0: no variance term)."""
    same_sign: bool = True
    """Refuse a swap that carries the row's expected error across zero (the paper's rule)."""
    guard: bool = True
    """Per row, keep the base's result when the refined mask reconstructs the calibration outputs worse."""


class DSnoTPruner(Pruner):
    name = "dsnot"
    description = "DSnoT: prune-and-grow refinement of a base pruner's mask (base=wanda|sparsegpt|...), no training."
    Config = DSnoTConfig
    required_stats = frozenset({STAT_SQ_NORM, STAT_SUM, STAT_GRAM})

    def __init__(self, config=None):
        super().__init__(config)
        from truthprune import get_registry

        cfg = self.config
        if cfg.base == self.name:
            raise UserError("pruner 'dsnot': base 'dsnot' would refine itself; choose another base, e.g. base=wanda")
        self.base = get_registry().create("pruner", cfg.base, cfg.base_options)
        if getattr(self.base, "structured", False):
            raise UserError(f"pruner 'dsnot': base {cfg.base!r} removes whole units, and DSnoT refines weight masks; "
                            "choose an unstructured base such as wanda or sparsegpt")
        # statistics, allocator, block hooks and where statistics come from all follow the base
        # (an owl base keeps its OWL allocation, ria keeps its N:M channel permutation)
        self.required_stats = DSnoTPruner.required_stats | self.base.required_stats
        self.default_allocator = self.base.default_allocator
        self.uses_block = self.base.uses_block
        self.dense_statistics = self.base.dense_statistics
        self.last = None  # the DSnoTResult of the most recent linear (diagnostics, tests)
        self.rows_kept_from_base = 0

    def check(self, context):
        self.base.check(context)

    def auxiliary_calibration(self, context):
        return self.base.auxiliary_calibration(context)

    def begin_block(self, block):
        return self.base.begin_block(block)

    def end_block(self, block):
        return self.base.end_block(block)

    def prune(self, weight, stats, target):
        import torch

        from .maths import dsnot_refine, row_errors

        cfg = self.config
        base = self.base.prune(weight, stats, target)
        keep0 = ~base.mask
        n = max(int(stats.n_tokens), 1)
        mean = stats.sum.double() / n
        var = (stats.sq_norm.double() / n - mean * mean).clamp_min(0)
        res = dsnot_refine(weight, keep0, mean, stats.sq_norm, var, target.nm, cfg.max_cycles, cfg.threshold,
                           cfg.var_power, cfg.same_sign)
        self.last = res
        w = weight.detach()
        base_w = (base.weight if base.weight is not None else w).to(w.dtype) * keep0
        if not cfg.guard:
            return PruneResult(mask=~res.keep, weight=None if base.weight is None else w * res.keep)
        refined_err = row_errors(w, w * res.keep, stats.gram)
        base_err = row_errors(w, base_w, stats.gram)
        use_refined = (refined_err <= base_err).unsqueeze(1)
        self.rows_kept_from_base = int((~use_refined).sum())
        keep = torch.where(use_refined, res.keep, keep0)
        if base.weight is None:
            return PruneResult(mask=~keep)
        return PruneResult(mask=~keep, weight=torch.where(use_refined, w * res.keep, base_w))


@hookimpl
def register_pruners(register):
    register(DSnoTPruner)
