"""Tables of the LoRA recovery study (docs/results/recovery.md) from a finished truth_retention store.

    python bench/recovery_table.py --out runs/recovery [--pruned wanda --recovered wanda-lora,wanda-lora-adapter]

The store holds points made by ``bench/truth_retention.py`` with methods whose spec has ``+finetune``
(the pruned checkpoint recovered by ``truthprune finetune`` before it is scored). Per setting this
prints perplexity before/after with a paired bootstrap interval over the perplexity windows, the
zeros before/after (``truthprune inspect``), and truth retention R with paired differences
recovered − pruned and between the recovery modes (the retention benchmark's two-level bootstrap).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retention import report as R  # noqa: E402


def ppl_ratio(after: list[float], before: list[float], n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """ppl(after)/ppl(before) with a 95 % paired bootstrap interval over windows (same windows, resampled jointly)."""
    a, b = np.asarray(after), np.asarray(before)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    boot = np.exp(a[idx].mean(axis=1) - b[idx].mean(axis=1))
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(math.exp(a.mean() - b.mean())), float(lo), float(hi)


def _ci(entry, signed=False) -> str:
    fmt = "{:+.3f}" if signed else "{:.3f}"
    return f"{fmt.format(entry['point'])} [{fmt.format(entry['ci'][0])}, {fmt.format(entry['ci'][1])}]"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="the truth_retention --out directory")
    ap.add_argument("--pruned", default="wanda")
    ap.add_argument("--recovered", default="wanda-lora,wanda-lora-adapter")
    ap.add_argument("--bootstrap", type=int, default=2000)
    args = ap.parse_args(argv)
    from truthprune import DEFAULT_SCORED_GROUPS, DEFAULT_SEEN_GROUPS

    out = Path(args.out)
    dense = json.loads((out / "dense.json").read_text())
    points = [json.loads(p.read_text()) for p in sorted((out / "points").glob("*.json"))]
    recovered = [x.strip() for x in args.recovered.split(",") if x.strip()]
    R.REFERENCES = (args.pruned, *recovered[:1])  # paired: recovered - pruned, and the second mode - the first
    summary = R.summarize_points(dense, points, dict(DEFAULT_SCORED_GROUPS), dict(DEFAULT_SEEN_GROUPS), n_boot=args.bootstrap)
    by = {(p["label"], p["setting_tag"]): p for p in points}
    rows = {(r["label"], r["setting_tag"]): r for r in summary["rows"]}
    print(f"Dense: ppl {dense['ppl']['ppl']:.2f} ({dense['ppl']['windows']} windows)\n")
    print("| setting | model | zeros (inspect) | ppl | ppl ratio vs pruned [95% CI] | R unseen [95% CI] | ΔR vs pruned (unseen, paired) "
          "| R seen | ΔR vs pruned (seen, paired) | final loss | finetune s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for tag in sorted({p["setting_tag"] for p in points}):
        base = by.get((args.pruned, tag))
        if base is None:
            continue
        for label in (args.pruned, *recovered):
            p, r = by.get((label, tag)), rows.get((label, tag))
            if p is None:
                continue
            ft = p.get("finetune") or {}
            zeros = f"{ft['sparsity_before']:.4f} → {ft['sparsity_after']:.4f}" if ft else f"{p.get('achieved_sparsity', 0):.4f}"
            if ft.get("inspect_warnings"):
                zeros += f" ({len(ft['inspect_warnings'])} warnings)"
            ratio = "–"
            if label != args.pruned:
                v, lo, hi = ppl_ratio(p["ppl"]["window_nll"], base["ppl"]["window_nll"], args.bootstrap)
                ratio = f"{v:.3f} [{lo:.3f}, {hi:.3f}]"
            d = r["diff"].get(args.pruned)
            losses = ft.get("losses") or []
            print(f"| {tag} | {label} | {zeros} | {p['ppl']['ppl']:.2f} | {ratio} | {_ci(r['R']['unseen'])} | "
                  f"{_ci(d['unseen'], True) if d and label != args.pruned else '–'} | {_ci(r['R']['seen'])} | "
                  f"{_ci(d['seen'], True) if d and label != args.pruned else '–'} | "
                  f"{(sum(losses[-10:]) / len(losses[-10:])) if losses else float('nan'):.3f} | "
                  f"{ft.get('finetune_seconds', float('nan')):.0f} |")
    if len(recovered) > 1:
        print(f"\nMode comparison ({recovered[1]} − {recovered[0]}, paired):\n")
        print("| setting | ppl ratio [95% CI] | ΔR unseen | ΔR seen |")
        print("|---|---|---|---|")
        for tag in sorted({p["setting_tag"] for p in points}):
            a, b = by.get((recovered[1], tag)), by.get((recovered[0], tag))
            r = rows.get((recovered[1], tag))
            if a is None or b is None or r is None or recovered[0] not in r["diff"]:
                continue
            v, lo, hi = ppl_ratio(a["ppl"]["window_nll"], b["ppl"]["window_nll"], args.bootstrap)
            d = r["diff"][recovered[0]]
            print(f"| {tag} | {v:.3f} [{lo:.3f}, {hi:.3f}] | {_ci(d['unseen'], True)} | {_ci(d['seen'], True)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
