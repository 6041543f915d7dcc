"""One-calibration pruning: every layer's statistics from the *dense* model, in one pass.

Why this exists: the sequential engine feeds each layer the outputs of the already pruned
layers before it, so its statistics depend on the sparsity, and a second sparsity needs a second
calibration. Some methods (UniPruning's "one calibration, masks for any sparsity") define their
scores on the dense model instead. A pruner says so with ``dense_statistics = True``; the engine
then

1. runs the dense model over the calibration data once, layer by layer, collecting the union of
   the statistics the pruner, the allocator (its dense pre-pass, ``observe_layer``) and a
   quantizer ask for; the stream of hidden states is the dense one, so no layer is run twice;
2. allocates, and prunes every layer from its stored statistics with no further forward pass.

The statistics no longer depend on the sparsity, so they can be reused: with a
:class:`DenseCache` (the run pipeline keeps one per loaded model) a second prune of the same
dense weights on the same calibration, e.g. the next grid point of ``truthprune sweep
--sparsity 0.5,0.6,0.7``, skips step 1 entirely. The cache holds one entry (the latest) and is
keyed by the weights' fingerprint, the calibration tokens, the statistics, the selection, the
batch size, the device and the number of ranks, so a hit is the same computation.

Memory: the statistics of all layers are held until the last layer is pruned (per-column
vectors for ``sq_norm``/``sum``: negligible; a ``gram`` per linear is about one more copy of the
model's weights in float32). Block-aware pruners (``uses_block``) cannot be dense: their hooks
need the pruned prefix's inputs.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ...errors import PluginContractError
from ...models.adapter import prunable_linears
from ...plugin import contracts
from .steps import allocate, finish, prune_linears, quantize_layer, record_layer
from ...plugin.interfaces import CalibrationSamples, LinearStats, Pruner, SparsityAllocator, SparsityTarget

log = logging.getLogger(__name__)

LayerStats = dict[str, LinearStats]  # one decoder layer's statistics, by linear name (streams attached)


def calibration_digest(calib: CalibrationSamples) -> str:
    """blake2b of every tensor that decides the statistics: tokens, attention and statistics masks,
    and the auxiliary streams (recursively)."""
    h = hashlib.blake2b(digest_size=16)

    def add(t: torch.Tensor | None) -> None:
        if t is None:
            h.update(b"-")
            return
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())

    add(calib.input_ids)
    add(calib.attention_mask)
    add(calib.stat_mask)
    for name in sorted(calib.auxiliary):
        h.update(name.encode())
        h.update(calibration_digest(calib.auxiliary[name]).encode())
    return h.hexdigest()


@dataclass
class DenseCache:
    """The dense statistics of one (weights, calibration, settings) combination, kept for reuse.

    ``store`` is owned by whoever outlives the runs (a loaded model); ``fingerprint`` returns the
    hash of the weights *as they are now* (called before anything is pruned).
    """

    store: dict[str, Any]
    fingerprint: Callable[[], str]
    hits: int = field(default=0)

    def key(self, calib: CalibrationSamples, required: frozenset[str], setup: Any) -> tuple:
        return (self.fingerprint(), calibration_digest(calib), tuple(sorted(required)), repr(setup.selection),
                setup.batch_size, str(setup.device), setup.dp.world)

    def get(self, key: tuple) -> list[LayerStats] | None:
        entry = self.store.get("dense_statistics")
        if entry is not None and entry[0] == key:
            self.hits += 1
            return entry[1]
        return None

    def put(self, key: tuple, value: list[LayerStats]) -> None:
        self.store["dense_statistics"] = (key, value)  # one entry: the previous one is released


def _collect(model, source, calibration: CalibrationSamples, required: frozenset[str], setup, progress,
             observe: Callable[[int, Any, LayerStats], None] | None) -> list[LayerStats]:
    """The one dense pass: statistics of every layer (and stream), calling ``observe`` per layer."""
    from .capture import use_layer_kwargs
    from .passes import _capture, _statistics, _stream_statistics, _with_streams, stream_batch_size

    layers = source.layers
    batches = _capture(model, calibration, setup, source)
    main_len = int(calibration.input_ids.shape[1])
    streams = {k: _capture(model, s, setup, source, stream_batch_size(setup.batch_size, main_len, int(s.input_ids.shape[1])))
               for k, s in calibration.auxiliary.items()}
    out: list[LayerStats] = []
    with progress.stage("dense statistics (one calibration)", len(layers)) as step:
        for i in range(len(layers)):
            layer = source.open(i)
            for group in (batches, *streams.values()):
                use_layer_kwargs(group, i)
            keep = i < len(layers) - 1  # the dense outputs are the next layer's inputs
            linears, collector, next_batches = _statistics(layer, batches, setup, required, keep)
            stream_stats = _stream_statistics(layer, streams, setup, required, None, False)[0]
            stats = _with_streams(collector.stats, stream_stats)
            if observe is not None:
                observe(i, {n: m.weight for n, m in linears.items()}, stats)
            if keep:
                streams = {k: _run_dense(layer, b, setup) for k, b in streams.items()}
            batches = next_batches
            out.append(stats)
            source.close(i, pruned=False)
            step(len(calibration))
    return out


def _run_dense(layer, batches, setup):
    from .passes import _run_layer

    return _run_layer(layer, batches, setup, None, keep=True)


def run_dense_engine(model, source, calibration: CalibrationSamples, pruner: Pruner, allocator: SparsityAllocator,
                     sparsity: float, setup, report, progress, *, nm=None, truth_profile=None, extras=None,
                     quantizer: Any = None, quant_store: Any = None, cache: DenseCache | None = None):
    """The dense-statistics counterpart of :func:`~truthprune.pruning.engine.sequential.run_engine`."""
    if pruner.uses_block:
        raise PluginContractError(f"{contracts.describe_plugin(pruner)} sets both dense_statistics and uses_block; "
                                  "block hooks need the pruned layers' inputs, so a pruner can have only one of them")
    layers = source.layers
    n_layers = len(layers)
    required = (pruner.required_stats | (quantizer.required_stats if quantizer is not None else frozenset())
                | (allocator.required_stats if allocator.needs_dense_pass else frozenset()))
    observe = allocator.observe_layer if allocator.needs_dense_pass else None
    t0 = time.perf_counter()
    with torch.inference_mode():
        key = cache.key(calibration, required, setup) if cache is not None else None
        stats = cache.get(key) if cache is not None else None
        if stats is None:
            stats = _collect(model, source, calibration, required, setup, progress, observe)
            if cache is not None:
                cache.put(key, stats)
        else:
            log.info("dense statistics reused (same weights and calibration): no calibration pass")
            report.statistics_reused = True
            if observe is not None:  # the allocator still sees every layer, from the stored statistics
                for i in range(n_layers):
                    layer = source.open(i)
                    observe(i, {n: m.weight for n, m in prunable_linears(layer, setup.selection).items()}, stats[i])
                    source.close(i, pruned=False)
    report.dense_pass_s = time.perf_counter() - t0

    params = [sum(m.weight.numel() for m in prunable_linears(layer, setup.selection).values()) for layer in layers]
    allocation = allocate(allocator, sparsity, nm, params, truth_profile, extras, report)
    if quantizer is not None:
        report.quantization = {**quantizer.describe(), "layer_weight_change": []}
    t1 = time.perf_counter()
    phase = dict.fromkeys(("load", "statistics", "masks", "quantize", "propagation", "store"), 0.0)
    phase["statistics"] = report.dense_pass_s
    with torch.inference_mode(), progress.stage(f"pruning ({pruner.name}, from dense statistics)", n_layers) as step:
        for i in range(n_layers):
            t = time.perf_counter()
            layer = source.open(i)
            phase["load"] += time.perf_counter() - t
            linears = prunable_linears(layer, setup.selection)
            t = time.perf_counter()
            achieved = prune_linears(linears, stats[i], pruner, SparsityTarget(allocation[i], nm), setup.dp)
            phase["masks"] += time.perf_counter() - t
            if quantizer is not None:
                quantize_layer(i, linears, stats[i], quantizer, quant_store, setup.dp, report, phase)
            record_layer(i, linears, achieved, allocation, params, source, report, phase)
            step(len(calibration))
    report.phase_s = {k: round(v, 4) for k, v in phase.items()}
    report.prune_pass_s = time.perf_counter() - t1
    return finish(report, params, sparsity)
