"""Accuracy and separation vs layer, from the JSON-able protocol results (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...outputs.markers import png_metadata


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_protocol(result: Mapping[str, Any], out_dir: str | Path, prefix: str = "probe") -> list[Path]:
    """Two PNGs: held-out accuracy per set vs layer (with the mean), separation ratio per set vs layer."""
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layers = result["layers"]
    paths = []

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, acc in result["heldout"]["accuracy"].items():
        ax.plot(layers, acc, alpha=0.6, label=name)
    ax.plot(layers, result["heldout"]["mean"], color="black", linewidth=2, label="mean")
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("held-out accuracy")
    ax.set_title(f"probe {result.get('probe', '')}: held-out accuracy (entity-grouped split)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    paths.append(out / f"{prefix}_accuracy.png")
    fig.savefig(paths[-1], dpi=120, metadata=png_metadata("probe-plot"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, ratio in result["separation"]["ratio"].items():
        ax.plot(layers, ratio, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("separation ratio B/W")
    ax.set_title("truth separation per layer")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    paths.append(out / f"{prefix}_separation.png")
    fig.savefig(paths[-1], dpi=120, metadata=png_metadata("probe-plot"))
    plt.close(fig)
    return paths


def plot_comparison(result: Mapping[str, Any], out_dir: str | Path, prefix: str = "compare") -> list[Path]:
    """Mean held-out accuracy (dense, pruned, transfer) and mean separation (dense, pruned) vs layer."""
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = result["side_by_side"]
    layers = [r["layer"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.plot(layers, [r["dense_accuracy"] for r in rows], label="dense")
    a1.plot(layers, [r["pruned_accuracy"] for r in rows], linestyle="--", label="pruned")
    a1.plot(layers, [r["transfer_accuracy"] for r in rows], linestyle=":", label="dense probe on pruned")
    a1.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    a1.set_xlabel("decoder layer")
    a1.set_ylabel("mean held-out accuracy")
    a1.legend(fontsize=8)
    a2.plot(layers, [r["dense_separation"] for r in rows], label="dense")
    a2.plot(layers, [r["pruned_separation"] for r in rows], linestyle="--", label="pruned")
    a2.set_yscale("log")
    a2.set_xlabel("decoder layer")
    a2.set_ylabel("mean separation ratio")
    a2.legend(fontsize=8)
    fig.suptitle(f"probe {result.get('probe', '')}: dense vs pruned")
    fig.tight_layout()
    path = out / f"{prefix}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


__all__ = ["plot_protocol", "plot_comparison"]
