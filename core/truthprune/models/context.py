"""A model's context length, and the one check of ``--seqlen`` against it.

Why one place: the plan-time check (from a local config.json), the load stage (from the loaded
model), ``prune --offload`` (from the checkpoint) and perplexity all ask it; each used to carry its
own copy of the check and of the config keys it reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserError
from ..textio import read_json_file

_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def _setting(config: Any, key: str) -> Any:
    return config.get(key) if isinstance(config, dict) else getattr(config, key, None)


def context_length(config: Any) -> int | None:
    """The longest sequence a model config's position scheme supports (a config object or a
    config.json dict; a multimodal config's ``text_config`` counts); None when it does not say."""
    text = _setting(config, "text_config")
    sizes = text if text is not None else config
    for key in _CONTEXT_KEYS:
        value = _setting(sizes, key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def check_seqlen(seqlen: int, context: int | None) -> None:
    """The one context-length check: ``--seqlen`` must fit the model's context (None: unknown)."""
    if context is not None and seqlen > context:
        raise UserError(f"--seqlen {seqlen} is longer than the model's context of {context} tokens; "
                        f"use --seqlen {context} or less")
