"""What one calibration for several sparsities saves: UniPruning (a dense-statistics pruner) at
several sparsities with the dense statistics reused, against the same prunes each with its own
calibration pass, and against Wanda at the same sparsities, in one process.

    python bench/one_calibration.py [--model smollm2-135m] [--sparsities 0.5,0.6,0.7] [--json out.json]

Protocol of docs/results.md (calibration WikiText-2 valid, 32 x 512, seed 0), each prune a
``truthprune prune`` plan run in process by ``truthprune.execute`` (load, calibrate, prune). The
model is loaded once and restored to its dense weights before every prune by
``truthprune.SharedModel``, exactly as ``truthprune sweep`` does:

* separate: every sparsity starts from an empty store, so each prune runs its own dense pass;
* one calibration: one store for all sparsities (what a sweep gets): the first prune computes
  the statistics, the others reuse them; the pruned weights must equal the separate ones bit for
  bit (checked by their fingerprints);
* wanda: the sequential engine at the same sparsities (its statistics depend on the sparsity).

Times are wall seconds of the prune stage (the plan's stage log); the ratios compare totals
measured in this one run. The load average is printed with them (other jobs may share the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from recent_methods import make_plan  # noqa: E402


def main() -> None:
    import truthprune

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--sparsities", default="0.5,0.6,0.7")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    sparsities = [float(x) for x in args.sparsities.split(",")]
    tmp = tempfile.mkdtemp(prefix="onecal-")

    def plan(method: str, s: float):
        ns = argparse.Namespace(model=args.model, sparsity=s, nm=None, allocator=None, ppl_windows=1)
        return make_plan(ns, method, f"{tmp}/{method}-{s}", report=False)  # truthprune prune: no evaluation

    plans = {(m, s): plan(m, s) for m in ("unipruning", "wanda") for s in sparsities}
    shared = truthprune.SharedModel()  # one load; dense weights restored before every prune

    def prune(method: str, s: float, fresh_store: bool = False) -> dict:
        if fresh_store and shared.loaded is not None:
            shared.loaded.reuse.clear()  # the dense statistics kept for reuse are dropped
        p = plans[(method, s)]
        load = os.getloadavg()[0]
        state = truthprune.execute(p, load=shared)  # seed, load (restore), calibrate, prune
        seconds, out = state.log.timings["prune"], state.pruning
        row = {"method": method, "sparsity": s, "seconds": seconds, "load_before": load,
               "reused": out.statistics_reused, "overall": out.overall, "fingerprint": state.loaded.fingerprint}
        print(f"{method} {s}: {seconds:.1f} s (load {load:.1f}), reused={out.statistics_reused}, sparsity {out.overall:.4f}", flush=True)
        return row

    rows = {"separate": [], "one_calibration": [], "wanda": []}
    for s in sparsities:
        rows["separate"].append(prune("unipruning", s, fresh_store=True))
    for k, s in enumerate(sparsities):
        rows["one_calibration"].append(prune("unipruning", s, fresh_store=k == 0))
    for s in sparsities:
        rows["wanda"].append(prune("wanda", s))
    same = [a["fingerprint"] == b["fingerprint"] for a, b in zip(rows["separate"], rows["one_calibration"])]
    total = {k: sum(r["seconds"] for r in v) for k, v in rows.items()}
    summary = {"sparsities": sparsities, "totals_s": total, "identical_weights": same,
               "one_calibration_over_separate": total["one_calibration"] / total["separate"],
               "one_calibration_over_wanda": total["one_calibration"] / total["wanda"],
               "separate_over_wanda": total["separate"] / total["wanda"]}
    print(json.dumps(summary, indent=1), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
