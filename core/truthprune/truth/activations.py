"""Last-token residual-stream activations of every decoder layer (reference 10.1), batched and cached.

What is captured: the output hidden state of decoder layer l (the residual stream after the
block) at the statement's last real token, via forward hooks on the decoder layers. Not
``output_hidden_states``: its last element has the final norm applied, which the probes and the
separation profile must not see.

Input: each statement encoded alone (no system prompt), with a BOS token prepended when the
tokenizer does not add one itself (``add_bos``; SmolLM2's tokenizer adds none, and the reference
always feeds a BOS). Why BOS by default: the first position of a decoder acts as an attention
sink with huge activations; with a BOS that role goes to a fixed token instead of the statement's
first word, so the statement's own tokens are processed as in normal use. ``chat_template=True``
instead wraps each statement as a user turn of the tokenizer's chat template (trailing whitespace
removed, so the last token is the end-of-turn marker).

Batching (:mod:`truthprune.truth.last_token`): statements are sorted by length, cut into batches
of at most ``token_budget`` padded tokens, RIGHT-padded and run with an attention mask. With
right padding the real tokens keep positions 0..len-1 and never attend to padding (causal
mask), so the gathered last-token vectors equal the batch-size-1 ones up to float rounding
(tested to 1e-4 relative). Layers past the deepest requested one are not run.

Cache: ``extract_last_token(..., fingerprint=...)`` stores the result under the cache directory,
keyed by the model fingerprint, the statements' hash, the layers and the options, so the dense
baseline of a dataset is computed once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..models.adapter import decoder_layers, resolve_layers
from ..models.bos import tokenizer_adds_bos  # one BOS rule for the whole package (re-exported here)
from ..errors import UserError
from .last_token import DEFAULT_TOKEN_BUDGET, last_token_states, pad_token_id, right_pad  # noqa: F401 (right_pad re-exported)
from ..cache import cache_root, read_cache_entry
from ..models.bos import apply_chat_template

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``<truthprune cache root>/activations`` (``$TRUTHPRUNE_CACHE`` or ``~/.cache/truthprune``)."""
    return cache_root() / "activations"


def _token_ids(tokenizer: Any, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
    """Token ids of each text; one batched call for a fast (Rust) tokenizer, which encodes the
    texts in parallel, else one call per text (any callable returning ``input_ids`` works)."""
    if getattr(tokenizer, "is_fast", False) and texts:
        return [list(ids) for ids in tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"]]
    return [list(tokenizer(t, add_special_tokens=add_special_tokens)["input_ids"]) for t in texts]


def encode_statements(
    tokenizer: Any, statements: Sequence[str], chat_template: bool = False, add_bos: bool = True
) -> list[list[int]]:
    """Token ids of each statement alone, as :func:`extract_last_token` feeds them."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if add_bos and bos is None:
        log.warning("the tokenizer has no BOS token; statements are encoded without one")
    if chat_template:
        if not getattr(tokenizer, "chat_template", None):
            raise UserError("--chat-template was given but the tokenizer has no chat template; drop the flag")

        texts = [apply_chat_template(tokenizer, [{"role": "user", "content": s}]).rstrip() for s in statements]
        encoded = _token_ids(tokenizer, texts, add_special_tokens=False)
    else:
        encoded = _token_ids(tokenizer, list(statements), add_special_tokens=True)
    if add_bos and bos is not None:
        encoded = [ids if ids and ids[0] == bos else [bos, *ids] for ids in encoded]
    empty = next((s for s, ids in zip(statements, encoded) if not ids), None)
    if empty is not None:
        raise UserError(f"statement {empty!r} encodes to no tokens")
    return encoded


def cache_key(fingerprint: str, content_hash: str, layers: Sequence[int], chat_template: bool, add_bos: bool, dtype: str) -> str:
    payload = {
        "format": CACHE_FORMAT,
        "model": fingerprint,
        "data": content_hash,
        "layers": list(layers),
        "chat_template": bool(chat_template),
        "add_bos": bool(add_bos),
        "dtype": dtype,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:40]


def extract_last_token(
    model: Any,
    tokenizer: Any,
    statements: Sequence[str],
    layers: Sequence[int] | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    chat_template: bool = False,
    add_bos: bool = True,
    fingerprint: str | None = None,
    cache_dir: str | Path | None = None,
    quiet: bool = True,
    token_budget: int = DEFAULT_TOKEN_BUDGET,
) -> np.ndarray:
    """Activations [n_layers, n, d] float32 of each requested decoder layer at the last token.

    ``layers`` (None = all, negative = from the end) are returned in the order given.
    ``fingerprint`` (e.g. ``LoadedModel.fingerprint``) enables the disk cache in ``cache_dir``
    (default :func:`default_cache_dir`); without it nothing is cached. Statements are batched by
    ``token_budget`` padded tokens per forward; ``batch_size`` additionally caps the statements
    per forward (None: no cap). Neither changes the result beyond float rounding.
    """
    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    if token_budget < 1:
        raise UserError(f"the token budget per forward must be >= 1, got {token_budget}")
    statements = list(statements)
    if not statements:
        raise UserError("no statements to extract activations for")
    modules = decoder_layers(model)
    layer_idx = resolve_layers(layers, len(modules))
    dtype = str(next(model.parameters()).dtype)
    path = None
    if fingerprint is not None:
        from .datasets import statements_hash

        key = cache_key(fingerprint, statements_hash(statements), layer_idx, chat_template, add_bos, dtype)
        path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = path / f"{key}.npy"

        arr = read_cache_entry(path, np.load, "cached activations")
        if arr is not None:
            if arr.shape[:2] == (len(layer_idx), len(statements)):
                log.info("activations from cache %s", path)
                return arr
            log.warning("ignoring cache file %s with unexpected shape %s", path, arr.shape)
    encoded = encode_statements(tokenizer, statements, chat_template=chat_template, add_bos=add_bos)
    was_training = model.training
    model.eval()
    try:
        acts = last_token_states(model, modules, layer_idx, encoded, pad_id=pad_token_id(tokenizer), device=device,
                                 token_budget=token_budget, max_rows=batch_size,
                                 progress_label=None if quiet else "extracting activations")
    finally:
        model.train(was_training)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, acts)
        os.replace(tmp, path)
    return acts


__all__ = ["extract_last_token", "encode_statements", "tokenizer_adds_bos", "default_cache_dir"]
