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
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from ...plugin import contracts
from ...errors import UserError
from ...plugin.pruning_inputs import KNOWN_STATS, STAT_CROSS, STAT_SUM
from ...plugin.interfaces import CalibrationSamples, Pruner, SparsityAllocator, SparsityTarget
from ...models.adapter import decoder_layers, prunable_linears
from .block import LayerBlock, begin_block, end_block
from .bias import BiasCorrection
from .capture import LayerBatch, use_layer_kwargs
from .dense import dense_copies, refuse_experts
from .passes import (_capture, _dense_pass, _pruned_means, _run_layer, _statistics, _stream_statistics, _with_streams,
                     execution_groups, stream_batch_size)
from .distributed import DataParallel, data_parallel
from .memory import ModelShape, StreamExtent, available_memory, check_memory, estimate_memory
from .prepare import prepare_extras, with_model_extras
from .progress import LayerProgress
from .steps import PruneReport, allocate, finish, prune_linears, quantize_layer, record_layer

log = logging.getLogger(__name__)


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


def _instance_stats(pruner: Pruner) -> frozenset[str]:
    """The pruner instance's ``required_stats`` (it may depend on options), checked like registration checks the class's."""
    required = pruner.required_stats
    if isinstance(required, str) or not all(isinstance(x, str) for x in required) or set(required) - KNOWN_STATS:
        raise contracts.violation(pruner, f"required_stats must name statistics the engine computes "
                                          f"({', '.join(sorted(KNOWN_STATS))}), got {required!r}")
    return frozenset(required)


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
    bias_correction: bool = False,
    dense_cache: Any = None,
) -> PruneReport:
    """The layer loop shared by :func:`prune_model` and the offload mode.

    With a ``quantizer`` every linear is quantized right after it is pruned, in the same pass
    (before propagation, so later layers calibrate on the pruned *and* quantized outputs);
    ``quant_store`` (a :class:`truthprune.pruning.quantization.QuantizedLinears`) keeps the codes.
    With ``bias_correction`` every pruned linear that has (or, through a config flag such as
    Llama's ``attention_bias``, can get) a bias receives the shift between the dense model's and
    the pruned model's mean output on the calibration tokens (:mod:`truthprune.pruning.engine.bias`).
    A pruner with ``dense_statistics`` runs through :func:`truthprune.pruning.engine.dense_stats.run_dense_engine`
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
        from .dense_stats import run_dense_engine

        if bias_correction:
            raise UserError(f"--bias-correction needs the pruned model's layer outputs, which pruner {pruner.name!r} never "
                            "computes (it prunes from dense statistics in one pass); drop --bias-correction")
        if getattr(pruner, "uses_model", False):
            raise contracts.violation(pruner, "a pruner cannot set both dense_statistics and uses_model: the dense-statistics "
                                              "pass has no prepare() step")
        if STAT_CROSS in _instance_stats(pruner):
            raise contracts.violation(pruner, "a dense-statistics pruner cannot ask for the cross statistic (pruned inputs x "
                                              "dense inputs): it never runs the pruned model")

        return run_dense_engine(model, source, calibration, pruner, allocator, sparsity, setup, report, progress, nm=nm,
                                truth_profile=truth_profile, extras=extras, quantizer=quantizer, quant_store=quant_store,
                                cache=dense_cache)

    with torch.inference_mode():
        t0 = time.perf_counter()
        if allocator.needs_dense_pass:
            _dense_pass(model, source, calibration, allocator, setup, progress)
        report.dense_pass_s = time.perf_counter() - t0

    params = [sum(m.weight.numel() for m in prunable_linears(layer, setup.selection).values()) for layer in layers]
    allocation = allocate(allocator, sparsity, nm, params, truth_profile, extras, report)

    pruner_stats = _instance_stats(pruner)
    required = pruner_stats | (quantizer.required_stats if quantizer is not None else frozenset())
    # dense-target streams: for the cross statistic, and for the dense output means of --bias-correction
    stream_dense = STAT_CROSS in pruner_stats
    main_dense = STAT_CROSS in required or bias_correction
    if main_dense:
        refuse_experts(layers, setup.selection, "--bias-correction" if bias_correction else f"pruner {pruner.name!r} (cross statistic)")
    block_sequential = STAT_CROSS in pruner_stats
    if block_sequential and pruner.uses_block:
        raise contracts.violation(pruner, "a block-aware pruner (uses_block) cannot ask for the cross statistic: the engine "
                                          "measures cross-statistic layers group by group, which begin_block/end_block do not follow")
    bias = BiasCorrection.start(model, layers, setup) if bias_correction else None
    if bias is not None:
        required = required | {STAT_SUM}  # the dense inputs' means (paired statistics)
        report.bias_correction = bias.summary()
    needs_data = bool(required) or pruner.uses_block  # without statistics no forward pass is needed
    if quantizer is not None:
        report.quantization = {**quantizer.describe(), "layer_weight_change": []}
    t1 = time.perf_counter()
    model_extras = prepare_extras(pruner, model, calibration, {i: prunable_linears(layer, setup.selection) for i, layer in enumerate(layers)},
                                  setup.device, setup.batch_size, setup.quiet, isinstance(source, ResidentLayers))
    with torch.inference_mode():
        batches = _capture(model, calibration, setup, source) if needs_data else []
        main_len = int(calibration.input_ids.shape[1])
        streams = {
            k: _capture(model, s, setup, source, stream_batch_size(setup.batch_size, main_len, int(s.input_ids.shape[1])))
            for k, s in calibration.auxiliary.items()
        } if needs_data else {}
        dense_batches = dense_copies(batches) if main_dense else None
        dense_streams = {k: dense_copies(b) for k, b in streams.items()} if stream_dense else None
        with progress.stage(f"pruning ({pruner.name})", n_layers) as step:
            phase = dict.fromkeys(("load", "statistics", "masks", "quantize", "bias", "propagation", "store"), 0.0)
            for i in range(n_layers):
                t = time.perf_counter()
                layer = source.open(i)
                phase["load"] += time.perf_counter() - t
                for group in (batches, *streams.values(), dense_batches or [], *(dense_streams or {}).values()):
                    use_layer_kwargs(group, i)  # layers of another type (Gemma) get their own mask/rotary
                linears, stats, achieved, targets = prunable_linears(layer, setup.selection), {}, {}, {}
                last = i == n_layers - 1
                # block-sequential (cross statistic): each group of linears (q/k/v, o, gate/up, down) is measured
                # with the groups before it already pruned, as the pruned model will feed it; else one pass for all
                groups, once = execution_groups(layer, batches, setup) if needs_data and block_sequential else ([None], False)
                later = tuple(n for names in groups[1:] for n in names)  # their dense rows: kept by the first pass
                next_dense, next_dense_streams, replay, stream_replay = None, None, None, None
                for g, names in enumerate(groups):
                    t = time.perf_counter()
                    group, group_stats, dense = (linears if names is None else {n: linears[n] for n in names}), {}, None
                    if needs_data:
                        first = g == 0
                        group, collector, dense = _statistics(layer, batches, setup, required, keep=pruner.uses_block,
                                                              dense=dense_batches, keep_dense=first and not last, names=names,
                                                              store=later if first else (), replay=replay, early_stop=once)
                        stream_stats, stream_outputs, stream_stored = _stream_statistics(
                            layer, streams, setup, pruner_stats, dense_streams, first and not last, names,
                            later if first and dense_streams is not None else (), stream_replay, once)
                        if first:  # the dense copies' next-layer inputs and later groups' rows (the dense layer ran whole)
                            next_dense, next_dense_streams = collector.dense_outputs, stream_outputs
                            replay = collector.dense_stored if main_dense else None
                            stream_replay = stream_stored if dense_streams is not None else None
                        group_stats = _with_streams(collector.stats, stream_stats)
                        del collector
                    stats.update(group_stats)
                    phase["statistics"] += time.perf_counter() - t
                    t = time.perf_counter()
                    if bias is not None:  # before this group's weights change
                        targets.update(bias.dense_means(group, group_stats))
                    block = LayerBlock(i, layer, group, setup.device, batches, dense, setup.dp.all_reduce(),
                                         target=SparsityTarget(allocation[i], nm)) if pruner.uses_block else None
                    if block is not None:
                        group_stats = begin_block(pruner, block, group_stats)
                    group_stats = with_model_extras(group_stats, group, model_extras.get(i, {}))
                    achieved.update(prune_linears(group, group_stats, pruner, SparsityTarget(allocation[i], nm), setup.dp))
                    if block is not None:
                        achieved = end_block(pruner, block, setup.dp)
                        del block, dense
                    phase["masks"] += time.perf_counter() - t
                dense_batches = next_dense if main_dense else None
                dense_streams = next_dense_streams if stream_dense else None
                del replay, stream_replay
                model_extras.pop(i, None)
                if quantizer is not None:
                    quantize_layer(i, linears, stats, quantizer, quant_store, setup.dp, report, phase)
                del stats
                if bias is not None:  # after pruning and quantizing: the shift covers both
                    t = time.perf_counter()
                    shifts = bias.correct(layer, linears, targets, _pruned_means(layer, batches, setup, bias.names))
                    report.bias_correction["layer_shift"].append(shifts)
                    phase["bias"] += time.perf_counter() - t
                t = time.perf_counter()
                if needs_data and not last:
                    batches = _run_layer(layer, batches, setup, None, keep=True)
                    streams = {k: _run_layer(layer, b, setup, None, keep=True) for k, b in streams.items()}
                phase["propagation"] += time.perf_counter() - t
                record_layer(i, linears, achieved, allocation, params, source, report, phase)
                step(len(calibration))
            report.phase_s = {k: round(v, 4) for k, v in phase.items()}
    report.prune_pass_s = time.perf_counter() - t1
    return finish(report, params, sparsity)


def check_calibration_memory(model: Any, calibration: CalibrationSamples, batch_size: int, dp: DataParallel, offload: bool,
                             dense: bool = False, dense_rows: bool = False) -> str:
    """Refuse (UserError) before starting when activations would not fit in available memory
    (``dense``: the dense-target streams are carried too; ``dense_rows``: and a layer's dense linear inputs)."""
    padded = not bool(calibration.attention_mask.bool().all())
    est = estimate_memory(
        ModelShape.from_config(model.config), len(calibration), int(calibration.input_ids.shape[1]), batch_size,
        act_bytes=torch.finfo(model.dtype).bits // 8 if model.dtype.is_floating_point else 4,
        offload=offload, padded=padded, world=dp.world, dense=dense, dense_rows=dense_rows,
        auxiliary=StreamExtent.of(calibration),
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
    bias_correction: bool = False  # --bias-correction (truthprune.pruning.engine.bias)


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
    ``options`` are :class:`PruneOptions` fields (nm, batch_size, truth_profile, extras, quiet, selection,
    bias_correction).

    ``selection`` (:class:`truthprune.models.adapter.TargetSelection`, from ``--targets`` /
    ``--ignore``) chooses the pruned weights of each block; None: every weight matmul except MoE
    routers and shared-expert gates.

    Under ``torchrun`` (an initialised process group, see :func:`init_distributed`) each rank
    handles its share of the calibration batches; the statistics are summed across ranks, so
    every rank ends with the same pruned model. ``dense_cache`` (a :class:`truthprune.pruning.engine.dense_stats.DenseCache`)
    lets a ``dense_statistics`` pruner reuse the statistics of an earlier prune of the same dense weights.
    """
    o = PruneOptions(**options)
    dp = data_parallel()
    setup = EngineSetup(device=next(model.parameters()).device, batch_size=o.batch_size, storage=storage, quiet=o.quiet, dp=dp,
                        selection=o.selection)
    if storage == "cpu":
        cross = STAT_CROSS in pruner.required_stats
        check_calibration_memory(model, calibration, o.batch_size, dp, offload=False, dense=o.bias_correction or cross,
                                 dense_rows=cross)
    return run_engine(model, ResidentLayers(decoder_layers(model)), calibration, pruner, allocator, sparsity, setup,
                      nm=o.nm, truth_profile=o.truth_profile, extras=o.extras, quantizer=quantizer, quant_store=quant_store,
                      bias_correction=o.bias_correction, dense_cache=dense_cache)
