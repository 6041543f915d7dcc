"""Compare finished runs: one summary table (rich and markdown), ``compare.json`` and one plot.

Runs are only comparable when they pruned the same model and were evaluated the same way: a
perplexity on another text or window length, or a probe trained on other statements, is a
different number, not a better or worse one. :func:`check_comparable` therefore refuses such
sets with one line naming the first setting that differs. Settings of an evaluation are only
checked among the runs that ran it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from .plots import compare_plot
from .report import load_report
from .verdict import interval, judge
from ..outputs.atomic import atomic_dir
from ..pruning.quantization import short_label



@dataclass(frozen=True)
class Run:
    """One finished run: a short label (its directory name), where it lives, its report."""

    label: str
    path: Path
    report: dict[str, Any]


def _cfg(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda r: (r.get("config") or {}).get(key)


def _has_eval(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda r: name in ((r.get("config") or {}).get("eval") or [])


def _ppl_seqlen(r: dict[str, Any]) -> Any:
    ppl = (r.get("dense") or {}).get("ppl") or (r.get("pruned") or {}).get("ppl") or {}
    return ppl.get("seqlen", _cfg("seqlen")(r))


def _model(r: dict[str, Any]) -> Any:
    model = r.get("model") or {}
    return model.get("path") or model.get("spec") or _cfg("model")(r)


@dataclass(frozen=True)
class Setting:
    """A setting that must be equal across the runs it applies to."""

    label: str
    value: Callable[[dict[str, Any]], Any]
    applies: Callable[[dict[str, Any]], bool] = lambda r: True


SETTINGS: tuple[Setting, ...] = (
    Setting("model", _model),
    Setting("model dtype", lambda r: (r.get("model") or {}).get("dtype")),
    Setting("perplexity data (--ppl-data)", _cfg("ppl_data"), _has_eval("ppl")),
    Setting("perplexity seqlen (--seqlen)", _ppl_seqlen, _has_eval("ppl")),
    Setting("perplexity windows (ppl_max_windows)", _cfg("ppl_max_windows"), _has_eval("ppl")),
    Setting("TruthfulQA data (--truthfulqa-data)", _cfg("truthfulqa_data"), _has_eval("truthfulqa")),
    Setting("TruthfulQA questions (--truthfulqa-limit)", _cfg("truthfulqa_limit"), _has_eval("truthfulqa")),
    Setting("probe (--probe)", _cfg("probe"), _has_eval("probe")),
    Setting("probe options (--probe-opt)", _cfg("probe_options"), _has_eval("probe")),
    Setting("truth statements (--truth-data)", _cfg("truth_data"), _has_eval("probe")),
    Setting("truth datasets (--truth-datasets)", _cfg("truth_datasets"), _has_eval("probe")),
    Setting("chat template (--chat-template)", _cfg("chat_template"), _has_eval("probe")),
    Setting("truthfulness items (truthfulness_limit)", _cfg("truthfulness_limit"), _has_eval("truthfulness")),
    Setting("truthfulness statements (--truth-data)", _cfg("truth_data"), _has_eval("truthfulness")),
    Setting("truthfulness TruthfulQA (--truthfulqa-data)", _cfg("truthfulqa_data"), _has_eval("truthfulness")),
)


def _shown(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def check_comparable(runs: Sequence[Run]) -> None:
    """Raise a one-line UserError naming the first setting on which the runs differ."""
    for setting in SETTINGS:
        seen: list[tuple[str, Any]] = [(run.label, setting.value(run.report)) for run in runs if setting.applies(run.report)]
        for label, value in seen[1:]:
            if _shown(value) != _shown(seen[0][1]):
                raise UserError(
                    f"runs are not comparable: {setting.label} differs ({seen[0][0]}: {_shown(seen[0][1])}; "
                    f"{label}: {_shown(value)}); compare runs of one model evaluated with the same settings"
                )


# --------------------------------------------------------------------------- the summary table


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


@dataclass(frozen=True)
class Column:
    header: str
    path: tuple[str, ...]  # inside the run's "dense"/"pruned" section
    digits: int = 3


METRICS: tuple[Column, ...] = (
    Column("ppl", ("ppl", "ppl"), 2),
    Column("retention", ("probe", "retention", "retention", "value"), 2),
    Column("probe best", ("probe", "best_accuracy")),
    Column("probe mean", ("probe", "mean_accuracy")),
    Column("cross-topic", ("probe", "cross_topic_accuracy")),
    Column("transfer", ("probe", "transfer_accuracy")),
    Column("MC1", ("truthfulqa", "mc1")),
    Column("MC2", ("truthfulqa", "mc2")),
    Column("neutral acc", ("truthfulness", "accuracy", "neutral", "all")),
    Column("deceptive acc", ("truthfulness", "accuracy", "deceptive", "all")),
    Column("flip rate", ("truthfulness", "flip", "deceptive", "all", "rate")),
    Column("knows-says-false", ("truthfulness", "knows_but_says_false", "deceptive", "all")),
)


def _num(x: Any, digits: int) -> str:
    if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
        return f"{x:.{digits}f}"
    return "-"


def summary(runs: Sequence[Run]) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    """(header, string rows, JSON rows): a dense baseline row, then one row per run.

    Metric columns no run has are left out. The dense row shows a value only when every run
    measured the same dense value (they share the model, so they normally do), else "varies".
    """
    reports = [run.report for run in runs]
    metrics = [c for c in METRICS if any(_get(r, role, *c.path) is not None for r in reports for role in ("dense", "pruned"))]
    seeds = {_cfg("seed")(r) for r in reports}

    quant = any(r["pruning"].get("quantization") for r in reports)  # a column only when some run quantized
    header = (["run", "pruner", "allocator", "target", "sparsity"] + (["seed"] if len(seeds) > 1 else [])
              + (["quantization"] if quant else []) + [c.header for c in metrics])
    rows: list[list[str]] = []
    records: list[dict[str, Any]] = []

    dense_row = ["dense", "-", "-", "0", "0"] + (["-"] if len(seeds) > 1 else []) + (["-"] if quant else [])
    dense_rec: dict[str, Any] = {"run": "dense"}
    for c in metrics:
        values = {_shown(_get(r, "dense", *c.path)) for r in reports}
        value = _get(reports[0], "dense", *c.path)
        dense_row.append(_num(value, c.digits) if len(values) == 1 else "varies")
        dense_rec[c.header] = value if len(values) == 1 else None
    rows.append(dense_row)
    records.append(dense_rec)

    for run in runs:
        label, r = run.label, run.report
        pr = r["pruning"]
        row = [label, str(pr["pruner"]), str(pr["allocator"]), _num(_cfg("sparsity")(r), 2), _num(pr["overall"], 4)]
        if len(seeds) > 1:
            row.append(str(_cfg("seed")(r)))
        if quant:
            row.append(short_label(pr.get("quantization")))
        rec: dict[str, Any] = {"run": label, "pruner": pr["pruner"], "allocator": pr["allocator"],
                               "target": _cfg("sparsity")(r), "sparsity": pr["overall"], "seed": _cfg("seed")(r)}
        if quant:
            rec["quantization"] = short_label(pr.get("quantization"))
        for c in metrics:
            value = _get(r, "pruned", *c.path)
            row.append(_num(value, c.digits))
            rec[c.header] = value
        rows.append(row)
        records.append(rec)
    return header, rows, records


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def rich_table(header: Sequence[str], rows: Sequence[Sequence[str]], title: str):
    from rich.table import Table

    table = Table(title=title)
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i < 3 else "right", no_wrap=i == 0)
    for row in rows:
        table.add_row(*row)
    return table


def _title(runs: Sequence[Run]) -> str:
    r = runs[0].report
    return f"truthprune compare: {len(runs)} runs of {_cfg('model')(r)}"


def _retention(r: dict[str, Any]) -> dict[str, Any]:
    return _get(r, "pruned", "probe", "retention") or {}


def verdict_lines(runs: Sequence[Run]) -> list[str]:
    """The comparison in words: one line per run (perplexity change, retention with its interval,
    the verdict of :func:`truthprune.reporting.verdict.judge`), then which differences the
    intervals allow one to claim. Rule: run A keeps more truth signal than run B only when A's
    retention interval lies entirely above B's."""
    lines = []
    scored = []
    for run in runs:
        r = run.report
        parts = []
        d, p = _get(r, "dense", "ppl", "ppl"), _get(r, "pruned", "ppl", "ppl")
        if isinstance(d, (int, float)) and isinstance(p, (int, float)) and d > 0:
            parts.append(f"perplexity {d:.2f} -> {p:.2f} ({(p / d - 1) * 100:+.0f} %)")
        ret = _retention(r)
        if ret.get("retention") and ret["retention"].get("value") is None:
            parts.append("retention undefined (the dense probe is at chance)")
        elif ret.get("retention"):
            parts.append(f"retention {interval(ret['retention'])} ({judge(ret['retention'])})")
            parts.append(f"transfer {interval(ret.get('transfer_retention'))}")
            if (ret["retention"].get("ci") or [None])[0] is not None:
                scored.append((run.label, ret["retention"]["ci"], ret["retention"]["value"]))
        lines.append(f"- {run.label}: " + ("; ".join(parts) if parts else "no perplexity or probe results"))
    ppls = [(run.label, _get(run.report, "pruned", "ppl", "ppl")) for run in runs]
    ppls = [(label, v) for label, v in ppls if isinstance(v, (int, float))]
    if len(ppls) > 1:
        best = min(ppls, key=lambda x: x[1])
        lines.append(f"Lowest perplexity: {best[0]} ({best[1]:.2f}; single runs, no interval).")
    if len(scored) > 1:
        above = [(a[0], b[0]) for a in scored for b in scored if a is not b and a[1][0] > b[1][1]]
        if above:
            lines.append("Keeps more truth signal (retention interval entirely above the other's): "
                         + ", ".join(f"{a} over {b}" for a, b in above) + ".")
        else:
            top = max(scored, key=lambda x: x[2])
            lines.append(f"No run's retention interval lies above another's: the highest point estimate ({top[0]}, "
                         f"{top[2]:.2f}) is not a measured difference at this sample size.")
    return lines


