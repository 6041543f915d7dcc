"""PNG plots for ``report.md`` and ``truthprune compare`` (matplotlib, imported lazily).

Why the object-oriented ``matplotlib.figure.Figure`` API instead of ``pyplot``: it keeps no global
state (no backend switch, no open-figure registry), so plotting inside a long sweep or next to
another library's plots cannot leak figures or change their backend. PNGs are written by the
Agg renderer.

Every plot is drawn only from data the report actually holds; a report without probe results
simply gets no probe plot. Missing values (``None``) become gaps in the lines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from .verdict import human_label
from ..eval.truthfulness_plots import plot_truthfulness_pca

SPARSITY_PNG = "sparsity.png"
PROBE_PNG = "probe_accuracy.png"
SEPARATION_PNG = "truth_separation.png"
DIAGNOSTICS_PNG = "diagnostics.png"
COMPARE_PNG = "compare.png"
# every file report_plots may write (``truthprune report`` drops stale ones before re-rendering)
TRUTHFULNESS_PNG = "truthfulness_pca.png"  # eval/truthfulness_plots.py
REPORT_PLOT_FILES = (SPARSITY_PNG, PROBE_PNG, SEPARATION_PNG, DIAGNOSTICS_PNG, TRUTHFULNESS_PNG)

_DPI = 110


# --------------------------------------------------------------------------- data helpers (pure)


def as_series(values: Any) -> list[float] | None:
    """A list of numbers (None -> nan) or None when ``values`` is not a usable per-layer list."""
    if not isinstance(values, Sequence) or isinstance(values, (str, bytes)) or not values:
        return None
    out = []
    for v in values:
        if v is None:
            out.append(math.nan)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
        else:
            return None
    return out if any(not math.isnan(v) for v in out) else None


def mean_series(curves: Mapping[str, Any]) -> list[float] | None:
    """Element-wise mean of several per-layer curves of equal length (nan where all are missing)."""
    series = [s for s in (as_series(v) for v in curves.values()) if s is not None]
    if not series or len({len(s) for s in series}) != 1:
        return None
    out = []
    for column in zip(*series):
        finite = [v for v in column if not math.isnan(v)]
        out.append(sum(finite) / len(finite) if finite else math.nan)
    return out


def layer_curve(section: Mapping[str, Any] | None, key: str) -> tuple[list[float], list[float]] | None:
    """(layer indices, values) of a per-layer result such as ``probe.layer_accuracy``.

    The probe may have measured only some layers; it then lists them in ``layers``. A curve given
    per data set ({set: [...]}) is averaged over the sets.
    """
    if not isinstance(section, Mapping):
        return None
    raw = section.get(key)
    values = mean_series(raw) if isinstance(raw, Mapping) else as_series(raw)
    if values is None:
        return None
    layers = section.get("layers")
    if isinstance(layers, Sequence) and len(layers) == len(values) and all(isinstance(x, int) for x in layers):
        return [float(x) for x in layers], values
    return [float(i) for i in range(len(values))], values


def diagnostic_series(diagnostics: Mapping[str, Any] | None, n_layers: int) -> dict[str, list[float]]:
    """The allocator diagnostics that are one number per decoder layer."""
    out = {}
    for name, values in (diagnostics or {}).items():
        series = as_series(values)
        if series is not None and len(series) == n_layers:
            out[name] = series
    return out


def other_allocations(report: Mapping[str, Any]) -> dict[str, list[float]]:
    """Per-layer sparsity of the other allocators the report holds (``allocations`` {name: [...]})."""
    own = (report.get("pruning") or {}).get("allocator")
    out = {}
    for name, values in (report.get("allocations") or {}).items():
        series = as_series(values)
        if series is not None and name != own:
            out[str(name)] = series
    return out


# --------------------------------------------------------------------------- drawing


def _figure(rows: int = 1, cols: int = 1, width: float = 7.0, height: float = 3.6):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def _save(fig, out_dir: Path, name: str) -> str:
    fig.savefig(out_dir / name, dpi=_DPI)
    return name


def _layer_axis(ax, ylabel: str, title: str) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("decoder layer")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def _log_if_positive(ax, curves: Sequence[Sequence[float]]) -> None:
    """Separation ratios span orders of magnitude across layers: log scale when it is defined."""
    finite = [v for c in curves for v in c if not math.isnan(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 20:
        ax.set_yscale("log")


def plot_sparsity(report: Mapping[str, Any], out_dir: Path) -> str | None:
    pruning = report["pruning"]
    own = as_series(pruning.get("allocation"))
    others = other_allocations(report)
    if own is None and not others:
        return None
    fig, (ax,) = _figure()
    if own is not None:
        ax.plot(range(len(own)), own, marker="o", linewidth=2, label=f"{pruning.get('allocator', '')} (this run)")
    for name, values in others.items():
        ax.plot(range(len(values)), values, marker=".", linewidth=1.2, label=name)
    achieved = as_series([layer.get("achieved") for layer in pruning.get("layers", [])])
    if achieved is not None:
        ax.plot(range(len(achieved)), achieved, linestyle="none", marker="x", color="black", label="achieved")
    if isinstance(pruning.get("target"), (int, float)):
        ax.axhline(pruning["target"], color="grey", linestyle=":", linewidth=1, label=f"target {pruning['target']:.2f}")
    _layer_axis(ax, "sparsity", "per-layer sparsity")
    ax.legend(fontsize=8)
    return _save(fig, out_dir, SPARSITY_PNG)


def plot_probe_accuracy(report: Mapping[str, Any], out_dir: Path) -> str | None:
    pruned_probe = (report.get("pruned") or {}).get("probe")
    curves = {
        "dense": layer_curve((report.get("dense") or {}).get("probe"), "layer_accuracy"),
        "pruned": layer_curve(pruned_probe, "layer_accuracy"),
        # the probe fitted on the dense model, applied to the pruned model's activations
        "dense probe on pruned": layer_curve(pruned_probe, "layer_transfer_accuracy"),
    }
    curves = {k: v for k, v in curves.items() if v is not None}
    if not curves:
        return None
    fig, (ax,) = _figure()
    styles = {"dense": "-", "pruned": "--", "dense probe on pruned": "-."}
    for role, (x, y) in curves.items():
        ax.plot(x, y, marker="o", linestyle=styles[role], label=role)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance")
    probe_name = (report.get("config") or {}).get("probe", "")
    _layer_axis(ax, "held-out accuracy", f"truth probe {probe_name} per layer: dense vs pruned")
    ax.legend(fontsize=8)
    return _save(fig, out_dir, PROBE_PNG)


def plot_separation(report: Mapping[str, Any], out_dir: Path) -> str | None:
    curves = {role: layer_curve((report.get(role) or {}).get("probe"), "layer_separation") for role in ("dense", "pruned")}
    curves = {k: v for k, v in curves.items() if v is not None}
    profile = as_series(report.get("truth_profile"))
    panels = int(bool(curves)) + int(profile is not None)
    if not panels:
        return None
    fig, axes = _figure(rows=panels)
    if curves:
        ax = axes.pop(0)
        for role, (x, y) in curves.items():
            ax.plot(x, y, marker="o", linestyle="-" if role == "dense" else "--", label=role)
        _log_if_positive(ax, [y for _, y in curves.values()])
        _layer_axis(ax, "between / within-class spread", "truth separation per layer: dense vs pruned")
        ax.legend(fontsize=8)
    if profile is not None:
        ax = axes.pop(0)
        ax.plot(range(len(profile)), profile, marker="o", color="tab:green", label="truth profile (dense)")
        _layer_axis(ax, "share of the truth separation", "truth profile used by the allocator")
        ax.legend(fontsize=8)
    return _save(fig, out_dir, SEPARATION_PNG)


def plot_diagnostics(report: Mapping[str, Any], out_dir: Path) -> str | None:
    pruning = report.get("pruning") or {}
    n_layers = len(pruning.get("layers") or pruning.get("allocation") or [])
    series = diagnostic_series(pruning.get("diagnostics"), n_layers)
    if not series:
        return None

    fig, axes = _figure(rows=len(series))
    for ax, (name, values) in zip(axes, series.items()):
        label = human_label(name)
        ax.bar(range(len(values)), values, color="tab:orange")
        _layer_axis(ax, label, f"what the {pruning.get('allocator', '')} allocator read: {label}")
    return _save(fig, out_dir, DIAGNOSTICS_PNG)


def plot_truthfulness(report: Mapping[str, Any], out_dir: Path) -> str | None:
    return plot_truthfulness_pca(report, out_dir)


REPORT_PLOTS = (plot_sparsity, plot_probe_accuracy, plot_separation, plot_diagnostics, plot_truthfulness)


def report_plots(report: Mapping[str, Any], out_dir: str | Path) -> list[str]:
    """Write every plot the report has data for into ``out_dir``; return their file names."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [name for plot in REPORT_PLOTS if (name := plot(report, out)) is not None]


