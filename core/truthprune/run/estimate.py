"""Rough time of each stage of a run, known before anything loads (``--dry-run`` and the ETA).

Why only rough: the speed of a machine is unknown until it has run something. The constants
below were measured on a 2-core CPU (AMD EPYC, idle) with SmolLM2-135M in float32; a stage's
estimate scales them by the work it does (tokens, statements, calibration samples) and by the
model's compute size relative to SmolLM2's. On a GPU or a bigger CPU every stage is faster; the
progress lines rescale the remaining estimates by how fast the finished stages turned out to be
(:class:`truthprune.progress.StageLine`).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from ..eval.perplexity import default_max_windows
from ..models.spec import ModelRef
from ..pruning.engine.memory import ModelShape

# Measured on the reference machine (2 vCPU, SmolLM2-135M float32, idle), see docs/usage.md.
REF_LAYER_PARAMS = 30 * 3_540_096  # SmolLM2-135M: decoder parameters that every token passes through
PPL_TOKENS_PER_S = 292.0  # perplexity windows (logits included)
STATEMENTS_PER_S = 19.3  # last-token activations of short statements, every layer
PRUNE_TOKENS_PER_S = 470.0  # calibration tokens through one engine pass (statistics + masks + propagation)
CONVERT_S = 18.0  # the embedded GGUF -> safetensors conversion, once
LOAD_S = 1.0
PROBE_FIT_S = 0.02  # one logistic-regression fit on a few hundred statements
TRUTHFULQA_S_PER_QUESTION = 0.6

# decoder shapes of the embedded models before their first conversion (no config.json yet)
_EMBEDDED = {
    "smollm2-135m": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
                     "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True},
    "gemma3-270m": {"hidden_size": 640, "intermediate_size": 2048, "num_hidden_layers": 18, "num_attention_heads": 4,
                    "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 262144, "tie_word_embeddings": True},
}


def model_shape(ref: ModelRef) -> Any | None:
    """The model's :class:`~truthprune.pruning.engine.memory.ModelShape` from its config.json (a
    local directory, or a cached conversion), or the known shape of an embedded model; None when
    unknown (a hub id not in the cache)."""
    data = ref.config or _EMBEDDED.get(ref.spec)
    if not data:
        return None
    data = data.get("text_config") if isinstance(data.get("text_config"), dict) else data
    try:
        return ModelShape.from_config(SimpleNamespace(**data))
    except (AttributeError, TypeError, ValueError):
        return None


def scale_of(ref: ModelRef) -> float | None:
    """How much more compute a token costs on this model than on SmolLM2-135M (None: unknown)."""
    shape = model_shape(ref)
    return None if shape is None else shape.layers * shape.layer_params / REF_LAYER_PARAMS


def _ppl_windows(cfg: Any) -> int:
    windows = default_max_windows(cfg.ppl_data, cfg.ppl_max_windows)
    if windows is not None:
        return windows
    import os

    if os.path.isfile(cfg.ppl_data):  # about 4 characters per token
        return max(1, os.path.getsize(cfg.ppl_data) // 4 // cfg.seqlen)
    return 300  # WikiText-2 test: about 280 windows of 1024 tokens


def _eval_seconds(cfg: Any, truth_statements: int) -> float:
    seconds = 0.0
    if "ppl" in cfg.eval:
        seconds += _ppl_windows(cfg) * cfg.seqlen / PPL_TOKENS_PER_S
    if "truthfulqa" in cfg.eval:
        seconds += (cfg.truthfulqa_limit or 408) * TRUTHFULQA_S_PER_QUESTION
    if "truthfulness" in cfg.eval:
        seconds += 3 * 3 * cfg.truthfulness_limit / STATEMENTS_PER_S
    return seconds


def stage_seconds(plan: Any, names: list[str]) -> dict[str, float]:
    """Stage name -> estimated seconds on the reference machine, scaled to the plan's model."""
    cfg = plan.config
    scale = scale_of(plan.model_ref) or 1.0
    sets = plan.truth_sets.probed if plan.truth_sets is not None else []
    n_statements = sum(len(s) for s in sets)
    tokens = cfg.nsamples * cfg.seqlen
    passes = 2 if getattr(plan.allocator, "needs_dense_pass", False) else 1  # a dense pre-pass (OWL-style allocators)
    fits = (getattr(plan, "n_layers", None) or 30) * max(len(sets), 1) * 2 + 100
    est = {
        "convert-gguf": CONVERT_S * scale,
        "load": LOAD_S * scale,
        "dense-eval": _eval_seconds(cfg, n_statements) * scale,
        "dense-truth": n_statements / STATEMENTS_PER_S * scale,
        "truth-profile": 0.0 if "dense-truth" in names else n_statements / STATEMENTS_PER_S * scale,
        "calibrate": 1.0,
        "prune": passes * tokens / PRUNE_TOKENS_PER_S * scale,
        "pruned-eval": _eval_seconds(cfg, n_statements) * scale,
        "truth-compare": n_statements / STATEMENTS_PER_S * scale + fits * PROBE_FIT_S,
        "save": 2.0 * scale,
    }
    return {name: round(est.get(name, 1.0), 1) for name in names}


__all__ = ["stage_seconds", "scale_of", "model_shape"]
