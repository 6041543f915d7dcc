"""The whole-model hook of pruners that set ``uses_model`` (see :meth:`truthprune.Pruner.prepare`).

Why: a layer-local engine gives each linear only statistics of its own inputs, but some scores
need a backward pass through every layer to the model's output (LRP relevance, gradient
saliency). Such a pruner gets the dense model once, before the first layer is pruned, and hands
back per-linear values that the engine delivers in ``LinearStats.extra`` exactly like a
block-aware pruner's ``begin_block`` extras. Only a model held in memory can serve it: the offload
mode refuses these pruners at plan time.
"""

from __future__ import annotations

from typing import Any

from ...errors import UserError
from ...plugin import contracts
from ...plugin.interfaces import CalibrationSamples, LinearStats, Pruner


def prepare_extras(pruner: Pruner, model: Any, calibration: CalibrationSamples, linears: dict[int, dict[str, Any]],
                   device: Any, batch_size: int, quiet: bool, resident: bool) -> dict[int, dict[str, dict[str, Any]]]:
    """Call ``pruner.prepare`` (``uses_model`` pruners only) and check its answer; {} otherwise."""
    if not pruner.uses_model:
        return {}
    if not resident:
        raise UserError(f"pruner {pruner.name!r} scores weights with a pass through the whole model, which offload mode "
                        "never holds in memory; prune without --offload")
    context = {"device": device, "batch_size": batch_size, "quiet": quiet, "linears": linears}
    return contracts.check_model_extras(pruner, pruner.prepare(model, calibration, context), linears)


def with_model_extras(stats: dict[str, LinearStats], linears: dict[str, Any], extras: dict[str, dict[str, Any]]) -> dict[str, LinearStats]:
    """Merge one layer's ``prepare`` extras into its linears' statistics (creating empty ones)."""
    if not extras:
        return stats
    out = dict(stats)
    for name in linears:
        st = out.get(name) or LinearStats(n_tokens=0)
        st.extra.update(extras.get(name, {}))
        out[name] = st
    return out
