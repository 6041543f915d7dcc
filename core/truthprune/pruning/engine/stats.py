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
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import torch

from ...plugin.interfaces import STAT_GRAM, STAT_SQ_NORM, STAT_SUM, LinearStats

log = logging.getLogger(__name__)


class StopLayer(Exception):
    """Raised from a pre-hook once all statistics of this batch are recorded."""


class StatsCollector:
    def __init__(self, linears: dict[str, torch.nn.Linear], required: frozenset[str], device: Any = None):
        self.linears = linears
        self.required = frozenset(required)
        self.token_mask: torch.Tensor | None = None  # set per batch by begin_batch
        self.early_stop = False
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

    def begin_batch(self, token_mask: torch.Tensor | None) -> None:
        """``token_mask`` [b, S] bool, or None when every position is a real token."""
        self.token_mask = token_mask
        self.calls = {}
        self._cache = None
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
            self.record(name, args[0] if args else kwargs["input"])

        return hook

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
        for acc in (*self._sq.values(), *self._gram.values(), *self._sum.values()):
            all_reduce(acc)

    def _device(self):
        for acc in (*self._sq.values(), *self._gram.values(), *self._sum.values()):
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
                )
            return out


def layer_output(out: Any) -> torch.Tensor:
    """Decoder layers return a tensor (new transformers) or a tuple whose first item is it."""
    return out[0] if isinstance(out, (tuple, list)) else out
