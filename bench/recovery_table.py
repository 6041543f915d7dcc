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
    ap.add_argument("--out", required=True, help="the truth_retention --out directory (its retention.json written)")
    ap.add_argument("--pruned", default="wanda")
    ap.add_argument("--recovered", default="wanda-lora,wanda-lora-adapter")
    ap.add_argument("--bootstrap", type=int, default=2000)
    args = ap.parse_args(argv)
    out = Path(args.out)
    dense = json.loads((out / "dense.json").read_text())
    results = json.loads((out / "retention.json").read_text())["results"]  # the v2 report (paired vs --references)
    points = [json.loads(p.read_text()) for p in sorted((out / "points").glob("*.json")) if not p.name.endswith(".final.json")]
    by = {(p["label"], p["setting_tag"]): p for p in points if p.get("prune_seed", 0) == 0}
    recovered = [x.strip() for x in args.recovered.split(",") if x.strip()]
    print(f"Dense: ppl {dense['ppl']['ppl']:.2f} ({dense['ppl']['windows']} windows)\n")
    print("| setting | model | zeros before → after | ppl | ppl ratio vs pruned [95% CI] | retrained R [95% CI] "
          "| ΔR vs pruned (paired) | transfer R [95% CI] | ΔR vs pruned (paired) | final loss | finetune s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for setting, res in results.items():
        base = by.get((args.pruned, setting))
        if base is None:
            continue
        for label in (args.pruned, *recovered):
            p = by.get((label, setting))
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
            cells = []
            for measure in ("retrained", "transfer"):
                m = res[measure]["pooled"]["methods"].get(label)
                d = (m or {}).get("diff", {}).get(args.pruned, {}).get("R")
                cells += [_ci(m["R"]) if m else "–", _ci(d, True) if d and label != args.pruned else "–"]
            losses = ft.get("losses") or []
            print(f"| {setting} | {label} | {zeros} | {p['ppl']['ppl']:.2f} | {ratio} | {' | '.join(cells)} | "
                  f"{(sum(losses[-10:]) / len(losses[-10:])) if losses else float('nan'):.3f} | "
                  f"{ft.get('finetune_seconds', float('nan')):.0f} |")
    if len(recovered) > 1:
        print(f"\nMode comparison ({recovered[1]} / {recovered[0]}, paired windows):\n")
        print("| setting | ppl ratio [95% CI] |")
        print("|---|---|")
        for setting in results:
            a, b = by.get((recovered[1], setting)), by.get((recovered[0], setting))
            if a is not None and b is not None:
                v, lo, hi = ppl_ratio(a["ppl"]["window_nll"], b["ppl"]["window_nll"], args.bootstrap)
                print(f"| {setting} | {v:.3f} [{lo:.3f}, {hi:.3f}] |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
