"""Combine the dense and per-point results into R with intervals, a markdown table, JSON, a plot."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import stats
from .protocol import unbits

REFERENCES = ("wanda", "tplo")


def correctness_tensor(dense: Mapping[str, Any], points: Sequence[Mapping[str, Any]]) -> dict[str, list[np.ndarray]]:
    """set -> per seed [models, top layers, items]; models = dense, then (pruned, transfer) per point."""
    out: dict[str, list[np.ndarray]] = {}
    for name, info in dense["sets"].items():
        per_seed = []
        for r, dense_rows in enumerate(info["correct"]):
            models = [dense_rows]
            for p in points:
                models += [p["sets"][name]["correct"][r], p["sets"][name]["transfer"][r]]
            lengths = {len(b) for rows in models for b in rows}
            if len(lengths) != 1 or any(len(rows) != len(dense_rows) for rows in models):
                raise RuntimeError(f"{name} seed {r}: results of different held-out items or layers; rerun the points")
            per_seed.append(np.array([[unbits(b) for b in rows] for rows in models]))
        out[name] = per_seed
    return out


def summarize_points(dense: Mapping[str, Any], points: Sequence[Mapping[str, Any]], unseen: Mapping[str, Sequence[str]],
                     seen: Mapping[str, Sequence[str]], n_boot: int, seed: int = 0) -> dict[str, Any]:
    """R per group, unseen/seen overall, transfer R and paired differences vs wanda/tplo per point."""
    correct = correctness_tensor(dense, points)
    groups = {**unseen, **seen}
    overall_groups = {"unseen": list(unseen), "seen": list(seen)}
    index = {(p["label"], p["setting_tag"]): 1 + 2 * i for i, p in enumerate(points)}
    pairs = []
    for p in points:
        for ref in REFERENCES:
            j = index.get((ref, p["setting_tag"]))
            if j is not None:
                pairs.append((index[(p["label"], p["setting_tag"])], j))
    res = stats.summarize(correct, groups, overall_groups, dense_index=0, pairs=pairs, n_boot=n_boot, seed=seed)
    rows = []
    for p in points:
        i = index[(p["label"], p["setting_tag"])]
        row = {
            "label": p["label"],
            "setting": p["setting"],
            "setting_tag": p["setting_tag"],
            "flags": p["flags"],
            "R": {g: {"point": res["R"][g]["point"][i], "ci": res["R"][g]["ci"][i]} for g in res["R"]},
            "transfer_R": {g: {"point": res["R"][g]["point"][i + 1], "ci": res["R"][g]["ci"][i + 1]} for g in res["R"]},
            "diff": {},
            "ppl": p.get("ppl", {}).get("ppl"),
            "truthfulqa": p.get("truthfulqa"),
            "prune_seconds": p.get("prune_seconds"),
            "achieved_sparsity": p.get("achieved_sparsity"),
        }
        for ref in REFERENCES:
            j = index.get((ref, p["setting_tag"]))
            if j is not None:
                row["diff"][ref] = res["diff"][f"{i}-{j}"]
        rows.append(row)
    dense_acc = {g: float(np.mean([res["accuracy"][s][0] for s in names])) for g, names in groups.items()}
    return {"rows": rows, "dense_group_accuracy": dense_acc, "set_accuracy": res["accuracy"]}


def _num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _ci(entry: Mapping[str, Any] | None, signed: bool = False) -> str:
    if not entry:
        return "–"
    p, (lo, hi) = entry["point"], entry["ci"]
    fmt = "{:+.3f}" if signed else "{:.3f}"
    if not math.isfinite(p):
        return "–"
    return f"{fmt.format(p)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def markdown(summary: Mapping[str, Any], dense: Mapping[str, Any], unseen: Sequence[str], seen: Sequence[str],
             header: str) -> str:
    lines = [header, ""]
    acc = summary["dense_group_accuracy"]
    tqa = dense.get("truthfulqa") or {}
    lines.append(
        "Dense model: top-third held-out accuracy "
        + ", ".join(f"{g} {acc[g]:.3f}" for g in [*unseen, *seen])
        + f"; ppl {_num((dense.get('ppl') or {}).get('ppl'), 2)}; MC1 {_num(tqa.get('mc1'))}; MC2 {_num(tqa.get('mc2'))}."
    )
    lines.append("")
    cols = ["method", "setting", "R unseen [95% CI]", *[f"R {g}" for g in unseen], "R seen",
            "ΔR vs wanda (unseen, paired)", "ΔR vs tplo (unseen, paired)", "transfer R unseen", "ppl", "MC1", "MC2", "prune s"]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in summary["rows"]:
        t = row["truthfulqa"] or {}
        cells = [
            row["label"], row["setting_tag"], _ci(row["R"]["unseen"]), *[_ci(row["R"][g]) for g in unseen],
            _ci(row["R"]["seen"]),
            _ci(row["diff"].get("wanda", {}).get("unseen"), signed=True) if row["label"] != "wanda" else "–",
            _ci(row["diff"].get("tplo", {}).get("unseen"), signed=True) if row["label"] != "tplo" else "–",
            _ci(row["transfer_R"]["unseen"]), _num(row["ppl"], 2), _num(t.get("mc1")), _num(t.get("mc2")),
            _num(row["prune_seconds"], 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Paired ΔR per group (method − reference, same seeds, splits and items resampled jointly):", ""]
    gcols = [*unseen, *seen]
    lines += ["| method | setting | vs | " + " | ".join(gcols) + " |", "|" + "---|" * (3 + len(gcols))]
    for row in summary["rows"]:
        for ref, d in row["diff"].items():
            if ref != row["label"]:
                lines.append(f"| {row['label']} | {row['setting_tag']} | {ref} | " + " | ".join(_ci(d[g], signed=True) for g in gcols) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: Mapping[str, Any], dense: Mapping[str, Any], path: str) -> bool:
    """Retention (unseen) against perplexity, one point per method and setting, 95 % intervals."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = "os^Dv<>p"
    tags = sorted({r["setting_tag"] for r in summary["rows"]})
    for row in summary["rows"]:
        if row["ppl"] is None or not math.isfinite(row["R"]["unseen"]["point"]):
            continue
        p, (lo, hi) = row["R"]["unseen"]["point"], row["R"]["unseen"]["ci"]
        ax.errorbar(row["ppl"], p, yerr=[[max(p - lo, 0)], [max(hi - p, 0)]], fmt=markers[tags.index(row["setting_tag"]) % len(markers)],
                    capsize=3, label=f"{row['label']} {row['setting_tag']}")
        ax.annotate(row["label"], (row["ppl"], p), textcoords="offset points", xytext=(4, 4), fontsize=8)
    dppl = (dense.get("ppl") or {}).get("ppl")
    if dppl:
        ax.scatter([dppl], [1.0], marker="*", s=120, color="k", label="dense", zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel("WikiText-2 perplexity (log scale)")
    ax.set_ylabel("truth-probe retention R, unseen topics")
    ax.axhline(1.0, color="0.7", lw=0.8, ls="--")
    ax.set_title("Retention vs perplexity (95 % bootstrap intervals)")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


__all__ = ["correctness_tensor", "summarize_points", "markdown", "plot"]
