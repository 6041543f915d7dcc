"""Render ``report.md`` (and plots, when matplotlib is present) from a ``report.json`` dict.

Kept separate from the pipeline so ``truthprune report OUT`` can re-render a finished run.
The markdown starts with what a person wants first: dense vs pruned in one table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import UserError


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(metric, dense, pruned) rows for every evaluation present in the report."""
    dense, pruned = report.get("dense", {}), report.get("pruned", {})
    rows = []
    if "ppl" in dense or "ppl" in pruned:
        rows.append(("perplexity", _fmt(dense.get("ppl", {}).get("ppl")), _fmt(pruned.get("ppl", {}).get("ppl"))))
    if "truthfulqa" in dense or "truthfulqa" in pruned:
        for k in ("mc1", "mc2"):
            rows.append((f"TruthfulQA {k.upper()}", _fmt(dense.get("truthfulqa", {}).get(k)), _fmt(pruned.get("truthfulqa", {}).get(k))))
    probe_d, probe_p = dense.get("probe", {}), pruned.get("probe", {})
    for key, label in (("best_accuracy", "probe accuracy (best layer)"), ("mean_accuracy", "probe accuracy (mean over layers)"),
                       ("cross_topic_accuracy", "probe cross-topic accuracy"), ("transfer_accuracy", "dense probe on pruned model")):
        if key in probe_d or key in probe_p:
            rows.append((label, _fmt(probe_d.get(key)), _fmt(probe_p.get(key))))
    rows.append(("sparsity (overall)", "0", _fmt(report["pruning"]["overall"], 4)))
    return rows


def render_markdown(report: dict[str, Any]) -> str:
    cfg, pr = report["config"], report["pruning"]
    lines = [
        f"# truthprune report: {pr['pruner']} + {pr['allocator']} at {cfg['sparsity']:.2f} on {cfg['model']}",
        "",
        f"Calibration: {', '.join(report['calibration']['sources'])}, {report['calibration']['nsamples']} x "
        f"{report['calibration']['seqlen']} tokens, seed {report['seed']}.",
        "",
        "| metric | dense | pruned |",
        "|---|---|---|",
    ]
    lines += [f"| {m} | {d} | {p} |" for m, d, p in summary_rows(report)]
    ppl = report.get("pruned", {}).get("ppl")
    if ppl:
        lines += ["", f"Perplexity protocol: {ppl.get('protocol', '')} ({ppl.get('tokens', '?')} tokens, {ppl.get('windows', '?')} windows)."]
    probe = report.get("pruned", {}).get("probe")
    if probe and probe.get("description"):
        lines += ["", f"Probe protocol: {probe['description']}"]
    lines += ["", "## Per layer", ""]
    diag = pr.get("diagnostics") or {}
    profile = report.get("truth_profile")
    dense_acc = (report.get("dense", {}).get("probe") or {}).get("layer_accuracy")
    pruned_acc = (report.get("pruned", {}).get("probe") or {}).get("layer_accuracy")
    header = ["layer", "target", "achieved"]
    header += [k for k in diag]
    if profile:
        header.append("truth profile")
    if dense_acc:
        header += ["probe acc dense", "probe acc pruned"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, layer in enumerate(pr["layers"]):
        row = [str(i), _fmt(layer["target"], 4), _fmt(layer["achieved"], 4)]
        row += [_fmt(diag[k][i], 4) if i < len(diag[k]) else "-" for k in diag]
        if profile:
            row.append(_fmt(profile[i], 4))
        if dense_acc:
            row += [_fmt(dense_acc[i]), _fmt(pruned_acc[i]) if pruned_acc else "-"]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Stages", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {s['stage']} | {s['seconds']:.1f} |" for s in report.get("stages", [])]
    plots = report.get("plots") or []
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in report.get("versions", {}).items()), ""]
    return "\n".join(lines)


def render_report(report: dict[str, Any], out_dir: Path) -> None:
    """Write plots and report.md into ``out_dir`` (report.json is written by the caller)."""
    try:
        from .plots import report_plots

        report["plots"] = report_plots(report, out_dir)
    except ImportError:  # plots are optional; the markdown still renders
        report["plots"] = []
    (out_dir / "report.md").write_text(render_markdown(report))


def load_report(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    f = p / "report.json" if p.is_dir() else p
    if not f.is_file():
        raise UserError(f"no report.json in {str(p)!r}; pass the output directory of a truthprune run")
    try:
        report = json.loads(f.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{str(f)!r} is not valid JSON ({err.msg}); rerun the truthprune run that wrote it") from None
    if not isinstance(report, dict) or report.get("truthprune_report") != 1:
        raise UserError(f"{str(f)!r} is not a truthprune report")
    return report