def compare_plot(runs: Sequence[tuple[str, Mapping[str, Any]]], out_dir: str | Path) -> str | None:
    """One PNG for ``truthprune compare``: per-layer sparsity and per-layer pruned probe accuracy per run."""
    out = Path(out_dir)
    sparsity = {}
    for label, report in runs:
        layers = (report.get("pruning") or {}).get("layers") or []
        achieved = as_series([layer.get("achieved") for layer in layers])
        sparsity[label] = achieved if achieved is not None else as_series((report.get("pruning") or {}).get("allocation"))
    sparsity = {k: v for k, v in sparsity.items() if v is not None}
    accuracy = {label: layer_curve((r.get("pruned") or {}).get("probe"), "layer_accuracy") for label, r in runs}
    accuracy = {k: v for k, v in accuracy.items() if v is not None}
    if not sparsity and not accuracy:
        return None
    fig, axes = _figure(rows=int(bool(sparsity)) + int(bool(accuracy)))
    if sparsity:
        ax = axes.pop(0)
        for label, values in sparsity.items():
            ax.plot(range(len(values)), values, marker=".", label=label)
        _layer_axis(ax, "achieved sparsity", "per-layer sparsity")
        ax.legend(fontsize=7, ncol=2)
    if accuracy:
        ax = axes.pop(0)
        dense = layer_curve((runs[0][1].get("dense") or {}).get("probe"), "layer_accuracy")
        if dense is not None:
            ax.plot(*dense, color="black", linewidth=2, label="dense")
        for label, (x, y) in accuracy.items():
            ax.plot(x, y, marker=".", linestyle="--", label=label)
        ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        _layer_axis(ax, "pruned probe accuracy", "per-layer truth-probe accuracy of the pruned models")
        ax.legend(fontsize=7, ncol=2)
    return _save(fig, out, COMPARE_PNG)
