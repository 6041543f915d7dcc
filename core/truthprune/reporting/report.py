"""Render ``report.md`` (and plots, when matplotlib is present) from a ``report.json`` dict.

Kept separate from the pipeline so ``truthprune report OUT`` can re-render a finished run.
The markdown starts with what a person wants first: dense vs pruned in one table.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ..errors import UserError
from . import plots as figures  # figures.report_plots looked up at call time (tests interrupt it there)
from .plots import REPORT_PLOT_FILES, diagnostic_series, layer_curve
from .schema import validate_report
from .truthfulness_section import section as truthfulness_section, summary_rows as truthfulness_rows
from .verdict import GLOSSARY, human_label, interval, title, verdict
from ..eval.lm_eval_bridge import summary_entries
from ..outputs.atomic import atomic_dir, holds_working_directory, replace_files
from ..outputs.markers import replace_refusal
from ..outputs.targets import special
from ..pruning.quantization import describe_line
from ..textio import describe, read_text_file

log = logging.getLogger(__name__)


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _layer(x: Any) -> str:
    return f"layer {x}" if isinstance(x, int) else "-"


def _probe_rows(dense: dict[str, Any], pruned: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The probe rows, each saying which layer it reads; with retention intervals when the run has them."""
    pd, pp = dense.get("probe") or {}, pruned.get("probe") or {}
    if not pd and not pp:
        return []
    rows = []
    ret = pp.get("retention") or {}
    best = pd.get("best_layer")
    if ret:
        rows.append((f"truth probe at the dense model's best layer ({ret.get('layer')}; mean of {ret.get('seeds', '?')} splits)",
                     interval(ret.get("dense_accuracy"), 3), interval(ret.get("pruned_accuracy"), 3)))
    elif "accuracy_at_dense_best_layer" in pp:
        rows.append((f"truth probe at the dense model's best layer ({best})", _fmt(pd.get("best_accuracy")),
                     _fmt(pp.get("accuracy_at_dense_best_layer"))))
    rows.append(("truth probe at each model's own best layer (one split)", f"{_fmt(pd.get('best_accuracy'))} ({_layer(best)})",
                 f"{_fmt(pp.get('best_accuracy'))} ({_layer(pp.get('best_layer'))})"))
    n_layers = len(pd.get("layer_accuracy") or pp.get("layer_accuracy") or [])
    rows.append((f"truth probe, mean over all {n_layers} layers", _fmt(pd.get("mean_accuracy")), _fmt(pp.get("mean_accuracy"))))
    if pd.get("cross_topic_accuracy") is not None or pp.get("cross_topic_accuracy") is not None:
        where = pd.get("cross_topic_layer", best)
        rows.append((f"cross-topic probe (layer {where})", _fmt(pd.get("cross_topic_accuracy")), _fmt(pp.get("cross_topic_accuracy"))))
    if ret:
        rows.append((f"dense probe read on the pruned model (transfer, layer {ret.get('layer')})", "-",
                     interval(ret.get("transfer_accuracy"), 3)))
        rows.append(("retention (retrained probe / dense probe)", "1",
                     f"{interval(ret.get('retention'))} / {interval(ret.get('transfer_retention'))}"))
    elif pp.get("transfer_accuracy") is not None:
        rows.append((f"dense probe read on the pruned model (transfer, layer {best})", "-", _fmt(pp.get("transfer_accuracy"))))
    return rows


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(metric, dense, pruned) rows for every evaluation present in the report."""
    dense, pruned = report.get("dense", {}), report.get("pruned", {})
    rows = []
    if "ppl" in dense or "ppl" in pruned:
        ppl = pruned.get("ppl") or dense.get("ppl") or {}
        where = f" ({(report.get('config') or {}).get('ppl_data', '')}, {ppl.get('windows', '?')} windows)"
        rows.append(("perplexity" + where, _fmt(dense.get("ppl", {}).get("ppl")), _fmt(pruned.get("ppl", {}).get("ppl"))))
    if "truthfulqa" in dense or "truthfulqa" in pruned:
        for k in ("mc1", "mc2"):
            rows.append((f"TruthfulQA {k.upper()}", _fmt(dense.get("truthfulqa", {}).get(k)), _fmt(pruned.get("truthfulqa", {}).get(k))))
    rows += _probe_rows(dense, pruned)
    rows += lm_eval_rows(report)

    rows += truthfulness_rows(report)
    rows.append(("sparsity (overall)", "0", _fmt(report["pruning"]["overall"], 4)))
    if report["pruning"].get("quantization"):  # method, bits, group size, grid of a --quantizer run

        rows.append(("quantization", "-", describe_line(report["pruning"]["quantization"])))
    return rows


def lm_eval_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """One (metric, dense, pruned) row per lm-eval task and metric; "skipped" for a requested task
    that did not run (lm-eval not installed, its data set unreachable, an error: see the notes)."""
    dense, pruned = (report.get("dense") or {}).get("lm_eval"), (report.get("pruned") or {}).get("lm_eval")
    if not dense and not pruned:
        return []

    def value(section: dict[str, Any] | None, entry: str, metric: str) -> str:
        for result in ((section or {}).get("tasks") or {}).values():
            if entry in (result.get("results") or {}):
                return _fmt(result["results"][entry].get(metric), 4)
        return "skipped" if section else "-"

    pairs = summary_entries(dense)
    pairs += [p for p in summary_entries(pruned) if p not in pairs]
    rows = [(f"lm-eval {entry} {metric}", value(dense, entry, metric), value(pruned, entry, metric)) for entry, metric in pairs]
    ran = {task for s in (dense, pruned) for task in ((s or {}).get("tasks") or {})}
    requested = list((report.get("config") or {}).get("lm_eval_tasks") or [])
    for s in (dense, pruned):
        if isinstance((s or {}).get("skipped"), dict):
            requested += [t for t in s["skipped"] if t not in requested]
    rows += [(f"lm-eval {task}", "skipped", "skipped") for task in requested if task not in ran]
    return rows


def lm_eval_notes(report: dict[str, Any]) -> list[str]:
    """Why lm-eval tasks did not run (not installed, offline hub, a failing task), one line each."""
    notes: list[str] = []
    for role in ("dense", "pruned"):
        skipped = ((report.get(role) or {}).get("lm_eval") or {}).get("skipped")
        for reason in [skipped] if isinstance(skipped, str) else (skipped or {}).values():
            if reason not in notes:
                notes.append(reason)
    return notes


def _aligned(section: dict[str, Any] | None, key: str, n_layers: int) -> list[float | None] | None:
    """A per-layer probe result aligned with the decoder layers (None where it was not measured)."""
    curve = layer_curve(section, key)
    if curve is None:
        return None
    out: list[float | None] = [None] * n_layers
    for x, y in zip(*curve):
        if 0 <= int(x) < n_layers and y == y:  # y == y drops nan
            out[int(x)] = y
    return out


# per-layer probe columns: (column, section, key in section["probe"])
_PROBE_COLUMNS = (
    ("dense probe", "dense", "layer_accuracy"),
    ("pruned probe", "pruned", "layer_accuracy"),
    ("dense probe on pruned", "pruned", "layer_transfer_accuracy"),  # the dense-trained probe on pruned activations
    ("truth separation, dense", "dense", "layer_separation"),
    ("truth separation, pruned", "pruned", "layer_separation"),
)


def sparsity_columns(report: dict[str, Any]) -> dict[str, list[Any]]:
    """Column name -> one value per decoder layer: the run's sparsity, what the allocator read
    (its diagnostics, the truth profile). Other allocators' choices stay in report.json and the plot."""
    pr = report["pruning"]
    n = len(pr["layers"])
    cols: dict[str, list[Any]] = {
        "target sparsity": [layer["target"] for layer in pr["layers"]],
        "achieved sparsity": [layer["achieved"] for layer in pr["layers"]],
    }
    cols.update({human_label(k): v for k, v in diagnostic_series(pr.get("diagnostics"), n).items()})
    profile = report.get("truth_profile")
    if isinstance(profile, list) and len(profile) == n:
        cols["truth profile"] = profile
    return cols


