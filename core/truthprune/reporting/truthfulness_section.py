"""report.md's truthfulness rows and its "Truthfulness under prompting" section, from the
``truthfulness`` results of the dense and the pruned model (the ``--eval truthfulness`` stage)."""

from __future__ import annotations

from typing import Any

from ..eval.prompt_styles import STYLES

# (summary row label, path inside the "truthfulness" section)
SUMMARY = (
    ("truthfulness: output acc, neutral", ("accuracy", "neutral", "all")),
    ("truthfulness: output acc, deceptive", ("accuracy", "deceptive", "all")),
    ("truthfulness: flip rate neutral->deceptive", ("flip", "deceptive", "all", "rate")),
    ("truthfulness: probe acc, deceptive prompts", ("probe", "accuracy", "deceptive", "all")),
    ("truthfulness: knows but says false, deceptive", ("knows_but_says_false", "deceptive", "all")),
)


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


__all__ = ["section", "summary_rows"]
