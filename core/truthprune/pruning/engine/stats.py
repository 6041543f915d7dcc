"""Accumulate float32 input statistics of linear layers with forward pre-hooks.

Which statistics are collected is declared by the pruner/allocator (``required_stats``), so a new
method never edits the engine. Padding positions (token_mask False) are excluded.

Three choices here exist for speed or reproducibility, not for the maths:

* Each mini-batch's contribution is a float32 reduction, but the running sums are float64. The
  order in which batch contributions are added then (practically) stops mattering, which is what
  makes a data-parallel run (batches summed per rank, then all-reduced) give the same masks as
  one process. The statistics handed to plugins are float32, as the interface promises.
* Linears that read the same tensor (q/k/v read one normed hidden state, gate/up another) share
  one computation of its square sums instead of three/two.
* Statistics are recorded in *pre*-hooks, i.e. before a linear runs. Once every linear of the
  layer has reported its input, nothing else the layer computes can change them, so the engine
  may stop the layer early (``early_stop``), which skips the last linear (e.g. ``down_proj``,
  a quarter of a Llama layer's matmul work) and everything after it. The engine only turns this
  on after a full first batch showed that every linear runs exactly once per forward, and never
  for a layer with MoE experts (which experts run, and how often, changes from batch to batch).

MoE experts (fused ``[E, out, in]`` parameters, no module per expert) are recorded by
:class:`truthprune.pruning.engine.experts.ExpertTap` through the same accumulation, from the tokens routed
to each expert only.

*Paired* collection (dense-target streams, :mod:`truthprune.pruning.engine.dense`): before each
batch runs through the layer, the engine runs the same batch's dense-model copy and hands the
collector each linear's dense input rows (:attr:`StatsCollector.dense_inputs`). The collector then
also accumulates the cross statistic X_pruned^T X_dense (``cross``) and the dense inputs' vector
statistics. Rows pair up because both copies hold the same tokens under the same token mask.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import torch

from ...plugin.pruning_inputs import STAT_CROSS, STAT_GRAM, STAT_SQ_NORM, STAT_SUM, LinearStats

log = logging.getLogger(__name__)


class StopLayer(Exception):
    """Raised from a pre-hook once all statistics of this batch are recorded."""


class StatsCollector:
    def __init__(self, linears: dict[str, torch.nn.Linear], required: frozenset[str], device: Any = None, paired: bool = False):
        self.linears = linears
        self.required = frozenset(required)
        self.paired = paired or STAT_CROSS in self.required  # dense inputs arrive per batch (dense_inputs)
        self.token_mask: torch.Tensor | None = None  # set per batch by begin_batch
        self.early_stop = False
        self.paused = False  # True while the engine runs the dense copy of a batch through the same hooks
        self.dense_inputs: dict[str, torch.Tensor] = {}  # paired: this batch's dense rows per linear, float32 [n, d]
        self._dense_cache: dict[int, tuple[torch.Tensor, Any, Any]] = {}
        self._cross: dict[str, torch.Tensor] = {}
        self._dsq: dict[str, torch.Tensor] = {}
        self._dsum: dict[str, torch.Tensor] = {}
        self._tap: Any = None  # the ExpertTap while attached to a layer with MoE experts
        self.calls: dict[str, int] = {}
        self._cache: tuple[Any, torch.Tensor, Any, Any] | None = None
        self._n: dict[str, int] = {}
        self._sq: dict[str, torch.Tensor] = {}
        self._gram: dict[str, torch.Tensor] = {}
        self._sum: dict[str, torch.Tensor] = {}
        for name, lin in linears.items():
            d = lin.in_features
            dev = device if device is not None else lin.weight.device
            self._n[name] = 0
            if STAT_SQ_NORM in self.required:
                self._sq[name] = torch.zeros(d, dtype=torch.float64, device=dev)
            if STAT_GRAM in self.required:
                self._gram[name] = torch.zeros(d, d, dtype=torch.float64, device=dev)
            if STAT_SUM in self.required:
                self._sum[name] = torch.zeros(d, dtype=torch.float64, device=dev)
            if STAT_CROSS in self.required:
                self._cross[name] = torch.zeros(d, d, dtype=torch.float64, device=dev)
            if self.paired and STAT_SQ_NORM in self.required:
                self._dsq[name] = torch.zeros(d, dtype=torch.float64, device=dev)
            if self.paired and STAT_SUM in self.required:
                self._dsum[name] = torch.zeros(d, dtype=torch.float64, device=dev)

    def begin_batch(self, token_mask: torch.Tensor | None) -> None:
        """``token_mask`` [b, S] bool, or None when every position is a real token."""
        self.token_mask = token_mask
        self.calls = {}
        self._cache = None
        self._dense_cache = {}
        if self._tap is not None:
            self._tap.token_mask = token_mask

    def _contribution(self, x: torch.Tensor, rows: Any = False) -> tuple[torch.Tensor, Any, Any, Any]:
        """(kept rows as float32 [n, d], sum of squares [d], gram [d, d], sum [d]) for one input.

        ``rows`` is the mask of real rows for an input that is not [b, S, d] (a MoE expert's routed
        tokens; None = all real); False means "use the batch's token mask".
        """
        if self._cache is not None and self._cache[0] is x:  # q/k/v (gate/up) share their input
            return self._cache[1:]
        flat = x.detach().reshape(-1, x.shape[-1])
        keep = self.token_mask if rows is False else rows
        if keep is not None:
            flat = flat[keep.reshape(-1).to(flat.device)]
        flat = flat.float()
        sq = (flat * flat).sum(dim=0) if STAT_SQ_NORM in self.required else None
        gram = flat.t() @ flat if STAT_GRAM in self.required else None
        total = flat.sum(dim=0) if STAT_SUM in self.required else None
        self._cache = (x, flat, sq, gram, total)  # holding x keeps its identity unique for this batch
        return flat, sq, gram, total

    def _hook(self, name: str) -> Callable:
        def hook(module, args, kwargs):
            if not self.paused:
                self.record(name, args[0] if args else kwargs["input"])

        return hook

    def _paired_contribution(self, name: str, flat: torch.Tensor) -> tuple[Any, Any, Any]:
        """(cross [d, d], dense sum of squares [d], dense sum [d]) of this batch for linear ``name``.

        Linears that read one tensor share one computation on both sides (the dense rows are one
        tensor too, see :class:`~truthprune.pruning.engine.dense.DenseInputs`).
        """
        dense = self.dense_inputs.get(name)
        if dense is None or dense.shape != flat.shape:
            got = "none" if dense is None else tuple(dense.shape)
            raise RuntimeError(f"paired statistics for {name}: dense rows {got} do not match the pruned rows "
                               f"{tuple(flat.shape)}; the dense copy of the batch did not run this linear the same way")
        key = id(dense)
        cached = self._dense_cache.get(key)
        if cached is not None and cached[0] is flat:
            return cached[1]
        cross = flat.t() @ dense if STAT_CROSS in self.required else None
        dsq = (dense * dense).sum(dim=0) if STAT_SQ_NORM in self.required else None
        dsum = dense.sum(dim=0) if STAT_SUM in self.required else None
        self._dense_cache[key] = (flat, (cross, dsq, dsum))
        return cross, dsq, dsum

    def record(self, name: str, x: torch.Tensor, rows: Any = False) -> None:
        """Add one input of linear ``name`` to its statistics (see :meth:`_contribution` for ``rows``)."""
        flat, sq, gram, total = self._contribution(x, rows)
        self._n[name] += flat.shape[0]
        if sq is not None:
            self._sq[name] += sq
        if gram is not None:
            self._gram[name] += gram
        if total is not None:
            self._sum[name] += total
        if self.paired:
            cross, dsq, dsum = self._paired_contribution(name, flat)
            if cross is not None:
                self._cross[name] += cross
            if dsq is not None:
                self._dsq[name] += dsq
            if dsum is not None:
                self._dsum[name] += dsum
        self.calls[name] = self.calls.get(name, 0) + 1
        if self.early_stop and len(self.calls) == len(self.linears):
            self._cache = None
            raise StopLayer

    @property
    def experts(self) -> dict[str, Any]:
        return {n: m for n, m in self.linears.items() if getattr(m, "is_expert", False)}

    def single_call_per_linear(self) -> bool:
        """True when the last batch ran every linear exactly once (early stop is then safe).

        Never for a layer with MoE experts: a batch where every expert ran once says nothing
        about the next batch's routing.
        """
        if self.experts:
            return False
        return len(self.calls) == len(self.linears) and all(c == 1 for c in self.calls.values())

    @contextmanager
    def attached(self):
        if not self.required:
            yield self
            return
        experts = self.experts
        handles = [lin.register_forward_pre_hook(self._hook(name), with_kwargs=True)
                   for name, lin in self.linears.items() if name not in experts]
        tap = None
        if experts:
            from .experts import ExpertTap

            tap = ExpertTap(experts, self.record)
        try:
            if tap is None:
                yield self
            else:
                self._tap = tap
                with tap.attached():
                    yield self
        finally:
            self._cache = None
            self._dense_cache = {}
            self._tap = None
            for h in handles:
                h.remove()

    # ------------------------------------------------------------------ results

    def reduce(self, all_reduce: Callable[[torch.Tensor], None] | None) -> None:
        """Sum the running statistics across data-parallel ranks (in place)."""
        if all_reduce is None:
            return
        names = list(self.linears)
        counts = torch.tensor([self._n[n] for n in names], dtype=torch.float64, device=self._device())
        all_reduce(counts)
        for n, c in zip(names, counts.tolist()):
            self._n[n] = int(round(c))
        for acc in self._accumulators():
            all_reduce(acc)

    def _accumulators(self) -> tuple[torch.Tensor, ...]:
        return (*self._sq.values(), *self._gram.values(), *self._sum.values(),
                *self._cross.values(), *self._dsq.values(), *self._dsum.values())

    def _device(self):
        for acc in self._accumulators():
            return acc.device
        return torch.device("cpu")

    @property
    def stats(self) -> dict[str, LinearStats]:
        """Float32 statistics per linear (a fresh conversion of the float64 sums).

        Built outside inference mode, so plugins may keep and modify them freely. A MoE expert no
        calibration token was routed to has no input statistics; it gets neutral ones (unit
        squared norms, identity gram) with ``n_tokens=0``, so Wanda-style scores fall back to
        weight magnitude instead of an arbitrary all-zero tie.
        """
        experts = self.experts
        idle = [n for n in experts if self._n[n] == 0]
        if idle:
            log.warning("%d of %d experts received no calibration token in this layer; their masks follow weight magnitude",
                        len(idle), len(experts))
        with torch.inference_mode(False):
            out = {}
            for name in self.linears:
                sq, gram = self._sq.get(name), self._gram.get(name)
                if name in idle:
                    sq = torch.ones_like(sq) if sq is not None else None
                    gram = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device) if gram is not None else None
                out[name] = LinearStats(
                    n_tokens=self._n[name],
                    sq_norm=sq.float() if sq is not None else None,
                    gram=gram.float() if gram is not None else None,
                    sum=self._sum[name].float() if name in self._sum else None,
                    cross=self._cross[name].float() if name in self._cross else None,
                    dense=self._dense_stats(name) if self.paired else None,
                )
            return out

    def _dense_stats(self, name: str) -> LinearStats:
        """The dense inputs' vector statistics of linear ``name`` (same tokens, so same count)."""
        dsq, dsum = self._dsq.get(name), self._dsum.get(name)
        return LinearStats(n_tokens=self._n[name], sq_norm=dsq.float() if dsq is not None else None,
                           sum=dsum.float() if dsum is not None else None)


def layer_output(out: Any) -> torch.Tensor:
    """Decoder layers return a tensor (new transformers) or a tuple whose first item is it."""
    return out[0] if isinstance(out, (tuple, list)) else out
