"""The one sequential engine every pruner and allocator runs through.

Layer by layer (reference section 4): the inputs of decoder layer 0 are captured for all
calibration samples; for each layer a statistics pass runs the *unpruned* layer with hooks on
its linears, the pruner chooses masks at that layer's sparsity, the masks are applied, and the
pruned layer is run again to produce the next layer's inputs. Allocators that need activations
get a dense pre-pass first (``needs_dense_pass``), where statistics and propagation share one
pass because nothing is pruned.

Calibration samples go through a layer in mini-batches; activations are kept on ``storage``
(CPU by default) and only the current layer's batch is moved to the compute device.

Work that cannot change the result is skipped (see docs/performance.md for the measurements):
the statistics pass stops each layer once every linear has reported its input (the last linear
and the residual add are never needed for statistics); the last layer's outputs feed nothing,
so it is not propagated; a pruner that needs no statistics (magnitude) runs no forward pass at
all. Everything runs under ``torch.inference_mode``.

Where the layers live is abstracted by a *layer source*: :class:`ResidentLayers` (the model is
in memory, pruned in place) or the offload source of :mod:`truthprune.pruning.engine.offload` (one
layer materialised from the checkpoint at a time, written out after pruning).
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch

from ...plugin import contracts
from ...errors import UserError
from ...plugin.interfaces import CalibrationSamples, LayerInfo, LinearStats, Pruner, SparsityAllocator, SparsityTarget
from ...models.adapter import decoder_layers, prunable_linears
from ..quantization import quantize_linears
from .block import BlockContext, begin_block, end_block
from .capture import LayerBatch, batch_kwargs_to, capture_layer0_inputs, use_layer_kwargs
from .distributed import DataParallel, data_parallel
from .memory import ModelShape, available_memory, check_memory, estimate_memory
from .progress import LayerProgress
from .stats import StatsCollector, StopLayer, layer_output

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
    phase_s: dict[str, float] = field(default_factory=dict)  # statistics / masks / propagation time
    diagnostics: dict[str, list[float]] = field(default_factory=dict)
    quantization: dict[str, Any] | None = None  # the quantizer's description + relative weight change per layer
    structure: dict[str, Any] | None = None  # structured pruning: kept widths, parameter counts (truthprune.pruning.structured)
    statistics_reused: bool = False  # dense-statistics pruners: an earlier run's calibration pass was reused (engine.dense)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LayerSource(Protocol):
    """Hands out decoder layer ``i`` on the compute device and takes it back afterwards."""

    layers: Any  # the model's ModuleList (parameters may sit on the meta device)

    def open(self, index: int) -> torch.nn.Module: ...

    def close(self, index: int, pruned: bool) -> None: ...

    def outer(self) -> AbstractContextManager:
        """Context in which the modules before layer 0 (embeddings) are usable, for capturing."""
        ...


class ResidentLayers:
    """The whole model is in memory; layers are pruned in place."""

    def __init__(self, layers: Any):
        self.layers = layers

    def open(self, index: int) -> torch.nn.Module:
        return self.layers[index]

    def close(self, index: int, pruned: bool) -> None:
        pass

    def outer(self) -> AbstractContextManager:
        return nullcontext()


@dataclass
class EngineSetup:
    """Where and how the passes run (shared by the resident and the offload modes)."""

    device: torch.device
    batch_size: int = 8
    storage: str = "cpu"
    quiet: bool = False
    dp: DataParallel = field(default_factory=DataParallel)
    activations_dir: str | None = None  # memory-map layer inputs/outputs from files here
    selection: Any = None  # which weights of a block are pruned (models.adapter.TargetSelection; None: defaults)

    def keep(self, hidden: torch.Tensor) -> torch.Tensor:
        """Store one batch of hidden states off the compute device (in RAM or memory-mapped)."""
        if self.activations_dir is None:
            return hidden.to(self.storage)
        return mapped_copy(hidden, self.activations_dir)


def mapped_copy(t: torch.Tensor, directory: str) -> torch.Tensor:
    """A copy of ``t`` backed by a file-mapped buffer; the file is unlinked at once, so the
    space returns to the disk when the tensor is freed and nothing is left behind on a crash."""
    import os
    import tempfile

    fd, name = tempfile.mkstemp(prefix="acts-", suffix=".bin", dir=directory)
    os.close(fd)
    try:
        out = torch.from_file(name, shared=True, size=t.numel(), dtype=t.dtype).view(t.shape)
    finally:
        os.unlink(name)
    out.copy_(t)
    return out


def _run_layer(layer, batches: list[LayerBatch], setup: EngineSetup, collector: StatsCollector | None, keep: bool):
    """Run ``layer`` over all batches; return the output batches if ``keep``.

    Without ``keep`` (a pure statistics pass) the collector may stop the layer early, once the
    first batch has shown that every linear runs exactly once per forward.
    """
    outs = []
    for j, b in enumerate(batches):
        if collector is not None:
            collector.begin_batch(b.token_mask)
        try:
            out = layer_output(layer(b.hidden.to(setup.device), **batch_kwargs_to(b.kwargs, setup.device)))
        except StopLayer:
            continue
        if keep:
            outs.append(LayerBatch(hidden=setup.keep(out), kwargs=b.kwargs, token_mask=b.token_mask, index=b.index,
                                   layer_kwargs=b.layer_kwargs))
        elif collector is not None and j == 0:
            collector.early_stop = collector.single_call_per_linear()
    return outs


def _statistics(layer, batches, setup: EngineSetup, required: frozenset[str], keep: bool):
    """One pass with statistics hooks; returns (collector with rank-summed stats, outputs)."""
    linears = prunable_linears(layer, setup.selection)
    collector = StatsCollector(linears, required)
    if not required and not keep:
        return linears, collector, []
    with collector.attached():
        outs = _run_layer(layer, batches, setup, collector, keep=keep)
    collector.reduce(setup.dp.all_reduce())
    return linears, collector, outs


def stream_batch_size(batch_size: int, main_seqlen: int, stream_seqlen: int) -> int:
    """Sequences per batch for an auxiliary stream: as many *tokens* per batch as the main data.

    Why: streams of short sequences (statements of ~20 tokens) in batches of ``batch_size``
    would cost hundreds of tiny layer calls per layer, each dominated by fixed overhead.
    """
    return max(batch_size, batch_size * main_seqlen // max(stream_seqlen, 1))


def _capture(model, calib: CalibrationSamples, setup: EngineSetup, source: LayerSource, batch_size: int | None = None) -> list[LayerBatch]:
    batch_size = batch_size or setup.batch_size
    n_batches = -(-len(calib) // batch_size)
    with source.outer():
        batches = capture_layer0_inputs(
            model, source.layers, calib.input_ids, calib.attention_mask, batch_size, setup.storage,
            device=setup.device, batch_indices=setup.dp.my_batches(n_batches), stat_mask=calib.stat_mask,
        )
    if setup.activations_dir is not None:
        for b in batches:
            b.hidden = setup.keep(b.hidden)
    return batches


def _dense_pass(model, source: LayerSource, calib, allocator: SparsityAllocator, setup: EngineSetup, progress) -> None:
    layers = source.layers
    batches = _capture(model, calib, setup, source)
    with progress.stage("dense pre-pass", len(layers)) as step:
        for i in range(len(layers)):
            layer = source.open(i)
            use_layer_kwargs(batches, i)
            keep = i < len(layers) - 1
            linears, collector, batches = _statistics(layer, batches, setup, allocator.required_stats, keep)
            allocator.observe_layer(i, {n: m.weight for n, m in linears.items()}, collector.stats)
            source.close(i, pruned=False)
            step(len(calib))


def _check_allocation(allocation: Any, n_layers: int, allocator: SparsityAllocator) -> list[float]:
    """The allocator's answer as floats; a wrong length or a value outside [0, 1) is the
    allocator's bug (PluginContractError), since the target itself was validated before."""
    return contracts.check_allocation(allocator, allocation, n_layers)


