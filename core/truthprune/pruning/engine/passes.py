"""The passes of one decoder layer over the calibration batches, shared by every engine mode.

:func:`_run_layer` runs a layer over all batches (optionally keeping the outputs, optionally with
the dense-target copy of each batch run first, :mod:`.dense`); :func:`_statistics` is that run
with statistics hooks; :func:`_stream_statistics` does it for each auxiliary stream;
:func:`_pruned_means` measures the pruned layer's linear input means for ``--bias-correction``;
:func:`_capture` takes the layer-0 inputs and :func:`_dense_pass` is an allocator's dense pre-pass.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

from ...models.adapter import prunable_linears
from ...plugin.interfaces import CalibrationSamples, LinearStats
from ...plugin.pruning_inputs import STAT_SUM
from .capture import LayerBatch, batch_kwargs_to, capture_layer0_inputs, use_layer_kwargs
from .dense import DenseRun
from .stats import StatsCollector, StopLayer, layer_output

EngineSetup = Any  # truthprune.pruning.engine.sequential.EngineSetup (defined there; imported lazily to avoid a cycle)


def _run_layer(layer, batches: list[LayerBatch], setup: EngineSetup, collector: StatsCollector | None, keep: bool,
               dense: DenseRun | None = None):
    """Run ``layer`` over all batches; return the output batches if ``keep``.

    Without ``keep`` (a pure statistics pass) the collector may stop the layer early, once the
    first batch has shown that every linear runs exactly once per forward. With ``dense`` (the
    dense-target streams) each batch's dense copy runs first and pairs its inputs with the batch's.
    """
    outs = []
    for j, b in enumerate(batches):
        if dense is not None:
            dense.before(j, collector)
        if collector is not None:
            collector.begin_batch(b.token_mask)
        try:
            out = layer_output(layer(b.hidden.to(setup.device), **batch_kwargs_to(b.kwargs, setup.device)))
        except StopLayer:
            continue
        finally:
            if dense is not None:
                dense.after(collector)
        if keep:
            outs.append(LayerBatch(hidden=setup.keep(out), kwargs=b.kwargs, token_mask=b.token_mask, index=b.index,
                                   layer_kwargs=b.layer_kwargs))
        elif collector is not None and j == 0:
            collector.early_stop = collector.single_call_per_linear()
    return outs


def _statistics(layer, batches, setup: EngineSetup, required: frozenset[str], keep: bool,
                dense: list[LayerBatch] | None = None, keep_dense: bool = False, names: tuple[str, ...] | None = None,
                store: tuple[str, ...] = (), replay: list[dict[str, torch.Tensor]] | None = None, early_stop: bool = False):
    """One pass with statistics hooks; returns (linears, collector with rank-summed stats, outputs).

    With ``dense`` (the batches' dense-model copies) the statistics are paired (``cross``, dense
    sums) and, with ``keep_dense``, the dense copies' outputs are kept: ``collector.dense_outputs``.
    ``names`` restricts the pass to those linears (one group of a block-sequential pass); the dense
    rows of the linears in ``store`` are kept for the later groups (``collector.dense_stored``),
    which ``replay`` them instead of running the dense copies (:class:`~.dense.DenseRun`).
    ``early_stop``: every linear is known to run once per forward, so even the first batch may stop.
    """
    every = prunable_linears(layer, setup.selection)
    linears = every if names is None else {n: every[n] for n in names}
    collector = StatsCollector(linears, required, paired=dense is not None)
    collector.early_stop = early_stop and not keep
    if not required and not keep and dense is None:
        return linears, collector, []
    run = None
    if dense is not None:
        tapped = {n: every[n] for n in (*linears, *store)}
        run = DenseRun(layer, tapped, dense, setup, keep=keep_dense, store=store, replay=replay)
    with collector.attached(), (run.tap.attached() if run is not None and replay is None else nullcontext()):
        outs = _run_layer(layer, batches, setup, collector, keep=keep, dense=run)
    collector.reduce(setup.dp.all_reduce())
    collector.dense_outputs = run.outputs if run is not None else []
    collector.dense_stored = run.stored if run is not None else []
    return linears, collector, outs


def stream_batch_size(batch_size: int, main_seqlen: int, stream_seqlen: int) -> int:
    """Sequences per batch for an auxiliary stream: as many *tokens* per batch as the main data.

    Why: streams of short sequences (statements of ~20 tokens) in batches of ``batch_size``
    would cost hundreds of tiny layer calls per layer, each dominated by fixed overhead.
    """
    return max(batch_size, batch_size * main_seqlen // max(stream_seqlen, 1))


def _stream_statistics(layer, streams: dict[str, list[LayerBatch]], setup: EngineSetup, required: frozenset[str],
                       dense: dict[str, list[LayerBatch]] | None, keep_dense: bool, names: tuple[str, ...] | None = None,
                       store: tuple[str, ...] = (), replay: dict[str, list] | None = None, early_stop: bool = False):
    """(statistics of every auxiliary stream at this layer, keyed by stream; with ``dense``
    (dense-target streams) paired; with ``keep_dense`` the dense copies' outputs by stream; the
    stored dense rows by stream), as :func:`_statistics` for each stream."""
    out, outputs, stored = {}, {}, {}
    for key, batches in streams.items():
        _, collector, _ = _statistics(layer, batches, setup, required, keep=False,
                                      dense=None if dense is None else dense[key], keep_dense=keep_dense, names=names,
                                      store=store, replay=None if replay is None else replay[key], early_stop=early_stop)
        out[key] = collector.stats
        outputs[key], stored[key] = collector.dense_outputs, collector.dense_stored
    return out, outputs, stored


def execution_groups(layer, batches: list[LayerBatch], setup: EngineSetup) -> tuple[list[tuple[str, ...]], bool]:
    """(the block's linears in the order they run, grouped by the input tensor they share (q/k/v,
    gate/up); whether every linear ran exactly once, so each group's pass may stop at that group).

    Found by running this rank's first batch through the layer; rank 0's answer is broadcast, so
    every rank makes the same passes. Linears that never ran come last, one group.
    """
    linears = prunable_linears(layer, setup.selection)
    groups: list[list[str]] = []
    once = False
    if setup.dp.is_writer:
        order: list[tuple[str, Any]] = []
        calls: dict[str, int] = {}

        def hook(name):
            def record(module, args, kwargs):
                if name not in calls:
                    order.append((name, args[0] if args else kwargs["input"]))
                calls[name] = calls.get(name, 0) + 1
            return record

        handles = [lin.register_forward_pre_hook(hook(n), with_kwargs=True) for n, lin in linears.items()]
        try:
            b = batches[0]
            layer(b.hidden.to(setup.device), **batch_kwargs_to(b.kwargs, setup.device))
        finally:
            for h in handles:
                h.remove()
        prev = None
        for name, x in order:
            if groups and x is prev:
                groups[-1].append(name)
            else:
                groups.append([name])
            prev = x
        rest = [n for n in linears if n not in calls]
        if rest:
            groups.append(rest)
        once = not rest and all(c == 1 for c in calls.values())
    groups, once = setup.dp.broadcast_object((groups, once))
    return [tuple(g) for g in groups], once


def _with_streams(stats: dict[str, LinearStats], streams: dict[str, dict[str, LinearStats]]) -> dict[str, LinearStats]:
    for name, st in stats.items():
        st.streams = {key: per_linear[name] for key, per_linear in streams.items()}
    return stats


def _pruned_means(layer, batches: list[LayerBatch], setup: EngineSetup, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Mean input of each linear in ``names`` of the *pruned* layer over the calibration tokens (rank-summed)."""
    linears = {n: m for n, m in prunable_linears(layer, setup.selection).items() if n in names}
    collector = StatsCollector(linears, frozenset({STAT_SUM}))
    with collector.attached():
        _run_layer(layer, batches, setup, collector, keep=False)
    collector.reduce(setup.dp.all_reduce())
    return {n: st.sum.double() / max(st.n_tokens, 1) for n, st in collector.stats.items()}


def _capture(model, calib: CalibrationSamples, setup: EngineSetup, source: Any, batch_size: int | None = None) -> list[LayerBatch]:
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


def _dense_pass(model, source: Any, calib, allocator: Any, setup: EngineSetup, progress) -> None:
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
