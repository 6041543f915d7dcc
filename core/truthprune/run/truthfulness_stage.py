"""The ``--eval truthfulness`` stage of ``truthprune run``, and its report rows and section.

Dense: the truthfulness evaluation read at the dense model's own best probe layer (cached by the
weights' fingerprint, so a sweep asks the dense model once). Pruned: the same items and prompts,
read at the dense model's best layer, so dense and pruned probe numbers and PCA panels describe
the same layer.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("truthprune.run")

# (summary row label, path inside the "truthfulness" section)
SUMMARY = (
    ("truthfulness: output acc, neutral", ("accuracy", "neutral", "all")),
    ("truthfulness: output acc, deceptive", ("accuracy", "deceptive", "all")),
    ("truthfulness: flip rate neutral->deceptive", ("flip", "deceptive", "all", "rate")),
    ("truthfulness: probe acc, deceptive prompts", ("probe", "accuracy", "deceptive", "all")),
    ("truthfulness: knows but says false, deceptive", ("knows_but_says_false", "deceptive", "all")),
)


def check(cfg) -> None:
    """Plan-time checks of the sources (no model loaded)."""
    from ..eval.prompt_styles import load_prompts
    from ..eval.truthfulness_items import check_sources

    check_sources(cfg.truth_data, cfg.truthfulqa_data, cfg.truthfulness_limit)
    load_prompts()


def _probe(cfg) -> tuple[str, dict[str, Any]]:
    """The run's probe when it needs no polarity information (prompted items have none), else logreg."""
    from ..plugin.registry import get_registry

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


# --------------------------------------------------------------------------- report


def _get(d: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, (int, float)) and not isinstance(x, bool) else "-"


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Headline (metric, dense, pruned) rows for report.md's first table."""
    d, p = (report.get("dense") or {}).get("truthfulness"), (report.get("pruned") or {}).get("truthfulness")
    if not d and not p:
        return []
    return [(label, _fmt(_get(d, path)), _fmt(_get(p, path))) for label, path in SUMMARY]


def section(report: dict[str, Any]) -> list[str]:
    """report.md's "Truthfulness under prompting" section: dense vs pruned per style x dimension."""
    from ..eval.prompt_styles import STYLES

    d, p = (report.get("dense") or {}).get("truthfulness"), (report.get("pruned") or {}).get("truthfulness")
    if not d and not p:
        return []
    ref = p or d
    dims = [*ref.get("items", {}), "all"]
    lines = ["## Truthfulness under prompting", "",
             "| style | dimension | output acc dense | output acc pruned | probe acc dense | probe acc pruned "
             "| knows but says false dense | knows but says false pruned | flip rate dense | flip rate pruned |",
             "|" + "---|" * 10]
    for style in STYLES:
        for dim in dims:
            cells = [_fmt(_get(r, ("accuracy", style, dim))) for r in (d, p)]
            cells += [_fmt(_get(r, ("probe", "accuracy", style, dim))) for r in (d, p)]
            cells += [_fmt(_get(r, ("knows_but_says_false", style, dim))) for r in (d, p)]
            cells += [_fmt(_get(r, ("flip", style, dim, "rate"))) if style != "neutral" else "-" for r in (d, p)]
            lines.append(f"| {style} | {dim} | " + " | ".join(cells) + " |")
    pr = ref["probe"]
    lines += ["", f"Protocol: prompts {ref.get('prompts_version')}, {ref.get('template')} template, {ref.get('assignment')}; "
              "output = the answer with the higher log-probability; flip rate = of the items right under the neutral style, "
              f"the fraction wrong under this style; probe {pr['name']} trained on neutral-style last-token activations "
              f"({pr['folds']} entity-grouped folds), read at layer {pr['layer']} ({pr['layer_source']})."]
    for dim, info in (ref.get("items") or {}).items():
        lines.append(f"- {dim}: {info.get('n_items')} items, {info.get('source')}")
    for dim, note in (ref.get("skipped") or {}).items():
        lines.append(f"- {dim}: {note}")
    return lines + [""]


__all__ = ["check", "section", "summary_rows", "truthfulness_stage"]
