"""Any methods against the first one in one process: perplexity and prune time as a ratio.

    python bench/literature_ppl.py --sparsity 0.7 [--nm 2:4] [--model smollm2-135m] [--ppl-windows 64] \\
        --method 'wanda=--pruner wanda' \\
        --method 'optishear=--pruner optishear --pruner-opt from=runs/os/s0.7.json --allocator optishear --allocator-opt from=runs/os/s0.7.json' \\
        --method 'sparc3=--pruner sparc3' [--json out.json]

The docs/results.md protocol (calibration: WikiText-2 valid, 32 x 512, seed 0; perplexity: the
first --ppl-windows windows of WikiText-2 test) through the pipeline stages of ``truthprune run
--eval ppl`` (plan, load, calibrate, prune, evaluate), so the perplexities equal the CLI's. Every
method is planned (names, options, files checked) before the model loads; the model is loaded
once and its dense weights are restored before each method. Each method's prune time (the
engine's dense pre-pass, whole-model pass and layer loop) is divided by the first method's, all
in this one process. ``--truth-data`` reaches every method (sparc3 target=truth reads it).
"""

from __future__ import annotations

import argparse
import json
import shlex
import tempfile

SHARED = "../shared/data"


def method_flags(spec: str) -> tuple[str, dict]:
    """'label=--pruner X --pruner-opt k=v --allocator Y --allocator-opt k=v' -> (label, overrides)."""
    label, sep, flags = spec.partition("=")
    if not sep or not label.strip():
        raise SystemExit(f"--method {spec!r} must look like LABEL=FLAGS, e.g. 'wanda=--pruner wanda'")
    ap = argparse.ArgumentParser(prog=f"--method {label}", add_help=False)
    ap.add_argument("--pruner", required=True)
    ap.add_argument("--allocator")
    ap.add_argument("--pruner-opt", action="append", default=[])
    ap.add_argument("--allocator-opt", action="append", default=[])
    ns = ap.parse_args(shlex.split(flags))

    def opts(pairs):
        out = {}
        for pair in pairs:
            k, _, v = pair.partition("=")
            try:
                out[k] = json.loads(v)
            except json.JSONDecodeError:
                out[k] = v
        return out

    return label.strip(), {"pruner": ns.pruner, "allocator": ns.allocator, "pruner_options": opts(ns.pruner_opt),
                           "allocator_options": opts(ns.allocator_opt)}


def make_plan(args, overrides: dict, out: str):
    from truthprune.run.config import build_config
    from truthprune.run.pipeline import plan_run

    common = {"model": args.model, "sparsity": args.sparsity, "nm": args.nm, "calibration": ["wikitext2"],
              "calibration_options": {"path": f"{SHARED}/wikitext-2/valid.txt"}, "nsamples": 32, "seqlen": 512,
              "eval": ["ppl"], "ppl_data": f"{SHARED}/wikitext-2/test.txt", "ppl_max_windows": args.ppl_windows,
              "truth_data": args.truth_data, "batch_size": args.batch_size, "out": out, "quiet": True}
    return plan_run(build_config(None, {**common, **overrides}))


def main() -> None:
    import os
    import time

    from truthprune.run import stages as st
    from truthprune.run.pipeline import seed_everything
    from truthprune.run.state import RunState

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--sparsity", type=float, default=None)
    ap.add_argument("--nm", default=None)
    ap.add_argument("--method", action="append", required=True, help="LABEL=FLAGS (repeatable; the first is the time reference)")
    ap.add_argument("--ppl-windows", type=int, default=64, help="first N WikiText-2 test windows (64 = docs/results.md)")
    ap.add_argument("--truth-data", default=f"{SHARED}/truth_statements")
    ap.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (4 for Gemma: 262k-token logits)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="literature-")
    methods = [method_flags(m) for m in args.method]
    plans = {label: make_plan(args, o, f"{tmp}/{label}") for label, o in methods}  # every name, option, file checked first
    first = next(iter(plans.values()))
    loaded = st.load(first.config)
    model = loaded.model
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    results = {"model": args.model, "sparsity": args.sparsity, "nm": args.nm, "ppl_windows": args.ppl_windows,
               "load_average": os.getloadavg(), "methods": {}}
    ref = None
    for label, plan in plans.items():
        model.load_state_dict(dense)
        loaded.invalidate_fingerprint()
        seed_everything(plan.config.seed)
        state = st.calibrate(RunState(plan=plan, loaded=loaded))
        t = time.perf_counter()
        pruned = st.prune(state)
        wall = time.perf_counter() - t
        pruned = st.pruned_eval(pruned)
        report = pruned.pruning
        prune_s = report.prune_pass_s + report.dense_pass_s
        ref = ref or prune_s
        row = {"flags": dict(methods)[label], "ppl": pruned.pruned["ppl"]["ppl"], "prune_s": prune_s, "prune_wall_s": wall,
               "time_ratio": prune_s / ref, "overall": report.overall, "allocation": report.allocation}
        results["methods"][label] = row
        print(f"{label}: ppl {row['ppl']:.3f}, prune {prune_s:.1f} s (x{row['time_ratio']:.2f}), sparsity {report.overall:.4f}",
              flush=True)
        if args.json:  # after every method: an interrupted run keeps what it measured
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
