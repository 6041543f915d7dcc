"""Accumulate float32 input statistics of linear layers with forward hooks.

Which statistics are collected is declared by the pruner/allocator (``required_stats``), so a new
method never edits the engine. Padding positions (token_mask False) are excluded.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch

from ..interfaces import STAT_GRAM, STAT_SQ_NORM, LinearStats


class StatsCollector:
    def __init__(self, linears: dict[str, torch.nn.Linear], required: frozenset[str]):
        self.linears = linears
        self.required = frozenset(required)
        self.token_mask: torch.Tensor | None = None  # set per batch by the engine
        self.stats: dict[str, LinearStats] = {}
        for name, lin in linears.items():
            d = lin.in_features
            dev = lin.weight.device
            self.stats[name] = LinearStats(
                n_tokens=0,
                sq_norm=torch.zeros(d, dtype=torch.float32, device=dev) if STAT_SQ_NORM in self.required else None,
                gram=torch.zeros(d, d, dtype=torch.float32, device=dev) if STAT_GRAM in self.required else None,
            )

    def _hook(self, name: str):
        def hook(module, inputs, output):
            x = inputs[0].detach()
            x = x.reshape(-1, x.shape[-1])
            if self.token_mask is not None:
                x = x[self.token_mask.reshape(-1).to(x.device)]
            x = x.float()
            st = self.stats[name]
            st.n_tokens += x.shape[0]
            if st.sq_norm is not None:
                st.sq_norm += (x * x).sum(dim=0)
            if st.gram is not None:
                st.gram.addmm_(x.t(), x)

        return hook

    @contextmanager
    def attached(self):
        if not self.required:
            yield self
            return
        handles = [lin.register_forward_hook(self._hook(name)) for name, lin in self.linears.items()]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()


def layer_output(out: Any) -> torch.Tensor:
    """Decoder layers return a tensor (new transformers) or a tuple whose first item is it."""
    return out[0] if isinstance(out, (tuple, list)) else out