def compare_markdown(runs: Sequence[Run], plot: str | None) -> str:
    header, rows, _ = summary(runs)
    r = runs[0].report
    lines = [f"# {_title(runs)}", "", *verdict_lines(runs), "", markdown_table(header, rows), ""]
    notes = []
    ppl = _get(r, "pruned", "ppl") or _get(r, "dense", "ppl")
    if isinstance(ppl, dict):
        notes.append(f"Perplexity on {_cfg('ppl_data')(r)}, {ppl.get('seqlen', '?')}-token windows ({ppl.get('windows', '?')} windows).")
    if _has_eval("probe")(r):
        notes.append(f"Probe {_cfg('probe')(r)}: held-out accuracy at the best layer and averaged over layers; cross-topic = "
                     "trained on the other topics; transfer = the probe fitted on the dense model scored on the pruned one.")
    notes.append("'sparsity' is the achieved fraction of zero weights in the pruned linears; 'target' the requested one.")
    lines += notes
    if plot:
        lines += ["", f"![{plot}]({plot})"]
    lines += ["", "Runs:", ""] + [f"- {run.label}: {run.path}" for run in runs] + [""]
    return "\n".join(lines)


def labels_for(paths: Sequence[Path]) -> list[str]:
    """Short unique labels: directory names, or the whole path where two names collide."""
    names = [p.name or str(p) for p in paths]
    return [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths)]


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    resolved = [Path(p) for p in paths]
    return [Run(label, p, load_report(p)) for label, p in zip(labels_for(resolved), resolved)]


def write_comparison(runs: Sequence[Run], out_dir: str | Path, overwrite: bool = False) -> Path:
    """compare.md + compare.json + compare.png into ``out_dir``, atomically."""
    header, rows, records = summary(runs)
    with atomic_dir(out_dir, overwrite=overwrite, what="--out", kind="compare") as tmp:
        try:
            plot = compare_plot([(run.label, run.report) for run in runs], tmp)
        except ImportError:  # matplotlib missing: tables only
            plot = None
        (tmp / "compare.md").write_text(compare_markdown(runs, plot))
        payload = {"header": header, "rows": records, "runs": [{"label": run.label, "path": str(run.path)} for run in runs]}
        (tmp / "compare.json").write_text(json.dumps(payload, indent=2, default=str))
    return Path(out_dir)


def run_compare(paths: Sequence[str | Path], out: str | Path | None = None, overwrite: bool = False):
    """Load, check and summarise runs; write files when ``out`` is given. Returns (rich table,
    verdict lines, out)."""
    runs = load_runs(paths)
    check_comparable(runs)
    header, rows, _ = summary(runs)
    written = write_comparison(runs, out, overwrite) if out is not None else None
    return rich_table(header, rows, _title(runs)), verdict_lines(runs), written
