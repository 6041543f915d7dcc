"""Registration: the ``structured`` pruner and the ``truthprune finetune`` command (LoRA recovery).

No torch (and no peft) import at module level: ``truthprune --help`` and ``truthprune plugins``
import this module. The maths is in :mod:`truthprune_structured.importance`, the training loop in
:mod:`truthprune_structured.lora`.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Literal

from pydantic import Field

from truthprune import StructuredConfig, StructuredPruner, hookimpl

log = logging.getLogger("truthprune.structured")


class StructuredOptions(StructuredConfig):
    importance: Literal["entropy", "taylor-ce", "magnitude", "wanda-sum"] = "entropy"
    """entropy (HFPrune, label-free), taylor-ce (LLM-Pruner), magnitude (L2), wanda-sum (|W|*||X||)."""
    aggregate: Literal["element", "vector"] = "element"
    """Gradient importances: sum of |g*w| over the unit (element), or |sum of g*w| (vector)."""
    micro_batch: int = Field(1, ge=1)
    """Calibration windows per forward/backward pass (memory grows with it; the result does not)."""
    cache: bool = True
    """Reuse importances computed for the same weights, calibration windows and options."""


class StructuredImportancePruner(StructuredPruner):
    name = "structured"
    description = "Structured: remove whole MLP channels (+ KV head groups) by entropy, taylor-ce, magnitude or wanda-sum importance."
    Config = StructuredOptions

    def importance(self, model, calib, layers, context):
        from .importance import unit_importance

        o = self.config
        run = lambda: unit_importance(model, calib, layers, o.importance, heads=context["heads"], aggregate=o.aggregate,  # noqa: E731
                                      micro_batch=o.micro_batch, batch_size=context["batch_size"], device=context["device"],
                                      quiet=context["quiet"])
        if not o.cache or o.importance == "magnitude":
            return run()
        return _cached(model, calib, layers, o, context["heads"], run)


def _cached(model, calib, layers, opts, heads: bool, compute):
    """Importances on disk under the truthprune cache, keyed by weights, windows and options (a
    20 % and a 30 % model of the same importance then cost one gradient pass).

    Stored as plain tensors ({layer: {"mlp": ..., "heads": ...}}, read with weights_only=True), not
    pickled UnitScores objects: a pickle names the class's module, so a cache entry would stop
    loading when core's modules move (the "v2" in the key skips entries of the pickled format)."""
    import os

    import torch

    from truthprune import UnitScores, cache_root, read_cache_entry, weights_fingerprint

    h = hashlib.sha256(b"v2")
    for part in (weights_fingerprint(model), opts.importance, opts.aggregate, str(heads), str([la.index for la in layers])):
        h.update(part.encode())
    h.update(calib.input_ids.numpy().tobytes())
    h.update(calib.attention_mask.numpy().tobytes())
    path = cache_root() / "results" / "structured-importance" / f"{h.hexdigest()[:24]}.pt"
    stored = read_cache_entry(path, lambda p: torch.load(p, weights_only=True), "cached importance scores")
    if stored is not None:
        log.info("importance %s: using cached scores %s", opts.importance, path)
        return {k: UnitScores(mlp=v["mlp"], heads=v.get("heads")) for k, v in stored.items()}
    scores = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save({k: {"mlp": v.mlp, **({"heads": v.heads} if v.heads is not None else {})} for k, v in scores.items()}, tmp)
    os.replace(tmp, path)
    return scores


@hookimpl
def register_pruners(register):
    register(StructuredImportancePruner)


@hookimpl
def register_commands(app):
    from .finetune_cmd import add_finetune_command

    add_finetune_command(app)
