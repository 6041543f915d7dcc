"""Per-decoder-block hooks: what a block-aware pruner sees of the layer it is pruning.

Why this exists: most pruners decide each linear layer alone from its input statistics. Some
methods need the whole decoder block: Wanda++ scores weights with the gradient of the block's
output norm ("regional" gradients, no full-model backward) and afterwards nudges the kept weights
so that the pruned block reproduces the dense block's outputs. A pruner that sets
``uses_block = True`` gets two calls per decoder layer with a :class:`truthprune.BlockContext`
(implemented here by :class:`LayerBlock`):

* ``begin_block(ctx)`` after the statistics pass and before ``prune`` of the block's linears; it
  may return ``{linear name: {key: value}}``, merged into that linear's ``LinearStats.extra``.
  ``ctx.stats`` holds the statistics ``prune`` will get and ``ctx.target`` what the block is
  pruned to; :meth:`LayerBlock.permute_channels` may reorder channels inside the block (e.g.
  RIA's channel permutation for N:M) without changing what it computes;
* ``end_block(ctx)`` after the masks are applied (``ctx.masks``) and before the propagation pass;
  it may return ``{linear name: new weight}``. The engine copies those in and re-applies the
  masks, so a pruned weight can never come back.

The context hands out each calibration mini-batch as tensors autograd may use (the engine keeps
activations as inference-mode tensors), runs the block on a batch, optionally with some
parameters replaced (``torch.func.functional_call``), and gives the dense block outputs computed
on the same inputs before anything in this block was pruned. Gradients are the pruner's business:
wrap the work in ``torch.inference_mode(False)`` and ``torch.enable_grad()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ...plugin import contracts
from ...plugin.interfaces import LinearStats, Pruner, SparsityTarget
from .capture import LayerBatch
from .stats import layer_output


def _autograd_copy(value: Any, device: Any) -> Any:
    """Normal (not inference-mode) copies of every tensor in ``value`` on ``device``."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(device).clone()
    if isinstance(value, tuple):
        return tuple(_autograd_copy(v, device) for v in value)
    if isinstance(value, list):
        return [_autograd_copy(v, device) for v in value]
    if isinstance(value, dict):
        return {k: _autograd_copy(v, device) for k, v in value.items()}
    return value


