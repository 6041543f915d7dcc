"""Registration and the two UniPruning classes; the maths is in :mod:`truthprune_unipruning.maths`.

* ``--pruner unipruning``: the local saliency, Wanda's |W_ij| ||X_j|| per output row, from the
  *dense* model (``dense_statistics``): one calibration pass gives every layer's statistics,
  which do not depend on the sparsity. Its default allocator is the controller below; any other
  allocator (``--allocator owl|tplo|uniform``) replaces the controller and keeps the saliency.
* ``--allocator unipruning``: the global controller. Its dense pre-pass (the same single pass
  when the pruner is ``unipruning``) turns every decoder layer into an error curve, and mirror
  descent shares the keep budget among the layers. It also works with other pruners.

Several sparsities from one calibration: ``truthprune sweep --pruner unipruning --sparsity
0.5,0.6,0.7`` loads the model once and restores its dense weights between grid points; the
engine keeps the dense statistics of the loaded model (keyed by its weights and the calibration
tokens), so only the first point runs a calibration pass. Each point is saved where a sweep saves
it (``OUT/unipruning-0.6/``, with ``--save DIR``: ``DIR/unipruning-0.6/``).
"""

from __future__ import annotations

from pydantic import Field
from truthprune import STAT_SQ_NORM, PluginConfig, Pruner, PruneResult, SparsityAllocator, hookimpl


class UniPruningConfig(PluginConfig):
    """No options: the saliency is Wanda's score on the dense model."""


class UniPruningPruner(Pruner):
    name = "unipruning"
    description = "UniPruning: Wanda saliency from one dense calibration + mirror-descent layer budgets; one pass, any sparsity."
    Config = UniPruningConfig
    required_stats = frozenset({STAT_SQ_NORM})
    default_allocator = "unipruning"
    dense_statistics = True

    def prune(self, weight, stats, target):
        from truthprune import mask_from_scores, wanda_scores

        return PruneResult(mask=mask_from_scores(wanda_scores(weight, stats.sq_norm), target))


class UniPruningControllerConfig(PluginConfig):
    delta: float = Field(0.1, gt=0.0, lt=1.0)
    """Largest deviation of a layer's sparsity from the target (like OWL's lambda)."""
    iterations: int = Field(300, ge=0)
    """Mirror-descent steps (0: the uniform allocation)."""
    eta: float = Field(0.5, gt=0.0)
    """Initial step size of the exponentiated-gradient update (decays as 1/sqrt(t + 1))."""
    grid: int = Field(200, ge=2)
    """Points at which each layer's error curve is sampled (sparsity resolution 1/grid)."""


class UniPruningAllocator(SparsityAllocator):
    name = "unipruning"
    description = "UniPruning's controller: mirror descent shares one keep budget by each layer's saliency error curve."
    Config = UniPruningControllerConfig
    needs_dense_pass = True
    required_stats = frozenset({STAT_SQ_NORM})

    def __init__(self, config=None):
        super().__init__(config)
        self.curves: dict[int, object] = {}  # layer -> error curve (torch float64 [grid + 1])
        self.last = None  # the MirrorDescentResult of the latest allocate (diagnostics, tests)

    def observe_layer(self, index, weights, stats):
        import torch

        from .maths import error_curve

        curves = [error_curve(w, stats[name].sq_norm, self.config.grid) for name, w in weights.items()
                  if name in stats and stats[name].sq_norm is not None]
        self.curves[index] = torch.stack(curves).mean(0) if curves else torch.zeros(self.config.grid + 1, dtype=torch.float64)

    def allocate(self, target, info):
        import torch

        from truthprune import UserError

        from .maths import mirror_descent

        if sorted(self.curves) != list(range(info.num_layers)):
            raise UserError("allocator 'unipruning' needs its dense pre-pass over every layer (run it through the engine)")
        curves = torch.stack([self.curves[i] for i in range(info.num_layers)])
        self.last = mirror_descent(curves, info.params_per_layer, target, self.config.delta, self.config.iterations,
                                   self.config.eta)
        return self.last.sparsities

    def diagnostics(self):
        import torch

        from .maths import curve_value

        if self.last is None:
            return {}
        curves = torch.stack([self.curves[i] for i in sorted(self.curves)])
        return {"unipruning_layer_error": [float(x) for x in curve_value(curves, torch.tensor(self.last.sparsities))]}


@hookimpl
def register_pruners(register):
    register(UniPruningPruner)


@hookimpl
def register_allocators(register):
    register(UniPruningAllocator)
