"""Batched forward passes that keep only each sequence's last-token hidden states.

Shared by statement extraction (:mod:`truthprune.truth.activations`) and truthfulness prompting
(:mod:`truthprune.eval.truthfulness`): both feed many short token sequences and read, per
sequence, the residual stream of some decoder layers at its last real token (and, for prompting,
the next-token logits there).

Why it is built this way (each point is about speed, none changes a number):

* **Batches by token budget.** Sequences are sorted by length and cut into consecutive batches
  of at most ``token_budget`` padded tokens (rows x longest row). A statement of ~15 tokens in a
  batch of 16 makes matrix products of a few hundred rows, where per-call overhead and thread
  start-up dominate; a budget of a few thousand tokens gives the products the shape of a
  calibration batch. Sorting keeps the padding small.
* **Right padding.** Real tokens keep positions 0..len-1 and, the attention being causal, never
  see the padding after them; the attention mask is still passed, so models whose attention is
  not purely causal stay exact too.
* **Only what is asked for.** Hooks on the requested decoder layers copy the last-token rows
  (one gather per layer and batch, into a preallocated tensor); when no logits are wanted, the
  forward is stopped after the deepest requested layer, so later layers, the final norm and the
  output head never run. With logits, only the last positions go through the output head.
* Everything runs under ``torch.inference_mode``; no Python loop over sequences.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

import numpy as np
from ..progress import bar

DEFAULT_TOKEN_BUDGET = 4096  # padded tokens per forward: the engine's default calibration batch (8 x 512)


class _StopForward(Exception):
    """Raised by the hook of the deepest requested layer: the rest of the model is not needed."""


def pad_token_id(tokenizer: Any) -> int:
    """The id right padding uses: the tokenizer's pad token, else its EOS, else 0 (padding is
    never attended to by a real token, so its value only has to be a valid id)."""
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None:
        pad = getattr(tokenizer, "eos_token_id", None) or 0
    return int(pad)


def length_sorted_batches(lengths: Sequence[int], token_budget: int, max_rows: int | None = None) -> list[np.ndarray]:
    """Indices sorted by (length, index), cut into consecutive batches of at most ``token_budget``
    padded tokens (rows x longest length; a longer sequence gets a batch of its own) and at most
    ``max_rows`` rows. Deterministic; every index appears exactly once."""
    lens = np.asarray(lengths, dtype=np.int64)
    order = np.lexsort((np.arange(len(lens)), lens))
    batches, start = [], 0
    cap = max_rows or len(lens)
    while start < len(order):
        # sorted ascending, so a batch [start, stop) is as wide as its last row
        stop = start + 1
        while stop < len(order) and stop - start < cap and (stop - start + 1) * lens[order[stop]] <= token_budget:
            stop += 1
        batches.append(order[start:stop])
        start = stop
    return batches


def right_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    """Token-id lists right-padded into (ids, attention mask) LongTensors [len(seqs), longest];
    row r's last real token is at ``mask[r].sum() - 1``. Vectorised (no per-row tensor)."""
    import torch

    lens = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    width = int(lens.max())
    mask = np.arange(width)[None, :] < lens[:, None]
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    ids[mask] = np.fromiter(chain.from_iterable(seqs), dtype=np.int64, count=int(lens.sum()))  # row-major fill
    return torch.from_numpy(ids), torch.from_numpy(mask.astype(np.int64))


def _output_head_logits(model: Any, ids, mask, last_pos):
    """Logits at each row's last real position; only those positions go through the output head
    when the model accepts ``logits_to_keep`` as positions (recent transformers)."""
    import torch

    positions = torch.unique(last_pos)
    try:
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=positions).logits
        if logits.shape[1] == len(positions):
            col = torch.searchsorted(positions, last_pos)
            return logits[torch.arange(len(last_pos), device=logits.device), col]
    except TypeError:
        pass
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    return logits[torch.arange(len(last_pos), device=logits.device), last_pos]


def last_token_states(
    model: Any,
    layer_modules: Sequence[Any],
    layers: Sequence[int],
    seqs: Sequence[Sequence[int]],
    *,
    pad_id: int,
    token_budget: int = DEFAULT_TOKEN_BUDGET,
    max_rows: int | None = None,
    device: Any = None,
    on_logits: Callable[[np.ndarray, Any], None] | None = None,
    progress_label: str | None = None,
) -> np.ndarray:
    """Hidden states [len(layers), n, d] float32 of the given decoder layers at each sequence's
    last token, in ``layers`` order and input order.

    ``on_logits(idx, logits)``, when given, receives each batch's sequence indices and their
    last-position logits [rows, vocab] (the full forward runs); without it the forward stops
    after the deepest requested layer. The model must be in eval mode (the caller's choice).
    """
    import torch

    if not seqs:
        raise ValueError("last_token_states needs at least one sequence")
    device = device or next(model.parameters()).device
    batches = length_sorted_batches([len(s) for s in seqs], token_budget, max_rows)
    deepest = max(layers) if on_logits is None else None
    state: dict[str, Any] = {}

    def make_hook(slot: int, layer: int):
        def hook(_module, _inputs, output):
            hidden = output[0] if isinstance(output, (tuple, list)) else output
            if "out" not in state:
                state["out"] = torch.empty((len(layers), len(seqs), hidden.shape[-1]), dtype=torch.float32)
            state["out"][slot, state["idx"]] = hidden[state["rows"], state["last"]].float().cpu()
            if layer == deepest:
                raise _StopForward

        return hook

    handles = [layer_modules[layer].register_forward_hook(make_hook(k, layer)) for k, layer in enumerate(layers)]

    try:
        with bar(progress_label or "", len(seqs), unit="statements", quiet=progress_label is None) as advance, \
                torch.inference_mode():
            for idx in batches:
                ids, mask = right_pad([seqs[i] for i in idx], pad_id)
                ids, mask = ids.to(device), mask.to(device)
                state.update(idx=torch.from_numpy(idx), rows=torch.arange(len(idx), device=device), last=mask.sum(1) - 1)
                try:
                    if on_logits is None:
                        model(input_ids=ids, attention_mask=mask, use_cache=False)
                    else:
                        on_logits(idx, _output_head_logits(model, ids, mask, state["last"]))
                except _StopForward:
                    pass
                advance(len(idx))
    finally:
        for h in handles:
            h.remove()
    return state["out"].numpy()


__all__ = ["DEFAULT_TOKEN_BUDGET", "last_token_states", "length_sorted_batches", "pad_token_id", "right_pad"]
