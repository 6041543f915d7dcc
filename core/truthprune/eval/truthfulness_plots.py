"""PCA figure of the truthfulness evaluation: true vs false statements per prompt style, one row per
model (dense, then the compressed one), read at one layer (the dense model's best).

Each model is projected on the principal axes of its own neutral-style activations, the same axes
for all three styles, so within a row one sees whether a deceptive prompt moves the points or
merely relabels them; across rows whether compression kept the true/false geometry.
Object-oriented matplotlib (no pyplot state), as in :mod:`truthprune.reporting.plots`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..outputs.markers import png_metadata
from .prompt_styles import STYLES

PCA_PNG = "truthfulness_pca.png"


def pca_figure(panels: Sequence[tuple[str, Mapping[str, Any]]], path: str | Path) -> str | None:
    """Write one row of three scatter plots (honest, neutral, deceptive) per (label, result) with a
    ``pca`` section; return the path, or None when no result has one."""
    from matplotlib.figure import Figure

    panels = [(label, r) for label, r in panels if isinstance((r or {}).get("pca"), dict)]
    if not panels:
        return None
    fig = Figure(figsize=(10.5, 3.3 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), len(STYLES), squeeze=False)
    for row, (label, result) in zip(axes, panels):
        pca = result["pca"]
        labels = pca["labels"]
        ex = pca.get("explained") or [0.0, 0.0]
        for ax, style in zip(row, STYLES):
            pts = pca["coords"].get(style) or []
            for value, colour, name in ((1, "tab:blue", "true"), (0, "tab:red", "false")):
                xs = [p[0] for p, lab in zip(pts, labels) if lab == value]
                ys = [p[1] if len(p) > 1 else 0.0 for p, lab in zip(pts, labels) if lab == value]
                ax.scatter(xs, ys, s=9, alpha=0.6, color=colour, label=name)
            acc = ((result.get("accuracy") or {}).get(style) or {}).get("all")
            probe = (((result.get("probe") or {}).get("accuracy") or {}).get(style) or {}).get("all")
            title = f"{label}: {style}"
            if acc is not None and probe is not None:
                title += f"\noutput acc {acc:.2f}, probe acc {probe:.2f}"
            ax.set_title(title, fontsize=9)
            ax.set_xlabel(f"PC1 ({ex[0]:.0%} of neutral variance)", fontsize=8)
            ax.set_ylabel(f"PC2 ({ex[1]:.0%})" if len(ex) > 1 else "PC2", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    layer = panels[0][1]["pca"].get("layer")
    fig.suptitle(f"last-token activations at layer {layer}, statement items (PCA of the neutral style)", fontsize=10)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, format="png", metadata=png_metadata("truthfulness-plot"))
    return str(out)


def plot_truthfulness_pca(report: Mapping[str, Any], out_dir: Path) -> str | None:
    """The report's plot: dense vs pruned side by side (``truthprune run --eval truthfulness``)."""
    panels = [(role, (report.get(role) or {}).get("truthfulness")) for role in ("dense", "pruned")]
    if pca_figure(panels, Path(out_dir) / PCA_PNG) is None:
        return None
    return PCA_PNG


__all__ = ["PCA_PNG", "pca_figure", "plot_truthfulness_pca"]
