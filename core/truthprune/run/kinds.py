"""The kinds of pruner a run knows, and the one place that tells them apart.

A mask pruner (:class:`truthprune.Pruner`) goes through the layer-by-layer engine: an allocator,
N:M patterns, a quantizer, bias correction, offload. A structured pruner
(:class:`truthprune.StructuredPruner`) removes whole units of the whole model in memory, at one
width, and rewrites the config. Each kind brings its plan-time check and its prune step; the run
asks :func:`kind_of` once, in :func:`truthprune.run.pipeline.plan_run`, and keeps the answer in
``RunPlan.kind``, so no other module switches on the pruner's type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..pruning.structured import check_structured_plan
from . import stages


@dataclass(frozen=True)
class PrunerKind:
    """What a run does with one kind of pruner."""

    name: str
    check_plan: Callable[[Any, Any], None]  # (run config, pruner): refuse what this kind cannot do, before loading
    prune: Callable[[Any, bool, Any], Any]  # (run state, quiet, quantized store) -> PruneReport
    whole_model: bool  # needs the whole model in memory: no --offload, no --activations-dir


def _check_mask_plan(config: Any, pruner: Any) -> None:  # noqa: ARG001 - the same signature as every kind's check
    if config.bias_correction:
        from ..pruning.engine.bias import check_bias_correction  # the engine imports torch: only when asked

        check_bias_correction(config)


MASKS = PrunerKind("masks", _check_mask_plan, stages.prune_masks, whole_model=False)
UNITS = PrunerKind("units", check_structured_plan, stages.prune_units, whole_model=True)


def kind_of(pruner: Any) -> PrunerKind:
    """The kind of ``pruner`` (an instance or a class)."""
    return UNITS if getattr(pruner, "structured", False) else MASKS


__all__ = ["MASKS", "UNITS", "PrunerKind", "kind_of"]