def _stream_statistics(layer, streams: dict[str, list[LayerBatch]], setup: EngineSetup, required: frozenset[str]):
    """Statistics of every auxiliary stream at this (still unpruned) layer, keyed by stream."""
    out = {}
    for key, batches in streams.items():
        _, collector, _ = _statistics(layer, batches, setup, required, keep=False)
        out[key] = collector.stats
    return out


def _with_streams(stats: dict[str, LinearStats], streams: dict[str, dict[str, LinearStats]]) -> dict[str, LinearStats]:
    for name, st in stats.items():
        st.streams = {key: per_linear[name] for key, per_linear in streams.items()}
    return stats


def _prune_linears(linears, stats: dict[str, LinearStats], pruner: Pruner, target: SparsityTarget, dp: DataParallel) -> dict[str, float]:
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


def run_engine(
    model: Any,
    source: LayerSource,
    calibration: CalibrationSamples,
    pruner: Pruner,
    allocator: SparsityAllocator,
    sparsity: float,
    setup: EngineSetup,
    nm: tuple[int, int] | None = None,
    truth_profile: list[float] | None = None,
    extras: dict[str, Any] | None = None,
    quantizer: Any = None,
    quant_store: Any = None,
    dense_cache: Any = None,
) -> PruneReport:
    """The layer loop shared by :func:`prune_model` and the offload mode.

    With a ``quantizer`` every linear is quantized right after it is pruned, in the same pass
    (before propagation, so later layers calibrate on the pruned *and* quantized outputs);
    ``quant_store`` (a :class:`truthprune.pruning.quantization.QuantizedLinears`) keeps the codes.
    A pruner with ``dense_statistics`` runs through :func:`truthprune.pruning.engine.dense.run_dense_engine`
    instead (one dense calibration pass, reusable through ``dense_cache``).
    """
    if setup.batch_size < 1:
        raise UserError(f"batch_size {setup.batch_size} must be at least 1")
    SparsityTarget(sparsity, nm)  # validates
    if nm is not None and allocator.name != "uniform":
        raise UserError(f"N:M patterns are uniform by construction; they cannot be combined with allocator {allocator.name!r}")
    layers = source.layers
    n_layers = len(layers)
    progress = LayerProgress(quiet=setup.quiet or not setup.dp.is_writer)
    report = PruneReport(target=sparsity, nm=nm, allocation=[])
    if getattr(pruner, "dense_statistics", False):
        from .dense import run_dense_engine

        return run_dense_engine(model, source, calibration, pruner, allocator, sparsity, setup, report, progress, nm=nm,
                                truth_profile=truth_profile, extras=extras, quantizer=quantizer, quant_store=quant_store,
                                cache=dense_cache)

    with torch.inference_mode():
        t0 = time.perf_counter()
        if allocator.needs_dense_pass:
            _dense_pass(model, source, calibration, allocator, setup, progress)
        report.dense_pass_s = time.perf_counter() - t0

    params = [sum(m.weight.numel() for m in prunable_linears(layer, setup.selection).values()) for layer in layers]
    allocation = _allocate(allocator, sparsity, nm, params, truth_profile, extras, report)

    required = pruner.required_stats | (quantizer.required_stats if quantizer is not None else frozenset())
    needs_data = bool(required) or pruner.uses_block  # without statistics no forward pass is needed
    if quantizer is not None:
        report.quantization = {**quantizer.describe(), "layer_weight_change": []}
    t1 = time.perf_counter()
    with torch.inference_mode():
        batches = _capture(model, calibration, setup, source) if needs_data else []
        main_len = int(calibration.input_ids.shape[1])
        streams = {
            k: _capture(model, s, setup, source, stream_batch_size(setup.batch_size, main_len, int(s.input_ids.shape[1])))
            for k, s in calibration.auxiliary.items()
        } if needs_data else {}
        with progress.stage(f"pruning ({pruner.name})", n_layers) as step:
            phase = dict.fromkeys(("load", "statistics", "masks", "quantize", "propagation", "store"), 0.0)
            for i in range(n_layers):
                t = time.perf_counter()
                layer = source.open(i)
                phase["load"] += time.perf_counter() - t
                for group in (batches, *streams.values()):  # layers of another type (Gemma) get their own mask/rotary
                    use_layer_kwargs(group, i)
                linears, stats = prunable_linears(layer, setup.selection), {}
                t = time.perf_counter()
                if needs_data:
                    linears, collector, dense = _statistics(layer, batches, setup, required, keep=pruner.uses_block)
                    stats = _with_streams(collector.stats, _stream_statistics(layer, streams, setup, pruner.required_stats))
                    del collector
                phase["statistics"] += time.perf_counter() - t
                t = time.perf_counter()
                target = SparsityTarget(allocation[i], nm)
                block = BlockContext(i, layer, linears, setup.device, batches, dense, setup.dp.all_reduce(),
                                     target=target) if pruner.uses_block else None
                if block is not None:
                    stats = begin_block(pruner, block, stats)
                achieved = _prune_linears(linears, stats, pruner, target, setup.dp)
                if block is not None:
                    achieved = end_block(pruner, block, setup.dp)
                    del block, dense
                phase["masks"] += time.perf_counter() - t
                if quantizer is not None:  # pruned zeros are the quantizer's mask: they stay zero
                    t = time.perf_counter()
                    change = quantize_linears(linears, stats, quantizer, setup.dp.broadcast_,
                                              quant_store.sink(i) if quant_store is not None else None)
                    report.quantization["layer_weight_change"].append(change)
                    phase["quantize"] += time.perf_counter() - t
                del stats
                t = time.perf_counter()
                if needs_data and i < n_layers - 1:
                    batches = _run_layer(layer, batches, setup, None, keep=True)
                    streams = {k: _run_layer(layer, b, setup, None, keep=True) for k, b in streams.items()}
                phase["propagation"] += time.perf_counter() - t
                zeros = sum(achieved[n] * linears[n].weight.numel() for n in linears)
                report.layers.append(LayerResult(i, allocation[i], zeros / params[i], achieved, params[i]))
                t = time.perf_counter()
                source.close(i, pruned=True)
                phase["store"] += time.perf_counter() - t
                step(len(calibration))
            report.phase_s = {k: round(v, 4) for k, v in phase.items()}
    report.prune_pass_s = time.perf_counter() - t1
    return _finish(report, params, sparsity)


