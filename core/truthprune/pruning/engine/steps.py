"""The steps both engine loops share (the sequential one, :mod:`.sequential`, and the
dense-statistics one, :mod:`.dense_stats`): allocate the layers' sparsities, prune one layer's
linears, and sum the results up in the :class:`PruneReport`.

Why a module of its own: each loop imports these; neither loop imports the other's internals.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ...plugin import contracts
from ...plugin.interfaces import LayerInfo, LinearStats, Pruner, SparsityAllocator, SparsityTarget
from ..quantization import quantize_linears
from .distributed import DataParallel

log = logging.getLogger("truthprune.pruning.engine.sequential")


@dataclass
class LayerResult:
    index: int
    target: float
    achieved: float
    linears: dict[str, float]
    params: int


@dataclass
class PruneReport:
    """What the engine did: allocation, achieved sparsity per layer/linear and overall, timings."""

    target: float
    nm: tuple[int, int] | None
    allocation: list[float]
    layers: list[LayerResult] = field(default_factory=list)
    overall: float = 0.0
    dense_pass_s: float = 0.0
    prune_pass_s: float = 0.0
    phase_s: dict[str, float] = field(default_factory=dict)  # statistics / masks / propagation time
    diagnostics: dict[str, list[float]] = field(default_factory=dict)
    quantization: dict[str, Any] | None = None  # the quantizer's description + relative weight change per layer
    bias_correction: dict[str, Any] | None = None  # --bias-correction: config flags set, linears corrected, shift per layer
    structure: dict[str, Any] | None = None  # structured pruning: kept widths, parameter counts (truthprune.pruning.structured)
    statistics_reused: bool = False  # dense-statistics pruners: an earlier run's calibration pass was reused (engine.dense_stats)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_allocation(allocation: Any, n_layers: int, allocator: SparsityAllocator) -> list[float]:
    """The allocator's answer as floats; a wrong length or a value outside [0, 1) is the
    allocator's bug (PluginContractError), since the target itself was validated before."""
    return contracts.check_allocation(allocator, allocation, n_layers)


def prune_linears(linears, stats: dict[str, LinearStats], pruner: Pruner, target: SparsityTarget, dp: DataParallel) -> dict[str, float]:
    achieved = {}
    for name, lin in linears.items():
        st = stats.get(name) or LinearStats(n_tokens=0)
        w = lin.weight.data
        result = pruner.prune(w, st, target)
        contracts.check_prune_result(pruner, name, w, result)  # e.g. a [in] mask would broadcast over rows
        if result.weight is not None:
            w.copy_(result.weight.to(w.dtype))
        w.masked_fill_(result.mask.to(w.device), 0)
        dp.broadcast_(w)
        achieved[name] = float((w == 0).sum().item()) / w.numel()
    return achieved


def allocate(allocator: SparsityAllocator, sparsity: float, nm, params: list[int], truth_profile, extras, report: PruneReport) -> list[float]:
    """The per-layer sparsities (uniform n/m for N:M), checked, recorded in ``report``."""
    info = LayerInfo(num_layers=len(params), params_per_layer=params, truth_profile=truth_profile, extras=dict(extras or {}))
    allocation = [float(nm[0] / nm[1])] * len(params) if nm else check_allocation(allocator.allocate(sparsity, info), len(params), allocator)
    report.allocation = allocation
    report.diagnostics = allocator.diagnostics()
    log.info("allocation (%s): %s", allocator.name, ", ".join(f"{s:.3f}" for s in allocation))
    return allocation


def finish(report: PruneReport, params: list[int], sparsity: float) -> PruneReport:
    report.overall = sum(r.achieved * r.params for r in report.layers) / sum(params)
    log.info("achieved overall sparsity %.4f (target %.4f)", report.overall, sparsity)
    return report


def quantize_layer(i: int, linears, stats: dict[str, LinearStats], quantizer: Any, quant_store: Any, dp: DataParallel,
                   report: PruneReport, phase: dict[str, float]) -> None:
    """Quantize layer ``i``'s just-pruned linears (pruned zeros are the quantizer's mask: they stay
    zero), keep the codes in ``quant_store`` and record the relative weight change."""
    t = time.perf_counter()
    change = quantize_linears(linears, stats, quantizer, dp.broadcast_, quant_store.sink(i) if quant_store is not None else None)
    report.quantization["layer_weight_change"].append(change)
    phase["quantize"] += time.perf_counter() - t


def record_layer(i: int, linears, achieved: dict[str, float], allocation: list[float], params: list[int], source: Any,
                 report: PruneReport, phase: dict[str, float]) -> None:
    """Record layer ``i``'s achieved sparsity, then hand the pruned layer back to its source (in
    memory: nothing; offload: written to disk)."""
    zeros = sum(achieved[n] * linears[n].weight.numel() for n in linears)
    report.layers.append(LayerResult(i, allocation[i], zeros / params[i], achieved, params[i]))
    t = time.perf_counter()
    source.close(i, pruned=True)
    phase["store"] += time.perf_counter() - t
