"""Registration and the thin ``truthaware`` pruner class. No torch at module level: the CLI
imports this module to list plugins.

Default build sets are the TiU ``cities`` and ``sp_en_trans`` pairs: the retention benchmark
scores probes on other topics only, so what the objective sees never overlaps what it is judged
on (tests/test_leak_free.py checks it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from truthprune import STAT_CROSS, STAT_GRAM, STAT_SUM, PluginConfig, Pruner, PruneResult, UserError, hookimpl

DEFAULT_BUILD_SETS = ("cities", "neg_cities", "sp_en_trans", "neg_sp_en_trans")


class TruthAwareConfig(PluginConfig):
    gamma: float = Field(1.0, ge=0)
    """Weight of the truth-statement inputs' Hessian, relative to the trace of the text Hessian."""
    delta: float = Field(1.0, ge=0)
    """Weight of the true-minus-false mean directions, relative to the trace of the text Hessian."""
    tokens: Literal["last", "all"] = "last"
    """Which statement tokens enter the truth terms: the last one (where probes read) or all."""
    solver: Literal["obs", "wanda"] = "obs"
    """obs: SparseGPT reconstruction under the combined H; wanda: |W| * sqrt(diag H), no update."""
    build_sets: list[str] = Field(default_factory=lambda: list(DEFAULT_BUILD_SETS))
    """Statement sets (names in --truth-data, or generated) the objective is built from."""
    per_set: int = Field(300, ge=2)
    """At most this many statements per build set (class-balanced, seeded)."""
    blocksize: int = Field(128, ge=1)
    percdamp: float = Field(0.01, ge=0)
    target: Literal["pruned", "dense"] = "pruned"
    """pruned: fit each layer on the pruned model's inputs; dense: fit the dense model's outputs
    (asymmetric OBS on text, statements and directions; needs solver=obs)."""
    control: Literal["none", "shuffled_labels", "nonfactual"] = "none"
    """Controls: shuffled_labels permutes the true/false labels of the sampled statements (same
    statements, random directions); nonfactual replaces each statement by a generated non-factual
    sentence with the same token count and label (same form, no truth content)."""

    @model_validator(mode="after")
    def _dense_needs_obs(self):
        if self.target == "dense" and self.solver != "obs":
            raise ValueError("target=dense reconstructs weights, which solver=wanda never does; use solver=obs")
        return self


class TruthAwarePruner(Pruner):
    name = "truthaware"
    description = "Statement-calibrated OBS: SparseGPT under H + gamma*H_statements + delta*true-false directions (the name is historical: see docs/methods.md)."
    Config = TruthAwareConfig
    required_stats = frozenset({STAT_GRAM, STAT_SUM})

    def __init__(self, config=None):
        super().__init__(config)
        if self.config.target == "dense":
            self.required_stats = frozenset({STAT_GRAM, STAT_SUM, STAT_CROSS})

    def check(self, context):
        """Before the model loads: the build sets exist in --truth-data (or the generated sets)."""
        if self.config.gamma == 0 and self.config.delta == 0:
            return
        from pathlib import Path

        if context.truth_data is not None:
            names = {p.stem for p in Path(context.truth_data).glob("*.csv")}
            if not names.intersection(self.config.build_sets):
                raise UserError(
                    f"truthaware: none of its build sets ({', '.join(self.config.build_sets)}) is in --truth-data "
                    f"{context.truth_data}; pass --pruner-opt build_sets=[...] naming sets that are there"
                )

    def auxiliary_calibration(self, context):
        from .streams import resolve_sets, statement_streams

        cfg = self.config
        if cfg.gamma == 0 and cfg.delta == 0:
            return {}
        sets = resolve_sets(context.truth_data, cfg.build_sets, context.seed)
        return statement_streams(context.tokenizer, sets, cfg.per_set, context.seed, cfg.tokens == "last", context.chat_template,
                                 control=cfg.control)

    def prune(self, weight, stats, target):
        import torch

        from truthprune import mask_from_scores

        from .objective import combined_cross, combined_hessian, diagonal_scores

        cfg = self.config
        h = combined_hessian(stats, cfg.gamma, cfg.delta, torch.float64)
        if cfg.solver == "wanda":
            return PruneResult(mask=mask_from_scores(diagonal_scores(weight, h), target))
        try:
            from truthprune_sparsegpt import FactorCache, dense_target_weight, obs_prune
        except ImportError:  # pragma: no cover - the distribution depends on it
            raise UserError("truthaware's obs solver needs truthprune-sparsegpt: pip install ./plugins/pruners/truthprune-sparsegpt") from None
        if not hasattr(self, "_factors"):  # q/k/v (gate/up) share H: factorise it once
            self._factors = FactorCache()
        start = weight
        if cfg.target == "dense":
            start = dense_target_weight(weight, h, combined_cross(stats, cfg.gamma, cfg.delta, torch.float64), cfg.percdamp)
        new_weight, mask = obs_prune(start, h, target, blocksize=cfg.blocksize, percdamp=cfg.percdamp,
                                     factor=self._factors.get(h, cfg.percdamp))
        return PruneResult(mask=mask, weight=new_weight.to(weight.dtype))


@hookimpl
def register_pruners(register):
    register(TruthAwarePruner)
