"""RIA, DSnoT and UniPruning (or any pruners) against Wanda in one process: perplexity with a
paired interval, per-linear reconstruction error relative to Wanda, prune time as a ratio to
Wanda's.

    python bench/literature.py --sparsity 0.7 [--nm 2:4 --allocator uniform] [--model gemma3-270m]
        [--methods wanda,ria,dsnot,unipruning] [--opt dsnot:base=wanda] [--ppl-windows 64] [--json out.json]

The protocol of bench/recent_methods.py and docs/results.md (its functions are reused):
calibration WikiText-2 valid, 32 x 512, seed 0; perplexity on the first --ppl-windows windows of
WikiText-2 test, through the same pipeline stages as ``truthprune run --eval ppl``; the model is
loaded once and restored to its dense weights before every method; the reconstruction error of
every prunable linear on the dense model's inputs (first --error-samples calibration windows) is
divided by Wanda's.

Interval: each method's perplexity ratio to Wanda's, exp(mean NLL difference), with a 95 %
paired bootstrap over the evaluation windows (the same windows for both models; --boot
replicates). The methods are deterministic for the seed, so the windows are the only source of
variance in this comparison; the decision rule is fixed before the numbers: a method beats Wanda
when the whole interval of its ratio is below 1.

Times: each method's prune stage (dense pre-pass + statistics, masks, propagation) in this one
process, divided by Wanda's; the load average is recorded before every method.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from recent_methods import dense_grams, linear_errors, make_plan, method_options  # noqa: E402


def paired_ratio(nll_a: list[float], nll_b: list[float], boot: int, seed: int = 0) -> dict[str, float]:
    """exp(mean(b - a)) with a percentile bootstrap over windows: ppl_b / ppl_a and its 95 % interval."""
    diff = [b - a for a, b in zip(nll_a, nll_b)]
    rng = random.Random(seed)
    n = len(diff)
    reps = sorted(math.exp(sum(diff[rng.randrange(n)] for _ in range(n)) / n) for _ in range(boot))
    return {"ratio": math.exp(sum(diff) / n), "lo": reps[int(0.025 * boot)], "hi": reps[int(0.975 * boot) - 1]}


def main() -> None:
    import torch

    from truthprune import decoder_layers, prunable_linears
    from truthprune.run import stages as st
    from truthprune.run.pipeline import seed_everything
    from truthprune.run.state import RunState

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--nm", default=None)
    ap.add_argument("--allocator", default=None, help="one allocator for every method (default: each pruner's own)")
    ap.add_argument("--methods", default="wanda,ria,dsnot,unipruning")
    ap.add_argument("--opt", action="append", default=[], help="METHOD:KEY=VALUE pruner option (repeatable)")
    ap.add_argument("--error-samples", type=int, default=8)
    ap.add_argument("--ppl-windows", type=int, default=64)
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    methods = args.methods.split(",")
    if methods[0] != "wanda":
        raise SystemExit("--methods must start with wanda (the reference for every ratio)")
    opts = method_options(args.opt)
    tmp = tempfile.mkdtemp(prefix="literature-")
    plans = {m: make_plan(args, m, f"{tmp}/{m}", opts.get(m)) for m in methods}  # every name and option checked first
    loaded = st.load(plans["wanda"].config)
    calib = st.calibrate(RunState(plan=plans["wanda"], loaded=loaded)).calibration
    model = loaded.model
    dense = {f"{i}.{n}": lin.weight.detach().clone()
             for i, layer in enumerate(decoder_layers(model)) for n, lin in prunable_linears(layer).items()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grams = dense_grams(model, calib, args.error_samples)
    results: dict = {"model": args.model, "sparsity": args.sparsity, "nm": args.nm, "allocator": args.allocator,
                     "ppl_windows": args.ppl_windows, "options": opts, "methods": {}}
    for m in methods:
        model.load_state_dict(state)
        loaded.invalidate_fingerprint()
        loaded.reuse.clear()  # no method may reuse another's calibration: every time is a full prune
        seed_everything(plans[m].config.seed)
        load = os.getloadavg()[0]
        t = time.perf_counter()
        pruned = st.prune(RunState(plan=plans[m], loaded=loaded, calibration=calib))
        prune_s = time.perf_counter() - t
        pruned = st.pruned_eval(pruned)
        report, ppl = pruned.pruning, pruned.pruned["ppl"]
        results["methods"][m] = {"ppl": ppl["ppl"], "window_nll": ppl["window_nll"], "prune_s": prune_s,
                                 "load_before": load, "overall": report.overall, "allocation": report.allocation,
                                 "errors": linear_errors(model, dense, grams)}
        print(f"{m}: ppl {ppl['ppl']:.3f}, prune {prune_s:.1f} s (load {load:.1f}), sparsity {report.overall:.4f}", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    ref = results["methods"]["wanda"]
    for m, r in results["methods"].items():
        ratios = sorted(r["errors"][k] / ref["errors"][k] for k in r["errors"] if ref["errors"][k] > 0)
        q = statistics.quantiles(ratios, n=4)
        r["error_ratio"] = {"median": statistics.median(ratios), "q1": q[0], "q3": q[2], "below_1": sum(x < 1 for x in ratios) / len(ratios)}
        r["time_ratio"] = r["prune_s"] / ref["prune_s"]
        r["ppl_ratio"] = paired_ratio(ref["window_nll"], r["window_nll"], args.boot)
        pr = r["ppl_ratio"]
        print(f"{m}: ppl {r['ppl']:.2f} | ppl / Wanda {pr['ratio']:.3f} [{pr['lo']:.3f}, {pr['hi']:.3f}] | "
              f"error/Wanda median {r['error_ratio']['median']:.3f} (IQR {q[0]:.3f}-{q[2]:.3f}) | time x{r['time_ratio']:.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