def _allocate(allocator: SparsityAllocator, sparsity: float, nm, params: list[int], truth_profile, extras, report: PruneReport) -> list[float]:
    """The per-layer sparsities (uniform n/m for N:M), checked, recorded in ``report``."""
    info = LayerInfo(num_layers=len(params), params_per_layer=params, truth_profile=truth_profile, extras=dict(extras or {}))
    allocation = [float(nm[0] / nm[1])] * len(params) if nm else _check_allocation(allocator.allocate(sparsity, info), len(params), allocator)
    report.allocation = allocation
    report.diagnostics = allocator.diagnostics()
    log.info("allocation (%s): %s", allocator.name, ", ".join(f"{s:.3f}" for s in allocation))
    return allocation


def _finish(report: PruneReport, params: list[int], sparsity: float) -> PruneReport:
    report.overall = sum(r.achieved * r.params for r in report.layers) / sum(params)
    log.info("achieved overall sparsity %.4f (target %.4f)", report.overall, sparsity)
    return report


def check_calibration_memory(model: Any, calibration: CalibrationSamples, batch_size: int, dp: DataParallel, offload: bool) -> str:
    """Refuse (UserError) before starting when activations would not fit in available memory."""
    padded = not bool(calibration.attention_mask.bool().all())
    est = estimate_memory(
        ModelShape.from_config(model.config), len(calibration), int(calibration.input_ids.shape[1]), batch_size,
        act_bytes=torch.finfo(model.dtype).bits // 8 if model.dtype.is_floating_point else 4,
        offload=offload, padded=padded, world=dp.world,
    )
    line = check_memory(est, available_memory(), offload=offload, weights_resident=not offload)
    log.info("%s", line)
    return line


