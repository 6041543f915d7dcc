"""Statistics of mixture-of-experts matrices, each from the tokens routed to that expert only.

transformers stores a MoE block's experts as fused ``[E, out, in]`` parameters and, in its eager
implementation, runs expert ``e`` as ``F.linear(x_e, W[e])`` on exactly the tokens the router
sent to it (``x_e = hidden[token_idx]`` for ``gate_up_proj``, the activated intermediate for
``down_proj``). There is no per-expert module to hook, so during a statistics pass the engine

* switches the experts modules to the eager implementation (the fused grouped-mm kernels never
  expose per-expert inputs), restoring the setting afterwards;
* watches ``F.linear`` through a ``TorchFunctionMode`` and, when its weight is a view of a tracked
  expert parameter, records the input as that expert's statistics;
* reads each block's routing (``top_k_index``) with a pre-hook, so padded calibration positions
  are dropped from the routed rows exactly as they are for the dense linears.

An expert may run zero times in a batch (no token routed to it) or, in principle, more than once;
both just add zero or several contributions to its running sums. The engine never stops such a
layer early (routing differs per batch), see ``StatsCollector.single_call_per_linear``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


class _LinearWatch(TorchFunctionMode):
    def __init__(self, on_linear: Callable[[torch.Tensor, torch.Tensor], None]):
        super().__init__()
        self.on_linear = on_linear

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            x = args[0] if args else kwargs["input"]
            w = args[1] if len(args) > 1 else kwargs["weight"]
            self.on_linear(x, w)
        return func(*args, **kwargs)


class ExpertTap:
    """Feeds ``record(name, x, row_mask)`` with each tracked expert's routed inputs."""

    def __init__(self, experts: dict[str, Any], record: Callable[[str, torch.Tensor, Any], None]):
        self.record = record
        self.token_mask: torch.Tensor | None = None
        self._routing: dict[int, torch.Tensor] = {}
        # storage pointer -> (parameter, owning module id, {expert index: name})
        self._params: dict[int, tuple[torch.Tensor, int, dict[int, str]]] = {}
        self._modules: dict[int, Any] = {}
        for name, ew in experts.items():
            p = getattr(ew.module, ew.param)
            key = p.untyped_storage().data_ptr()
            entry = self._params.setdefault(key, (p, id(ew.module), {}))
            entry[2][ew.index] = name
            self._modules[id(ew.module)] = ew.module

    def _on_linear(self, x: torch.Tensor, w: torch.Tensor) -> None:
        if w.dim() != 2:
            return
        entry = self._params.get(w.untyped_storage().data_ptr())
        if entry is None:
            return
        p, module_id, names = entry
        if tuple(w.shape) != tuple(p.shape[1:]):
            return
        index = (w.storage_offset() - p.storage_offset()) // p.stride(0)
        name = names.get(index)
        if name is None:
            return
        self.record(name, x, self._row_mask(module_id, index, x))

    def _row_mask(self, module_id: int, index: int, x: torch.Tensor):
        """Which routed rows of expert ``index`` are real tokens (None: all of them)."""
        if self.token_mask is None:
            return None
        top_k = self._routing.get(module_id)
        if top_k is None:
            raise RuntimeError("MoE statistics with padding need the routing of the experts call; none was seen")
        _pos, token_idx = torch.where(top_k.reshape(-1, top_k.shape[-1]).t() == index)
        if token_idx.numel() != x.reshape(-1, x.shape[-1]).shape[0]:
            raise RuntimeError(
                f"expert {index} ran on {x.shape[0]} rows but {token_idx.numel()} tokens were routed to it; "
                "this MoE implementation orders tokens differently (use calibration without padding)"
            )
        return self.token_mask.reshape(-1).to(token_idx.device)[token_idx]

    @contextmanager
    def attached(self):
        handles, saved = [], []

        def capture(module_id: int):
            def hook(_module, args, kwargs):
                top_k = args[1] if len(args) > 1 else kwargs.get("top_k_index")
                if isinstance(top_k, torch.Tensor):
                    self._routing[module_id] = top_k

            return hook

        for module_id, module in self._modules.items():
            handles.append(module.register_forward_pre_hook(capture(module_id), with_kwargs=True))
            config = getattr(module, "config", None)
            if config is not None and hasattr(config, "_experts_implementation"):
                saved.append((config, config._experts_implementation))
                config._experts_implementation = "eager"
        try:
            with _LinearWatch(self._on_linear):
                yield self
        finally:
            for h in handles:
                h.remove()
            for config, value in reversed(saved):
                config._experts_implementation = value
            self._routing.clear()