def probe_columns(report: dict[str, Any]) -> dict[str, list[Any]]:
    """Column name -> one value per decoder layer of every per-layer probe result the report holds."""
    n = len(report["pruning"]["layers"])
    cols: dict[str, list[Any]] = {}
    for label, role, key in _PROBE_COLUMNS:
        values = _aligned((report.get(role) or {}).get("probe"), key, n)
        if values is not None:
            cols[label] = values
    return cols


def per_layer_columns(report: dict[str, Any]) -> dict[str, list[Any]]:
    """Every per-layer column of the report (both tables)."""
    return {**sparsity_columns(report), **probe_columns(report)}


def _layer_table(heading: str, cols: dict[str, list[Any]], n: int) -> list[str]:
    if not cols:
        return []
    lines = ["", f"## {heading}", "", "| layer | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    lines += [f"| {i} | " + " | ".join(_fmt(values[i], 4) for values in cols.values()) + " |" for i in range(n)]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    pr = report["pruning"]
    lines = [f"# {title(report)}", ""] + verdict(report) + [
        "",
        "| metric | dense | pruned |",
        "|---|---|---|",
    ]
    lines += [f"| {m} | {d} | {p} |" for m, d, p in summary_rows(report)]
    lines += ["", f"Calibration: {', '.join(report['calibration']['sources'])}, {report['calibration']['nsamples']} x "
                  f"{report['calibration']['seqlen']} tokens, seed {report['seed']}."]
    ppl = report.get("pruned", {}).get("ppl")
    if ppl:
        lines += ["", f"Perplexity protocol: {ppl.get('protocol', '')} ({ppl.get('windows', '?')} windows of {ppl.get('seqlen', '?')}, {ppl.get('scored_tokens', '?')} scored tokens of the text's {ppl.get('tokens', '?')})."]
    probe = report.get("pruned", {}).get("probe")
    if probe and probe.get("description"):
        lines += ["", f"Probe protocol: {probe['description']}"]
    lm = report.get("pruned", {}).get("lm_eval") or report.get("dense", {}).get("lm_eval") or {}
    if lm.get("tasks"):
        fewshot = "each task's default" if lm.get("num_fewshot") is None else lm["num_fewshot"]
        limit = "all" if lm.get("limit") is None else f"the first {lm['limit']}"
        lines += ["", f"lm-eval {lm.get('lm_eval_version') or ''}: {limit} examples per task, few-shot {fewshot}, "
                      "the in-memory model through lm-eval's HFLM."]
    for note in lm_eval_notes(report):
        lines += ["", f"lm-eval: {note}"]

    lines += [""] + truthfulness_section(report)
    n = len(pr["layers"])
    lines += _layer_table("Sparsity per layer", sparsity_columns(report), n)
    lines += _layer_table("Truth probe per layer (held-out accuracy)", probe_columns(report), n)
    lines += ["", "## Stages", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {s['stage']} | {s['seconds']:.1f} |" for s in report.get("stages", [])]
    plots = report.get("plots") or []
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    lines += ["", GLOSSARY, "", "Versions: " + ", ".join(f"{k} {v}" for k, v in report.get("versions", {}).items()), ""]
    return "\n".join(lines)


def head_of_report(markdown: str) -> str:
    """The part of report.md a terminal shows after a run: the title, the verdict and the summary
    table (everything before the per-layer sections)."""
    kept = []
    for line in markdown.splitlines():
        if line.startswith("## "):
            break
        kept.append(line)
    return "\n".join(kept).rstrip()


def render_report(report: dict[str, Any], out_dir: Path) -> None:
    """Write plots and report.md into ``out_dir`` (report.json is written by the caller)."""
    try:
        report["plots"] = figures.report_plots(report, out_dir)
    except ImportError as err:  # plots are optional; the markdown still renders
        log.warning("no plots (%s); install matplotlib to get them", err)
        report["plots"] = []
    (out_dir / "report.md").write_text(render_markdown(report))


# keys every report written by ``truthprune run`` has and rendering relies on
_REQUIRED = {"config": ("model", "sparsity"), "pruning": ("pruner", "allocator", "layers", "overall"), "calibration": ("sources", "nsamples", "seqlen")}


def load_report(path: str | Path) -> dict[str, Any]:
    """Read and sanity-check ``report.json`` (a run directory or the file itself); UserError if unusable."""
    p = Path(path)
    f = p / "report.json" if p.is_dir() else p
    if not f.is_file():
        what = f"no report.json in {str(p)!r}" if not os.path.lexists(f) else f"{str(f)!r} {describe(f)}, not a report"
        raise UserError(f"{what}; pass the output directory of a truthprune run")

    text = read_text_file(f, "report", "pass the output directory of a truthprune run", max_bytes=500_000_000)
    try:
        report = json.loads(text)
    except RecursionError:
        raise UserError(f"{str(f)!r} is nested too deeply to be a truthprune report") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{str(f)!r} is not valid JSON ({err.msg}); rerun the truthprune run that wrote it") from None
    except ValueError as err:  # an integer longer than Python converts
        raise UserError(f"{str(f)!r} holds a number too long to read ({str(err).split(';')[0]}); rerun the truthprune "
                        "run that wrote it") from None
    if not isinstance(report, dict) or report.get("truthprune_report") != 1:
        raise UserError(f"{str(f)!r} is not a truthprune report")
    for section, keys in _REQUIRED.items():
        missing = [k for k in keys if not isinstance(report.get(section), dict) or k not in report[section]]
        if missing:
            raise UserError(f"{str(f)!r} lacks {section}.{missing[0]}; it is incomplete, rerun the truthprune run that wrote it")

    return validate_report(report, repr(str(f)))


def rerender_report(out: str | Path) -> tuple[Path, list[str]]:
    """Re-render report.md and plots of a finished run from its report.json, atomically.

    A run directory that holds only what truthprune wrote is rebuilt in a temp sibling (every
    other file copied, stale plots dropped) and swapped in with one rename, so an interruption
    leaves the old report as it was. The working directory (``report .``) or a directory that
    also holds other files is never swapped: there only report.md and the plots are replaced,
    file by file (:func:`truthprune.outputs.atomic.replace_files`).
    """
    import shutil

    p = Path(os.path.abspath(out))  # 'report .' must name the directory, not an empty basename
    run_dir = p.parent if p.is_file() else p
    report = load_report(p)
    skip = {"report.md", *REPORT_PLOT_FILES}
    if holds_working_directory(run_dir) or special(run_dir) is not None or replace_refusal(run_dir) is not None:
        with replace_files(run_dir, remove=frozenset(skip), kind="run", known=frozenset({"report.json", *skip})) as tmp:
            render_report(report, tmp)
        return run_dir, report["plots"]
    with atomic_dir(run_dir, overwrite=True, what="run directory", kind="run") as tmp:
        for item in run_dir.iterdir():
            if item.name in skip:
                continue
            if item.is_dir():
                shutil.copytree(item, tmp / item.name, symlinks=True)
            else:
                shutil.copy2(item, tmp / item.name)
        render_report(report, tmp)
    return run_dir, report["plots"]
