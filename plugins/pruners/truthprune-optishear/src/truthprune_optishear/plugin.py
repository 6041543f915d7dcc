"""Registration: the ``optishear`` pruner (the meta metric), the ``optishear`` allocator (layer
sparsities from a search or any saved allocation) and the ``truthprune optishear search`` command.

No torch at module level: the CLI imports this module to list plugins. A result file named with
``from=`` is read when the options are validated, i.e. at plan time, before any model loads.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator
from truthprune import STAT_SQ_NORM, LayerInfo, PluginConfig, Pruner, PruneResult, SparsityAllocator, UserError, hookimpl

from .results import SPARSITY_KEY, read_metric, read_sparsities


class OptiShearPrunerConfig(PluginConfig):
    beta: float = Field(1.0, ge=0)
    """Exponent of the input norm ||X_j|| (1 with gamma 0: Wanda's ranking; 0: magnitude)."""
    gamma: float = Field(0.0, ge=0)
    """Exponent of the inverse column norm sum_i |W_ij| (RIA's relative-importance term)."""
    from_: str | None = Field(None, alias="from")
    """A finished search's --state file: take beta and gamma from its best candidate."""

    @model_validator(mode="after")
    def _from_file(self):
        if self.from_ is not None:
            if "beta" in self.model_fields_set or "gamma" in self.model_fields_set:
                raise ValueError("give either from=FILE or beta/gamma, not both")
            beta, gamma = read_metric(self.from_)
            object.__setattr__(self, "beta", beta)
            object.__setattr__(self, "gamma", gamma)
        return self


class OptiShearPruner(Pruner):
    name = "optishear"
    description = "OptiShear meta metric |W| * ||X||^beta / colsum|W|^gamma (searched by `truthprune optishear search`)."
    Config = OptiShearPrunerConfig
    required_stats = frozenset({STAT_SQ_NORM})

    def prune(self, weight, stats, target):
        from truthprune import mask_from_scores

        from .metric import meta_scores

        if stats.sq_norm is None:
            raise UserError("optishear needs the sq_norm statistic of the calibration data (is --nsamples 0?)")
        return PruneResult(mask=mask_from_scores(meta_scores(weight, stats.sq_norm, self.config.beta, self.config.gamma), target))


class OptiShearAllocatorConfig(PluginConfig):
    from_: str | None = Field(None, alias="from")
    """A search's --state file (its optishear_sparsity) or `truthprune allocate --json` output."""
    sparsity: list[float] | None = None
    """Per-layer sparsities given directly (the search passes its candidates this way)."""

    @model_validator(mode="after")
    def _from_file(self):
        if self.from_ is not None and self.sparsity is not None:
            raise ValueError("give either from=FILE or sparsity=[...], not both")
        if self.from_ is not None:
            object.__setattr__(self, "sparsity", read_sparsities(self.from_))
        return self


class OptiShearAllocator(SparsityAllocator):
    name = "optishear"
    description = "Layer sparsities found by an OptiShear search (or any saved allocation), shifted to the run's target."
    Config = OptiShearAllocatorConfig
    layer_signals = (SPARSITY_KEY,)  # `truthprune allocate --stats SEARCH.json` reads them from the file

    def check(self) -> None:
        """A run needs a result (`truthprune allocate` passes the file's signal instead)."""
        if self.config.sparsity is None:
            raise UserError("allocator 'optishear' needs a result: pass --allocator-opt from=FILE (a search's --state file)")

    def allocate(self, target: float, info: LayerInfo) -> list[float]:
        """The saved profile shifted so that its parameter-weighted mean is ``target``:
        s_l = saved_l + target - sum_l w_l saved_l (the saved spread is kept)."""
        saved = self.config.sparsity if self.config.sparsity is not None else (info.extras or {}).get(SPARSITY_KEY)
        if saved is None:
            raise UserError("allocator 'optishear' needs a result: pass --allocator-opt from=FILE (a search's --state file)")
        if len(saved) != info.num_layers:
            raise UserError(f"allocator 'optishear': the saved allocation has {len(saved)} layers but the model has "
                            f"{info.num_layers}; search on this model (truthprune optishear search)")
        params = info.params_per_layer or [1] * info.num_layers
        total = float(sum(params))
        shift = target - sum(s * p for s, p in zip(saved, params)) / total
        out = [float(s + shift) for s in saved]
        bad = next((i for i, s in enumerate(out) if not 0.0 <= s < 1.0), None)
        if bad is not None:
            raise UserError(f"allocator 'optishear': layer {bad} would get sparsity {out[bad]:.4f} at target {target}, outside "
                            "[0, 1); use a target closer to the one the search ran at")
        self._used = out
        return out

    def diagnostics(self) -> dict[str, list[float]]:
        return {SPARSITY_KEY: list(getattr(self, "_used", []))} if getattr(self, "_used", None) else {}


@hookimpl
def register_pruners(register):
    register(OptiShearPruner)


@hookimpl
def register_allocators(register):
    register(OptiShearAllocator)


@hookimpl
def register_commands(app: Any):
    from .search_cmd import add_search_command

    add_search_command(app)
