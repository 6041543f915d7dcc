"""From stored results to the analysis, the markdown tables and the plot.

One analysis per setting (sparsity or N:M): the units are the dense model and every method's
prune seeds at that setting; a method that lacks one of the prune seeds is left out (its
differences could not be paired) and named.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import rules
from . import stats
from .protocol import MEASURES

MEASURE_TITLES = {
    "retrained": "(a) retrained-probe R: a probe refitted on the pruned model (for a user who retrains)",
    "transfer": "(b) dense-probe transfer R: the dense model's probe on the pruned model (a deployed detector)",
    "auroc": "(c) threshold-free transfer: (AUROC - 0.5) / (dense AUROC - 0.5) of the dense probe's scores",
    "recentred": "(d) re-centred transfer: the dense probe after per-set unsupervised re-centring and rescaling",
}


def complete_methods(points: Sequence[Mapping], prune_seeds: Sequence[int]) -> tuple[dict[str, dict[int, Mapping]], list[str]]:
    """label -> {prune seed: point} for methods with every prune seed; and the labels left out."""
    by: dict[str, dict[int, Mapping]] = {}
    for p in points:
        by.setdefault(p["label"], {})[p["prune_seed"]] = p
    keep = {m: v for m, v in by.items() if all(k in v for k in prune_seeds)}
    return keep, sorted(set(by) - set(keep))


def build(dense_sets: Mapping[str, Mapping], scores: Mapping[str, Mapping[str, Mapping]], methods: Mapping[str, Mapping[int, str]],
          prune_seeds: Sequence[int], names: Sequence[str]) -> tuple[list[stats.SetData], stats.Design]:
    """SetData for ``names`` and the Design. ``scores[unit key][set][measure]`` holds the stored
    per-seed item values; unit keys are 'dense' and the point names in ``methods[label][seed]``."""
    units = ["dense"] + [methods[m][k] for m in methods for k in prune_seeds]
    design = stats.Design(dense=0, methods={m: [units.index(methods[m][k]) for k in prune_seeds] for m in methods},
                          references=[])
    out = []
    for name in names:
        info = dense_sets[name]
        values = {}
        for measure in MEASURES:
            if all(measure in scores[u][name] for u in units):
                values[measure] = [np.array([scores[u][name][measure][r] for u in units], dtype=np.float32)
                                   for r in range(len(info["test_rows"]))]
        out.append(stats.SetData(name, info["family"], np.asarray(info["clusters"]),
                                 [np.asarray(t) for t in info["test_rows"]], values))
    return out, design


def _ci(x: Mapping | None, signed: bool = False, scale: float = 1.0, digits: int = 3) -> str:
    if not x or not math.isfinite(x["point"]):
        return "–"
    f = f"{{:+.{digits}f}}" if signed else f"{{:.{digits}f}}"
    lo, hi = x["ci"]
    return f"{f.format(scale * x['point'])} [{f.format(scale * lo)}, {f.format(scale * hi)}]"


def markdown(result: Mapping[str, Any], tag: str, refs: Sequence[str], models: Mapping[str, Mapping]) -> str:
    """The tables of one setting: per measure the pooled numbers and per family R, drop and ΔR."""
    lines = [f"### Setting {tag}", ""]
    lines += ["| method | ppl (mean over prune seeds) | ppl per seed | achieved sparsity | prune s, wall / CPU | "
              "evaluation s, wall / CPU |", "|---|---|---|---|---|---|"]
    for m, info in models.items():
        lines.append(f"| {m} | {info['ppl']} | {info['ppl_seeds']} | {info['sparsity']} | {info['prune_s']} | {info.get('eval_s', '–')} |")
    for measure, res in result.items():
        pooled = res["pooled"]
        fams = list(res["families"])
        lines += ["", f"#### {MEASURE_TITLES.get(measure, measure)}", "",
                  f"Pooled over {', '.join(pooled['families']) or 'no family'} (each family once; "
                  + ", ".join(f"{f}: {res['families'][f].get('status', 'ok')}" for f in fams) + ").", ""]
        cols = ["method", "pooled R [95 % CI]", "drop, points [95 % CI]"]
        cols += [f"ΔR vs {r} (paired)" for r in refs] + [f"Δdrop vs {r}, points" for r in refs] + [f"MDE vs {r}" for r in refs]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for m, e in pooled["methods"].items():
            diffs = [e["diff"].get(r, {}) for r in refs]
            lines.append("| " + " | ".join(
                [m, _ci(e["R"]), _ci(e["drop"], scale=100, digits=1)]
                + [_ci(d.get("R"), signed=True) for d in diffs]
                + [_ci(d.get("drop"), signed=True, scale=100, digits=1) for d in diffs]
                + [f"{d['R']['mde']:.3f}" if d.get("R") else "–" for d in diffs]) + " |")
        lines += ["", "| method | " + " | ".join(f"{f} ({res['families'][f].get('status', 'ok')})" for f in fams) + " |",
                  "|" + "---|" * (len(fams) + 1)]
        lines.append("| dense value | " + " | ".join(_ci(res["families"][f]["dense"]) for f in fams) + " |")
        for m in pooled["methods"] or (res["families"][fams[0]]["methods"] if fams else {}):
            lines.append(f"| {m}: R | " + " | ".join(_ci(res["families"][f]["methods"][m]["R"]) for f in fams) + " |")
            lines.append(f"| {m}: drop, points | " + " | ".join(
                _ci(res["families"][f]["methods"][m]["drop"], scale=100, digits=1) for f in fams) + " |")
            for r in refs:
                if r != m and r in res["families"][fams[0]]["methods"]:
                    lines.append(f"| {m}: ΔR vs {r} | " + " | ".join(
                        _ci(res["families"][f]["methods"][m]["diff"].get(r, {}).get("R"), signed=True) for f in fams) + " |")
    return "\n".join(lines) + "\n"


def mde_lines(result: Mapping[str, Any], refs: Sequence[str]) -> list[str]:
    """Per measure: the median over methods of the MDE of pooled ΔR against each reference."""
    out = []
    for measure, res in result.items():
        parts = []
        for r in refs:
            vals = [e["diff"][r]["R"]["mde"] for e in res["pooled"]["methods"].values() if r in e["diff"]]
            vals = [v for v in vals if math.isfinite(v)]
            if vals:
                parts.append(f"vs {r} {float(np.median(vals)):.3f}")
        out.append(f"MDE (80 % power, two-sided 5 %) of pooled ΔR, {measure}: " + (", ".join(parts) or "no pair"))
    return out


def plot(results: Mapping[str, Mapping], models: Mapping[str, Mapping], path: str, measure: str = "transfer") -> bool:
    """Pooled R of ``measure`` against perplexity, one point per method and setting, 95 % intervals."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = "os^Dv<>p"
    for i, (tag, res) in enumerate(results.items()):
        pooled = res.get(measure, {}).get("pooled", {}).get("methods", {})
        for m, e in pooled.items():
            ppl = models[tag].get(m, {}).get("ppl_value")
            p, (lo, hi) = e["R"]["point"], e["R"]["ci"]
            if ppl is None or not math.isfinite(p):
                continue
            ax.errorbar(ppl, p, yerr=[[max(p - lo, 0)], [max(hi - p, 0)]], fmt=markers[i % len(markers)], capsize=3,
                        label=f"{m} {tag}")
            ax.annotate(m, (ppl, p), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("WikiText-2 perplexity (log scale)")
    ax.set_ylabel(f"pooled R, {measure}")
    ax.axhline(1.0, color="0.7", lw=0.8, ls="--")
    ax.set_title("Truth retention vs perplexity (95 % bootstrap intervals)")
    if ax.get_legend_handles_labels()[0]:  # a partial report (a lane's seeds) may have no point yet
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def pool_unseen(references: Sequence[str], unseen_families: Sequence[str]):
    """The pre-registered pool for the headline: unseen families that pass the ceiling/floor rules;
    other families are marked 'seen' (or their rule status) and reported, never pooled."""
    by_rules = rules.pool_by_rules(references)

    def pool(measure: str, families: dict) -> list[str]:
        chosen = by_rules(measure, families)
        for f, fam in families.items():
            if f not in unseen_families:
                fam["status"] = "seen"
        return [f for f in chosen if f in unseen_families]

    return pool


__all__ = ["MEASURE_TITLES", "complete_methods", "build", "markdown", "mde_lines", "plot", "pool_unseen"]
