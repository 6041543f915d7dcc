"""Capture what decoder layer 0 receives, for every calibration mini-batch.

Rather than rebuilding attention masks, rotary embeddings or cache positions ourselves (which
differ across transformers versions and architectures), we run the real model with a
pre-forward hook on layer 0 that records the hidden states and *every keyword argument* the
layer gets, then aborts the forward pass. Replaying a layer is then ``layer(h, **kwargs)``.
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

    def hook(module, args, kwargs):
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
            token_mask = mask.bool()
            if stat_mask is not None:
                token_mask = token_mask & stat_mask[start : start + batch_size].to(device).bool()
            batches.append(
                LayerBatch(
                    hidden=captured["hidden"].to(storage),
                    kwargs=batch_kwargs_to(kwargs, storage),
                    token_mask=None if bool(token_mask.all()) else token_mask.to(storage),
                    index=k,
                )
            )
    finally:
        handle.remove()
    return batches
