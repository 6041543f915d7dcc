"""Per-decoder-block hooks: what a block-aware pruner sees of the layer it is pruning.

Why this exists: most pruners decide each linear layer alone from its input statistics. Some
methods need the whole decoder block: Wanda++ scores weights with the gradient of the block's
output norm ("regional" gradients, no full-model backward) and afterwards nudges the kept weights
so that the pruned block reproduces the dense block's outputs. A pruner that sets
``uses_block = True`` gets two calls per decoder layer with a :class:`BlockContext`:

* ``begin_block(ctx)`` after the statistics pass and before ``prune`` of the block's linears; it
  may return ``{linear name: {key: value}}``, merged into that linear's ``LinearStats.extra``;
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
from ...plugin.interfaces import LinearStats, Pruner
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
class BlockContext:
    """Decoder layer ``index`` with its calibration inputs and dense outputs (see module doc)."""

    index: int
    layer: torch.nn.Module
    linears: dict[str, torch.nn.Linear]
    device: torch.device
    _inputs: list[LayerBatch]
    _dense: list[LayerBatch]
    _all_reduce: Any = None
    masks: dict[str, torch.Tensor] = field(default_factory=dict)  # filled before end_block; True = pruned
    _params: dict[str, torch.Tensor] | None = None

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

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` in place over data-parallel ranks (each holds its own batches); no-op alone."""
        if self._all_reduce is not None:
            self._all_reduce(tensor)
        return tensor


def begin_block(pruner: Pruner, ctx: BlockContext, stats: dict[str, LinearStats]) -> dict[str, LinearStats]:
    """Call the pruner's ``begin_block`` and merge its per-linear extras into ``stats``."""
    extras = pruner.begin_block(ctx) or {}
    out = dict(stats)
    for name in ctx.linears:
        st = out.get(name) or LinearStats(n_tokens=0)
        st.extra.update(extras.get(name, {}))
        out[name] = st
    return out


def end_block(pruner: Pruner, ctx: BlockContext, dp: Any) -> dict[str, float]:
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
