"""Can truthprune prune this model as asked? Answered at plan time, before any weight is read.

For a local model directory the architecture is built from its ``config.json`` on the meta
device (no memory, no weights) and checked like the loaded model will be: a causal-LM class
exists, the decoder layers are found, ``--targets``/``--ignore`` select at least one weight, and
no selected MoE expert layout is one the engine cannot prune. Embedded aliases are known to
work; ``.gguf`` files and hub ids are checked right after loading (:func:`check_loaded`), still
before calibration.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import UserError
from .adapter import TargetSelection, check_targets

log = logging.getLogger(__name__)


def selection_of(config: Any) -> TargetSelection:
    """The target selection of a run configuration (``targets`` / ``ignore``)."""
    return TargetSelection.from_options(getattr(config, "targets", None), getattr(config, "ignore", None))


def skeleton(model_config: Any, trust_remote_code: bool = False):
    """The model class of ``model_config`` instantiated on the meta device, or a UserError."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(model_config, trust_remote_code=trust_remote_code)
    except ValueError as err:
        kind = getattr(model_config, "model_type", "?")
        if "Unrecognized configuration class" in str(err) or "does not recognize" in str(err):
            raise UserError(
                f"model type {kind!r} has no decoder-only causal-LM class in transformers, so truthprune cannot prune it; "
                "supported families are listed in docs/models.md (Llama, Mistral, Qwen2/3, Gemma 2/3, Phi-3, Mixtral, Qwen-MoE)"
            ) from None
        raise


def plan_check(config: Any) -> TargetSelection:
    """Validate ``--targets``/``--ignore`` and, for a local model directory, the architecture."""
    selection = selection_of(config)
    spec = str(getattr(config, "model", ""))
    from .embedded import CHUNKED, chunk_paths

    if spec in CHUNKED:
        chunk_paths(spec)  # every chunk wheel installed, or one line with the pip command
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        from transformers import AutoConfig

        try:
            model_config = AutoConfig.from_pretrained(str(path), trust_remote_code=getattr(config, "trust_remote_code", False))
        except ValueError as err:
            raise UserError(f"{spec}/config.json cannot be read by transformers ({str(err).splitlines()[0][:160]})") from None
        check_targets(skeleton(model_config, getattr(config, "trust_remote_code", False)), selection)
    return selection


def check_loaded(model: Any, config: Any) -> TargetSelection:
    """The same check on a loaded model (for .gguf files and hub ids); returns the selection."""
    selection = selection_of(config)
    names = check_targets(model, selection)
    log.info("pruning targets per decoder layer: %d (%s%s)", len(names), ", ".join(names[:6]), ", ..." if len(names) > 6 else "")
    return selection


def check_layer_indices(spec: str, layers: list[int] | None, flag: str) -> None:
    """Decoder-layer indices (``--layers 99``) against a local model's config, before it loads."""
    if not layers:
        return
    from .loading import cached_config

    cfg = cached_config(spec)
    sizes = cfg.get("text_config") if isinstance(cfg, dict) and isinstance(cfg.get("text_config"), dict) else cfg
    n = sizes.get("num_hidden_layers") if isinstance(sizes, dict) else None
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        return  # known only once the model is loaded (a hub id, a first-use .gguf): checked then
    from ..truth.activations import resolve_layers

    try:
        resolve_layers(layers, n)
    except UserError as err:
        raise UserError(f"{flag}: {err}") from None
