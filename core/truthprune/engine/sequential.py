"""The one sequential engine every pruner and allocator runs through.

Layer by layer (reference section 4): the inputs of decoder layer 0 are captured for all
calibration samples; for each layer a statistics pass runs the *unpruned* layer with hooks on
its linears, the pruner chooses masks at that layer's sparsity, the masks are applied, and the
pruned layer is run again to produce the next layer's inputs. Allocators that need activations
get a dense pre-pass first (``needs_dense_pass``), where statistics and propagation share one
pass because nothing is pruned.

Calibration samples go through a layer in mini-batches; activations are kept on ``storage``
(CPU by default) and only the current layer's batch is moved to the compute device.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..errors import UserError
from ..interfaces import CalibrationSamples, LayerInfo, Pruner, SparsityAllocator, SparsityTarget
from ..models.adapter import decoder_layers, prunable_linears
from .capture import LayerBatch, batch_kwargs_to, capture_layer0_inputs
from .progress import LayerProgress
from .stats import StatsCollector, layer_output

log = logging.getLogger(__name__)


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
    diagnostics: dict[str, list[float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _run_layer(layer, batches: list[LayerBatch], device, collector: StatsCollector | None, keep: bool):
    """Run ``layer`` over all batches; return new batches (outputs) if ``keep``."""
    outs = []
    for b in batches:
        if collector is not None:
            collector.token_mask = b.token_mask
        h = b.hidden.to(device)
        out = layer_output(layer(h, **batch_kwargs_to(b.kwargs, device)))
        if keep:
            outs.append(LayerBatch(hidden=out.to(b.hidden.device), kwargs=b.kwargs, token_mask=b.token_mask))
    return outs


@torch.no_grad()
def _dense_pass(model, layers, calib, allocator: SparsityAllocator, batch_size, storage, progress) -> None:
    device = next(model.parameters()).device
    batches = capture_layer0_inputs(model, layers, calib.input_ids, calib.attention_mask, batch_size, storage)
    with progress.stage("dense pre-pass", len(layers)) as step:
        for i, layer in enumerate(layers):
            linears = prunable_linears(layer)
            collector = StatsCollector(linears, allocator.required_stats)
            with collector.attached():
                batches = _run_layer(layer, batches, device, collector, keep=True)
            allocator.observe_layer(i, {n: m.weight for n, m in linears.items()}, collector.stats)
            step(len(calib))


def _check_allocation(allocation: list[float], n_layers: int, name: str) -> None:
    if len(allocation) != n_layers:
        raise RuntimeError(f"allocator {name!r} returned {len(allocation)} sparsities for {n_layers} layers")
    for i, s in enumerate(allocation):
        if not 0.0 <= s < 1.0:
            raise UserError(
                f"allocator {name!r} gave layer {i} sparsity {s:.4f}, outside [0, 1); lower --sparsity or the allocator's spread"
            )


@torch.no_grad()
def prune_model(
    model: Any,
    calibration: CalibrationSamples,
    pruner: Pruner,
    allocator: SparsityAllocator,
    sparsity: float,
    nm: tuple[int, int] | None = None,
    batch_size: int = 8,
    truth_profile: list[float] | None = None,
    extras: dict[str, Any] | None = None,
    storage: str = "cpu",
    quiet: bool = False,
) -> PruneReport:
    """Prune ``model`` in place and report what was done."""
    if batch_size < 1:
        raise UserError(f"--batch-size {batch_size} must be at least 1")
    SparsityTarget(sparsity, nm)  # validates
    if nm is not None and allocator.name != "uniform":
        raise UserError(f"N:M patterns are uniform by construction; drop --nm or use --allocator uniform (got {allocator.name!r})")
    layers = decoder_layers(model)
    n_layers = len(layers)
    device = next(model.parameters()).device
    progress = LayerProgress(quiet=quiet)
    report = PruneReport(target=sparsity, nm=nm, allocation=[])

    t0 = time.perf_counter()
    if allocator.needs_dense_pass:
        _dense_pass(model, layers, calibration, allocator, batch_size, storage, progress)
    report.dense_pass_s = time.perf_counter() - t0

    params = [sum(m.weight.numel() for m in prunable_linears(layer).values()) for layer in layers]
    info = LayerInfo(num_layers=n_layers, params_per_layer=params, truth_profile=truth_profile, extras=dict(extras or {}))
    allocation = [float(nm[0] / nm[1])] * n_layers if nm else [float(s) for s in allocator.allocate(sparsity, info)]
    _check_allocation(allocation, n_layers, allocator.name)
    report.allocation = allocation
    report.diagnostics = allocator.diagnostics()
    log.info("allocation (%s): %s", allocator.name, ", ".join(f"{s:.3f}" for s in allocation))

    t1 = time.perf_counter()
    batches = capture_layer0_inputs(model, layers, calibration.input_ids, calibration.attention_mask, batch_size, storage)
    with progress.stage(f"pruning ({pruner.name})", n_layers) as step:
        for i, layer in enumerate(layers):
            linears = prunable_linears(layer)
            collector = StatsCollector(linears, pruner.required_stats)
            if pruner.required_stats:
                with collector.attached():
                    _run_layer(layer, batches, device, collector, keep=False)
            target = SparsityTarget(allocation[i], nm)
            achieved = {}
            for name, lin in linears.items():
                result = pruner.prune(lin.weight.data, collector.stats[name], target)
                if result.weight is not None:
                    lin.weight.data.copy_(result.weight.to(lin.weight.dtype))
                lin.weight.data[result.mask.to(lin.weight.device)] = 0
                achieved[name] = float((lin.weight.data == 0).float().mean().item())
            del collector
            batches = _run_layer(layer, batches, device, None, keep=True)
            zeros = sum(achieved[n] * linears[n].weight.numel() for n in linears)
            report.layers.append(LayerResult(i, allocation[i], zeros / params[i], achieved, params[i]))
            step(len(calibration))
    report.prune_pass_s = time.perf_counter() - t1
    report.overall = sum(r.achieved * r.params for r in report.layers) / sum(params)
    log.info("achieved overall sparsity %.4f (target %.4f)", report.overall, sparsity)
    return report
