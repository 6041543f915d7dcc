"""Dense-target streams: the unpruned model's inputs to each layer, carried next to the pruned ones.

Why: the sequential engine feeds layer ``l`` the outputs of the already-pruned layers, so a
pruner that reconstructs each layer on those inputs solves min ||W X_p - W' X_p||^2 and never
sees the drift that pruning has accumulated relative to the dense model. A pruner that asks for
the ``cross`` statistic (or a run with ``--bias-correction``) makes the engine keep a second copy
of every calibration stream that only ever passes through *unpruned* layers: at layer ``l`` it
holds exactly what the dense model gives layer ``l`` on the same tokens. Before each pruned batch
runs through the (still unpruned) layer in the statistics pass, its dense copy runs through the
same layer; :class:`DenseInputs` records each linear's dense input rows, and the statistics
collector pairs them with the pruned rows (``cross`` = X_p^T X_d, dense sums). The dense copy's
layer output is kept as the next layer's dense input, so carrying the dense streams costs one
more forward pass per layer (not an extra pass over the model) and one more set of activations.

At layer 0 both copies are the captured embeddings, so the dense copy starts by sharing the
tensors (nothing is copied until the first layer has run).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import torch

from ...errors import UserError
from .capture import LayerBatch, batch_kwargs_to
from .stats import StopLayer, layer_output
from ...models.adapter import prunable_linears


class DenseInputs:
    """Forward pre-hooks that keep, for one batch of the dense copy, each linear's input rows.

    The rows are float32 [n_real_tokens, in], padding (and statistics-masked tokens) removed in
    the same way as :class:`~truthprune.pruning.engine.stats.StatsCollector` removes them, so they
    pair row by row with the pruned batch. Linears reading the same tensor share one row matrix.
    With ``stop`` the layer is aborted once every linear has reported (its output is not needed).
    """

    def __init__(self, linears: dict[str, torch.nn.Module], stop: bool):
        self.linears = linears
        self.stop = stop
        self.active = False
        self.token_mask: torch.Tensor | None = None
        self.inputs: dict[str, torch.Tensor] = {}
        self._last: tuple[Any, torch.Tensor] | None = None

    def begin_batch(self, token_mask: torch.Tensor | None) -> None:
        self.token_mask = token_mask
        self.inputs = {}
        self._last = None

    def _record(self, name: str, x: torch.Tensor) -> None:
        if self._last is not None and self._last[0] is x:
            rows = self._last[1]
        else:
            rows = x.detach().reshape(-1, x.shape[-1])
            if self.token_mask is not None:
                rows = rows[self.token_mask.reshape(-1).to(rows.device)]
            rows = rows.float()
            self._last = (x, rows)
        self.inputs[name] = rows
        if self.stop and len(self.inputs) == len(self.linears):
            self._last = None
            raise StopLayer

    def _hook(self, name: str) -> Callable:
        def hook(module, args, kwargs):
            if self.active:
                self._record(name, args[0] if args else kwargs["input"])

        return hook

    @contextmanager
    def attached(self):
        handles = [lin.register_forward_pre_hook(self._hook(name), with_kwargs=True) for name, lin in self.linears.items()]
        try:
            yield self
        finally:
            self._last = None
            for h in handles:
                h.remove()


class DenseRun:
    """Runs the dense copy of batch ``j`` before the pruned batch ``j`` in one statistics pass.

    ``before(j, collector)`` runs it (collector paused), hands the collector the dense rows and
    keeps the dense output (when ``keep``) as the next layer's dense input: :attr:`outputs`.

    Block-sequential passes (one per group of linears, the earlier groups already pruned) need the
    dense model's rows of every group, but the layer is no longer the dense one after the first
    group: the first pass therefore records the rows of the later groups' linears too (``store``,
    into :attr:`stored`, on the activation storage), and the later passes replay them
    (``replay``) without running anything.
    """

    def __init__(self, layer: torch.nn.Module, linears: dict[str, torch.nn.Module], batches: list[LayerBatch],
                 setup: Any, keep: bool, store: tuple[str, ...] = (), replay: list[dict[str, torch.Tensor]] | None = None):
        self.layer = layer
        self.batches = batches
        self.setup = setup
        self.keep = keep
        self.replay = replay
        self.store = store
        self.stored: list[dict[str, torch.Tensor]] = []
        self.tap = DenseInputs(linears, stop=not keep)
        self.outputs: list[LayerBatch] = []

    def before(self, j: int, collector: Any) -> None:
        if self.replay is not None:
            collector.dense_inputs = {n: rows.to(self.setup.device) for n, rows in self.replay[j].items()}
            return
        d = self.batches[j]
        self.tap.begin_batch(d.token_mask)
        collector.paused, self.tap.active = True, True
        try:
            out = layer_output(self.layer(d.hidden.to(self.setup.device), **batch_kwargs_to(d.kwargs, self.setup.device)))
        except StopLayer:
            out = None
        finally:
            collector.paused, self.tap.active = False, False
        if self.keep:
            self.outputs.append(dataclasses.replace(d, hidden=self.setup.keep(out)))
        if self.store:
            kept: dict[int, torch.Tensor] = {}  # linears sharing an input share one stored copy
            self.stored.append({n: kept.setdefault(id(self.tap.inputs[n]), self.setup.keep(self.tap.inputs[n]))
                                for n in self.store})
        collector.dense_inputs = self.tap.inputs

    def after(self, collector: Any) -> None:
        collector.dense_inputs = {}
        self.tap.inputs = {}


def dense_copies(batches: list[LayerBatch]) -> list[LayerBatch]:
    """The dense copy of freshly captured layer-0 batches: the same tensors, separate records."""
    return [dataclasses.replace(b) for b in batches]


def refuse_experts(layers: Any, selection: Any, why: str) -> None:
    """Dense-target statistics pair each token's pruned and dense inputs to a linear; MoE experts
    see different tokens in the two models (routing differs), so there is no pairing: refuse."""
    for layer in layers:
        experts = [n for n, m in prunable_linears(layer, selection).items() if getattr(m, "is_expert", False)]
        if experts:
            raise UserError(
                f"{why} pairs each token's pruned and dense inputs, which MoE experts do not have (routing differs "
                f"between the two models); leave the experts dense with --ignore '{experts[0].rsplit('.', 2)[0]}.*' "
                "or drop the option"
            )
