"""The ``--eval truthfulness`` stage of ``truthprune run`` (its report rows and section are in
:mod:`truthprune.reporting.truthfulness_section`).

Dense: the truthfulness evaluation read at the dense model's own best probe layer (cached by the
weights' fingerprint, so a sweep asks the dense model once). Pruned: the same items and prompts,
read at the dense model's best layer, so dense and pruned probe numbers and PCA panels describe
the same layer.
"""

from __future__ import annotations

import logging
from typing import Any
from ..eval.prompt_styles import load_prompts
from ..plugin.registry import get_registry

log = logging.getLogger("truthprune.run")

def check(cfg) -> None:
    """Plan-time checks of the sources (no model loaded)."""
    from ..eval.truthfulness_items import check_sources

    check_sources(cfg.truth_data, cfg.truthfulqa_data, cfg.truthfulness_limit)
    load_prompts()


def _probe(cfg) -> tuple[str, dict[str, Any]]:
    """The run's probe when it needs no polarity information (prompted items have none), else logreg."""
    cls = get_registry().get("probe", cfg.probe)
    if getattr(cls, "needs_polarity", False):
        log.info("truthfulness: probe %s needs polarity pairs; using logreg on the prompted items", cfg.probe)
        return "logreg", {}
    return cfg.probe, dict(cfg.probe_options)


def truthfulness(state, role: str) -> tuple[dict[str, Any], Any]:
    """--eval truthfulness of the loaded model (part of the dense-eval / pruned-eval stages); the
    items are loaded once per run and kept in the returned RunState."""
    from ..eval.truthfulness import cached_truthfulness
    from ..eval.truthfulness_items import load_items

    cfg = state.plan.config
    if state.truthfulness_items is None:
        state = state.but(truthfulness_items=load_items(cfg.truth_data, cfg.truthfulqa_data, cfg.truthfulness_limit, cfg.seed))
    items, notes = state.truthfulness_items
    loaded, dense = state.loaded, state.dense
    probe, options = _probe(cfg)
    layer = None
    if role != "dense" and dense and isinstance(dense.get("truthfulness"), dict):
        layer = dense["truthfulness"]["probe"]["best_layer"]
    result = cached_truthfulness(loaded, items, notes, probe=probe, probe_options=options, seed=cfg.seed,
                                 batch_size=None, token_budget=cfg.batch_size * cfg.seqlen, report_layer=layer,
                                 quiet=cfg.quiet)
    if layer is not None:
        result["probe"]["layer_source"] = "the dense model's best layer"
    acc = result["accuracy"]
    log.info("%s truthfulness: output acc honest %.3f neutral %.3f deceptive %.3f, flip %s", role,
             acc["honest"]["all"], acc["neutral"]["all"], acc["deceptive"]["all"], result["flip"]["deceptive"]["all"]["rate"])
    return result, state


__all__ = ["check", "truthfulness"]