@dataclass(frozen=True)
class PruneOptions:
    """The keyword options :func:`prune_model` and :func:`~truthprune.pruning.engine.offload.prune_checkpoint`
    share (declared once): the N:M pattern, the mini-batch size, what an allocator may read (truth
    profile, extra per-layer signals), progress bars and which weights are pruned."""

    nm: tuple[int, int] | None = None
    batch_size: int = 8
    truth_profile: list[float] | None = None
    extras: dict[str, Any] | None = None
    quiet: bool = False
    selection: Any = None  # --targets/--ignore (models.adapter.TargetSelection); None: the defaults


def prune_model(
    model: Any,
    calibration: CalibrationSamples,
    pruner: Pruner,
    allocator: SparsityAllocator,
    sparsity: float,
    *,
    storage: str = "cpu",
    quantizer: Any = None,
    quant_store: Any = None,
    dense_cache: Any = None,
    **options: Any,
) -> PruneReport:
    """Prune (and, with ``quantizer``, quantize) ``model`` in place and report what was done;
    ``options`` are :class:`PruneOptions` fields (nm, batch_size, truth_profile, extras, quiet, selection).

    ``selection`` (:class:`truthprune.models.adapter.TargetSelection`, from ``--targets`` /
    ``--ignore``) chooses the pruned weights of each block; None: every weight matmul except MoE
    routers and shared-expert gates.

    Under ``torchrun`` (an initialised process group, see :func:`init_distributed`) each rank
    handles its share of the calibration batches; the statistics are summed across ranks, so
    every rank ends with the same pruned model. ``dense_cache`` (a :class:`truthprune.pruning.engine.dense.DenseCache`)
    lets a ``dense_statistics`` pruner reuse the statistics of an earlier prune of the same dense weights.
    """
    o = PruneOptions(**options)
    dp = data_parallel()
    setup = EngineSetup(device=next(model.parameters()).device, batch_size=o.batch_size, storage=storage, quiet=o.quiet, dp=dp,
                        selection=o.selection)
    if storage == "cpu":
        check_calibration_memory(model, calibration, o.batch_size, dp, offload=False)
    return run_engine(model, ResidentLayers(decoder_layers(model)), calibration, pruner, allocator, sparsity, setup,
                      nm=o.nm, truth_profile=o.truth_profile, extras=o.extras, quantizer=quantizer, quant_store=quant_store,
                      dense_cache=dense_cache)