@dataclass
class LayerBlock:
    """The engine's :class:`truthprune.BlockContext`: decoder layer ``index`` with its calibration
    inputs and dense outputs (see module doc)."""

    index: int
    layer: torch.nn.Module
    linears: dict[str, torch.nn.Linear]
    device: torch.device
    _inputs: list[LayerBatch]
    _dense: list[LayerBatch]
    _all_reduce: Any = None
    masks: dict[str, torch.Tensor] = field(default_factory=dict)  # filled before end_block; True = pruned
    _params: dict[str, torch.Tensor] | None = None
    target: SparsityTarget | None = None  # what this block's linears are pruned to
    stats: dict[str, LinearStats] = field(default_factory=dict)  # what prune() gets, by linear name (set before begin_block)

    @property
    def n_batches(self) -> int:
        return len(self._inputs)

    def inputs(self, j: int) -> torch.Tensor:
        """Hidden states entering the block for mini-batch ``j`` ([b, S, d], autograd-safe)."""
        with torch.inference_mode(False):
            return _autograd_copy(self._inputs[j].hidden, self.device)

    def token_mask(self, j: int) -> torch.Tensor | None:
        """[b, S] bool of the tokens that count (padding and unscored tokens False), or None = all."""
        m = self._inputs[j].token_mask
        return None if m is None else m.to(self.device)

    def dense_output(self, j: int) -> torch.Tensor:
        """The unpruned block's output on mini-batch ``j`` (autograd-safe, no grad)."""
        with torch.inference_mode(False):
            return _autograd_copy(self._dense[j].hidden, self.device)

    def parameters(self) -> dict[str, torch.Tensor]:
        """Autograd-safe copies of the block's parameters by name (computed once per block)."""
        if self._params is None:
            with torch.inference_mode(False):
                self._params = {n: p.detach().clone() for n, p in self.layer.named_parameters()}
        return self._params

    def forward(self, j: int, params: dict[str, torch.Tensor] | None = None, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """Run the block on mini-batch ``j`` (or on ``hidden`` with that batch's masks/positions).

        ``params`` replaces some parameters by name (e.g. weights that require grad); all others
        come from :meth:`parameters`. Call inside ``torch.inference_mode(False)`` to differentiate.
        """
        with torch.inference_mode(False):
            x = self.inputs(j) if hidden is None else hidden
            kwargs = _autograd_copy(self._inputs[j].kwargs, self.device)
            full = {**self.parameters(), **(params or {})}
        return layer_output(torch.func.functional_call(self.layer, full, (x,), kwargs))

    def permute_channels(self, perm: torch.Tensor, *, inputs_of: list[str], outputs_of: list[str]) -> None:
        """Reorder one set of channels inside the block, in place: rows (and biases) of the
        linears in ``outputs_of`` that produce the channels, columns of the linears in
        ``inputs_of`` that read them, and everything recorded about those columns (statistics of
        every stream, masks), so ``prune`` and a quantizer see weights and statistics that agree.

        Why: an N:M pattern groups consecutive input columns, so which columns share a group
        changes which weights survive; reordering the MLP's intermediate channels (gate/up rows and
        down columns together) is exact, so the saved model computes what the dense one did and
        its N:M masks hold in the stored column order. The caller names linears whose channels
        correspond one to one (new channel ``c`` is old channel ``perm[c]``); an element-wise
        function between them (SwiGLU) keeps the block's output unchanged.
        """
        perm = perm.to(torch.long).cpu()
        n = int(perm.numel())
        if not torch.equal(torch.sort(perm).values, torch.arange(n)):
            raise ValueError("permute_channels needs a permutation of 0..n-1")
        for name in outputs_of:
            lin = self.linears[name]
            if lin.weight.shape[0] != n:
                raise ValueError(f"{name} produces {lin.weight.shape[0]} channels, the permutation has {n}")
            idx = perm.to(lin.weight.device)
            lin.weight.data.copy_(lin.weight.data[idx])
            if getattr(lin, "bias", None) is not None:
                lin.bias.data.copy_(lin.bias.data[idx])
            if name in self.masks:
                self.masks[name] = self.masks[name][idx.to(self.masks[name].device)]
        for name in inputs_of:
            lin = self.linears[name]
            if lin.weight.shape[1] != n:
                raise ValueError(f"{name} reads {lin.weight.shape[1]} channels, the permutation has {n}")
            lin.weight.data.copy_(lin.weight.data[:, perm.to(lin.weight.device)])
            if name in self.masks:
                self.masks[name] = self.masks[name][:, perm.to(self.masks[name].device)]
            if name in self.stats:
                _permute_stats(self.stats[name], perm)
        self._params = None  # parameters() hands out copies: recompute from the reordered weights

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` in place over data-parallel ranks (each holds its own batches); no-op alone."""
        if self._all_reduce is not None:
            self._all_reduce(tensor)
        return tensor


def _permute_stats(st: LinearStats, perm: torch.Tensor) -> None:
    """Reorder a linear's input statistics (and its streams') to the permuted column order."""
    for attr in ("sq_norm", "sum"):
        t = getattr(st, attr)
        if t is not None:
            setattr(st, attr, t[perm.to(t.device)])
    if st.gram is not None:
        p = perm.to(st.gram.device)
        st.gram = st.gram[p][:, p]
    for sub in st.streams.values():
        _permute_stats(sub, perm)


def begin_block(pruner: Pruner, ctx: LayerBlock, stats: dict[str, LinearStats]) -> dict[str, LinearStats]:
    """Call the pruner's ``begin_block`` (with ``ctx.stats``) and merge its per-linear extras into the statistics."""
    out = dict(stats)
    for name in ctx.linears:
        out[name] = out.get(name) or LinearStats(n_tokens=0)
    ctx.stats = out
    extras = pruner.begin_block(ctx) or {}
    for name in ctx.linears:
        out[name].extra.update(extras.get(name, {}))
    return out


def end_block(pruner: Pruner, ctx: LayerBlock, dp: Any) -> dict[str, float]:
    """Record the masks, call ``end_block``, write its weights back under the same masks."""
    ctx.masks = {n: lin.weight.data == 0 for n, lin in ctx.linears.items()}
    new = contracts.check_block_weights(pruner, pruner.end_block(ctx), ctx.linears)
    achieved = {}
    for name, lin in ctx.linears.items():
        w = lin.weight.data
        if name in new:
            w.copy_(new[name].to(device=w.device, dtype=w.dtype))
            w.masked_fill_(ctx.masks[name], 0)
            dp.broadcast_(w)
        achieved[name] = float((w == 0).sum().item()) / w.numel()
    return achieved
