"""Capture what decoder layer 0 receives, for every calibration mini-batch.

Rather than rebuilding attention masks, rotary embeddings or cache positions ourselves (which
differ across transformers versions and architectures), we run the real model with a
pre-forward hook on layer 0 that records the hidden states and *every keyword argument* the
layer gets, then aborts the forward pass. Replaying a layer is then ``layer(h, **kwargs)``.

Models whose layers are not all alike (``config.layer_types``: Gemma 2/3 alternate sliding-window
and full attention, with a different attention mask *and* a different rotary table per type) give
each layer the arguments of its own type. For those, a second pass per mini-batch runs the model
with every decoder layer replaced by a recorder that returns its input unchanged (no layer maths,
stopped after the first layer of the last type), and :func:`use_layer_kwargs` switches a batch to
layer i's arguments before the engine runs layer i. Replaying layer 0's arguments everywhere would
run Gemma 3's global layers with the local rotary base (10k instead of 1M).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


class _StopForward(Exception):
    pass


@dataclass
class LayerBatch:
    """One calibration mini-batch at the input of the current layer."""

    hidden: torch.Tensor  # [b, S, d] on the storage device
    kwargs: dict[str, Any]  # attention mask, position ids/embeddings, cache position, ...
    token_mask: torch.Tensor | None  # [b, S] bool: real (non-padding) tokens; None = all real
    index: int = 0  # position of this batch in the single-process batch order
    layer_kwargs: list[dict[str, Any]] | None = None  # per decoder layer, when layers differ (config.layer_types)

    @property
    def size(self) -> int:
        return int(self.hidden.shape[0])


def _to(value: Any, device: torch.device | str) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(_to(v, device) for v in value)
    if isinstance(value, list):
        return [_to(v, device) for v in value]
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def batch_kwargs_to(kwargs: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    return {k: _to(v, device) for k, v in kwargs.items()}


def use_layer_kwargs(batches: list[LayerBatch], index: int) -> None:
    """Make every batch replay decoder layer ``index`` with that layer's own arguments."""
    for b in batches:
        if b.layer_kwargs is not None:
            b.kwargs = b.layer_kwargs[index]


def _distinct_layer_types(model: Any, n_layers: int) -> list[str] | None:
    types = getattr(getattr(model, "config", None), "layer_types", None)
    if isinstance(types, (list, tuple)) and len(types) == n_layers and len(set(types)) > 1:
        return list(types)
    return None


def _clean(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in kwargs.items() if k not in ("hidden_states", "past_key_values", "past_key_value")}
    out["use_cache"] = False
    return out


def _kwargs_per_type(model: Any, layers: Any, types: list[str], ids, mask) -> dict[str, dict[str, Any]]:
    """What the first layer of each type receives, from a pass where every layer is a pass-through."""
    first: dict[str, int] = {}
    for i, t in enumerate(types):
        first.setdefault(t, i)
    wanted, last = set(first.values()), max(first.values())
    got: dict[int, dict[str, Any]] = {}

    def recorder(i: int):
        def forward(*args, **kwargs):
            if i in wanted:
                got[i] = _clean(kwargs)
            if i == last:
                raise _StopForward
            return args[0] if args else kwargs["hidden_states"]

        return forward

    for i in range(last + 1):
        layers[i].forward = recorder(i)
    try:
        model(input_ids=ids, attention_mask=mask, use_cache=False)
    except _StopForward:
        pass
    finally:
        for i in range(last + 1):
            del layers[i].forward  # the class's forward again
    return {t: got[i] for t, i in first.items()}


@torch.no_grad()
def capture_layer0_inputs(
    model: Any,
    layers: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    batch_size: int,
    storage: str = "cpu",
    device: Any = None,
    batch_indices: list[int] | None = None,
    stat_mask: torch.Tensor | None = None,
) -> list[LayerBatch]:
    """Run the model up to layer 0 for each mini-batch and keep layer 0's inputs.

    ``batch_indices`` picks which mini-batches (of ``batch_size`` consecutive samples) this
    process handles; a data-parallel rank captures only its own. ``stat_mask`` [n, S] (optional)
    narrows the tokens that enter statistics below the real ones. ``device`` is where the model's
    embeddings live (needed when the decoder layers themselves are still on the meta device).
    """
    if device is None:
        device = next(model.parameters()).device
    n_batches = -(-int(input_ids.shape[0]) // batch_size)
    indices = list(range(n_batches)) if batch_indices is None else list(batch_indices)
    captured: dict[str, Any] = {}
    types = _distinct_layer_types(model, len(layers))

    def hook(module, args, kwargs):
        if captured.get("off"):
            return None
        hidden = args[0] if args else kwargs.pop("hidden_states")
        captured["hidden"] = hidden
        captured["kwargs"] = {k: v for k, v in kwargs.items() if k != "hidden_states"}
        raise _StopForward

    handle = layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    batches: list[LayerBatch] = []
    try:
        for k in indices:
            start = k * batch_size
            ids = input_ids[start : start + batch_size].to(device)
            mask = attention_mask[start : start + batch_size].to(device)
            try:
                model(input_ids=ids, attention_mask=mask, use_cache=False)
            except _StopForward:
                pass
            kwargs = captured["kwargs"]
            kwargs.pop("past_key_values", None)
            kwargs.pop("past_key_value", None)
            kwargs["use_cache"] = False
            layer_kwargs = None
            if types is not None:
                captured["off"] = True
                try:
                    per_type = {t: batch_kwargs_to(kw, storage) for t, kw in _kwargs_per_type(model, layers, types, ids, mask).items()}
                finally:
                    captured["off"] = False
                layer_kwargs = [per_type[t] for t in types]
            token_mask = mask.bool()
            if stat_mask is not None:
                token_mask = token_mask & stat_mask[start : start + batch_size].to(device).bool()
            batches.append(
                LayerBatch(
                    hidden=captured["hidden"].to(storage),
                    kwargs=batch_kwargs_to(kwargs, storage),
                    token_mask=None if bool(token_mask.all()) else token_mask.to(storage),
                    index=k,
                    layer_kwargs=layer_kwargs,
                )
            )
    finally:
        handle.remove()
    return batches
