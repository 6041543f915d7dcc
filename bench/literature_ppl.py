"""Any methods against the first one in one process: perplexity with a paired interval, and prune
time as a ratio.

    python bench/literature_ppl.py --sparsity 0.7 [--nm 2:4] [--model smollm2-135m] [--ppl-windows 64] \\
        --method 'wanda=--pruner wanda' \\
        --method 'optishear=--pruner optishear --pruner-opt from=runs/os/s0.7.json --allocator optishear --allocator-opt from=runs/os/s0.7.json' \\
        --method 'sparc3=--pruner sparc3' [--json out.json]

The docs/results.md protocol (calibration: WikiText-2 valid, 32 x 512, seed 0; perplexity: the
first --ppl-windows windows of WikiText-2 test) through the run pipeline in process: each method's
plan (``truthprune.plan_run``) is executed by ``truthprune.execute`` (load, calibrate, prune) and
the pruned model is scored by ``truthprune.perplexity`` on the windows, batches and BOS of
``truthprune run --eval ppl``, so the perplexities equal the CLI's (``--check-cli`` also runs the
run's own evaluation stages and asserts it). Every method is planned (names, options, files
checked) before the model loads; the model is loaded once and its dense weights are restored
before each method (``truthprune.SharedModel``, as ``truthprune sweep`` does). Each method's prune time (the
engine's dense pre-pass, whole-model pass and layer loop) is divided by the first method's, all
in this one process. ``--truth-data`` reaches every method (sparc3 target=truth reads it).

Interval: the per-window NLLs are those of ``truthprune run``'s perplexity (the same windows,
batches and functions, so the perplexity is the CLI's); a method's perplexity ratio to the first
method is exp(mean over windows of the NLL difference), with a 95 % percentile bootstrap over the
windows, paired (the same windows for both; the methods are deterministic for the seed, so the
windows are the only source of variance). Decision rule, fixed before the numbers: a method is
better (worse) than the reference when the whole interval lies below (above) 1.
"""

from __future__ import annotations

import argparse
import json
import math
import random
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
    """The plan of one method: ``truthprune prune`` (no report) unless --check-cli asks for the run's
    own perplexity stage (then ``truthprune run --eval ppl``, report in a temporary directory)."""
    from truthprune import build_config, plan_run

    common = {"model": args.model, "sparsity": args.sparsity, "nm": args.nm, "calibration": ["wikitext2"],
              "calibration_options": {"path": args.calibration_text}, "nsamples": args.nsamples, "seqlen": args.seqlen,
              "eval": ["ppl"], "ppl_data": args.ppl_text, "ppl_max_windows": args.ppl_windows,
              "truth_data": args.truth_data, "batch_size": args.batch_size, "out": out, "quiet": True,
              "device": args.device}
    return plan_run(build_config(None, {**common, **overrides}), report=args.check_cli)


def window_nlls(model, eval_ids, bos_id, cfg) -> list[float]:
    """Per-window mean NLL of the run's perplexity: ``truthprune.perplexity`` with the run's windows,
    batches and BOS (``eval_ids``: ``truthprune.load_eval_text`` of the run's text under its BOS rule)."""
    from truthprune import perplexity

    return perplexity(model, eval_ids, cfg.seqlen, batch_size=cfg.batch_size, max_windows=cfg.ppl_max_windows,
                      bos_id=bos_id)["window_nll"]


def paired_interval(ref: list[float], other: list[float], replicates: int = 2000, seed: int = 0) -> dict[str, float]:
    """ppl(other) / ppl(ref) = exp(mean(other - ref)) and its 95 % percentile bootstrap over windows."""
    d = [b - a for a, b in zip(ref, other)]
    rng = random.Random(seed)
    boots = sorted(math.exp(sum(rng.choice(d) for _ in d) / len(d)) for _ in range(replicates))
    return {"ratio": math.exp(sum(d) / len(d)), "lo": boots[int(0.025 * replicates)], "hi": boots[int(0.975 * replicates) - 1]}


def main() -> None:
    import os

    import truthprune

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--sparsity", type=float, default=None)
    ap.add_argument("--nm", default=None)
    ap.add_argument("--method", action="append", required=True, help="LABEL=FLAGS (repeatable; the first is the time reference)")
    ap.add_argument("--ppl-windows", type=int, default=64, help="first N WikiText-2 test windows (64 = docs/results.md)")
    ap.add_argument("--truth-data", default=f"{SHARED}/truth_statements")
    ap.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (4 for Gemma: 262k-token logits)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--nsamples", type=int, default=32, help="calibration windows (32 = docs/results.md)")
    ap.add_argument("--seqlen", type=int, default=512, help="tokens per calibration and perplexity window")
    ap.add_argument("--calibration-text", default=f"{SHARED}/wikitext-2/valid.txt")
    ap.add_argument("--ppl-text", default=f"{SHARED}/wikitext-2/test.txt")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--check-cli", action="store_true", help="also run the CLI's perplexity stage and assert the same value")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="literature-")
    methods = [method_flags(m) for m in args.method]
    plans = {label: make_plan(args, o, f"{tmp}/{label}") for label, o in methods}  # every name, option, file checked first
    shared = truthprune.SharedModel()  # loaded by the first method's load stage, restored before every other one
    results = {"model": args.model, "sparsity": args.sparsity, "nm": args.nm, "ppl_windows": args.ppl_windows,
               "load_average": os.getloadavg(), "methods": {}}
    ref = eval_text = None
    for label, plan in plans.items():
        state = truthprune.execute(plan, load=shared)  # seed, load (restore), calibrate, prune [, evaluate]
        report, wall = state.pruning, state.log.timings["prune"]
        loaded = state.loaded
        if eval_text is None:  # the run's perplexity text under its BOS rule, tokenised once
            rule = truthprune.resolve_bos(loaded.tokenizer, plan.config.bos)
            eval_text = (truthprune.load_eval_text(plan.config.ppl_data, loaded.tokenizer, rule), rule.window_bos)
        nll = window_nlls(loaded.model, *eval_text, plan.config)
        ppl = math.exp(math.fsum(nll) / len(nll))
        if args.check_cli:  # the run's own perplexity stage (same plan) must give the same number
            cli = state.pruned["ppl"]["ppl"]
            assert abs(cli - ppl) <= 1e-9 * ppl, (cli, ppl)
        prune_s = report.prune_pass_s + report.dense_pass_s
        ref = ref or (prune_s, nll)
        row = {"flags": dict(methods)[label], "ppl": ppl, "window_nll": nll, "prune_s": prune_s, "prune_wall_s": wall,
               "time_ratio": prune_s / ref[0], "ppl_ratio": paired_interval(ref[1], nll), "overall": report.overall,
               "allocation": report.allocation, "load_average": os.getloadavg()}
        results["methods"][label] = row
        r = row["ppl_ratio"]
        print(f"{label}: ppl {ppl:.3f} (x{r['ratio']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]), prune {prune_s:.1f} s "
              f"(x{row['time_ratio']:.2f}), sparsity {report.overall:.4f}", flush=True)
        if args.json:  # after every method: an interrupted run keeps what it measured
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
