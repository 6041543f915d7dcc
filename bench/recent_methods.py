"""Wanda++, TRIM and Frank-Wolfe against Wanda in one process: perplexity, per-linear
reconstruction error relative to Wanda, and prune time as a ratio to Wanda's.

    flock /tmp/truthprune-heavy.lock python bench/recent_methods.py --sparsity 0.7 \\
        [--nm 2:4] [--methods wanda,trim,fw,wandapp] [--allocator uniform] [--opt wandapp:ro_steps=2]
        [--error-samples 8] [--ppl-windows 64] [--json out.json]

Same protocol as docs/results.md (calibration: WikiText-2 valid, 32 x 512; perplexity: first 64
windows of WikiText-2 test), through the same pipeline as ``truthprune run --eval ppl`` (``truthprune.plan_run`` and
``truthprune.execute``), so the perplexities equal the CLI's. The model is loaded once
(``truthprune.SharedModel``, as ``truthprune sweep`` does); its dense weights are restored
before every method.

Reconstruction error: before pruning, one dense forward pass over the first --error-samples
(default 8) calibration windows accumulates X^T X (float64) of every prunable linear's *dense-model* input. For a pruned weight
W' the error of that linear is ||W X^T - W' X^T|| = sqrt(tr((W - W') G (W - W')^T)); each
method's error is divided by Wanda's for the same linear (Wanda must be in --methods and is run
first). The summary gives the median and the quartiles of that ratio over all linears.

Times are each method's prune stage (statistics, masks, propagation) in this one process, as a
ratio to Wanda's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

SHARED = "../shared/data"


def method_options(specs: list[str]) -> dict[str, dict[str, str]]:
    """['wandapp:ro_steps=2', ...] -> {'wandapp': {'ro_steps': '2'}}."""
    out: dict[str, dict[str, str]] = {}
    for spec in specs:
        method, _, kv = spec.partition(":")
        key, _, value = kv.partition("=")
        if not (method and key and value):
            raise SystemExit(f"--opt {spec!r} must look like METHOD:KEY=VALUE, e.g. wandapp:ro_steps=2")
        out.setdefault(method, {})[key] = value
    return out


def make_plan(args, method: str, out: str, options: dict[str, str] | None = None, report: bool = True):
    """The plan of ``truthprune run --eval ppl`` for one method (``report=False``: of ``truthprune
    prune``, which evaluates nothing and writes no report)."""
    from truthprune import build_config, plan_run

    overrides = {
        "pruner_options": options or {},
        "model": args.model, "pruner": method, "sparsity": args.sparsity, "nm": args.nm, "allocator": args.allocator,
        "calibration": ["wikitext2"], "calibration_options": {"path": f"{SHARED}/wikitext-2/valid.txt"},
        "nsamples": 32, "seqlen": 512, "eval": ["ppl"], "ppl_data": f"{SHARED}/wikitext-2/test.txt",
        "ppl_max_windows": args.ppl_windows, "out": out, "quiet": True,
    }
    return plan_run(build_config(None, overrides), report=report)


def dense_grams(model, calib, n: int, batch_size: int = 8) -> dict[str, "torch.Tensor"]:
    """{"<layer>.<linear>": X^T X} of every prunable linear's input in the dense model, on the
    first ``n`` calibration windows."""
    import torch

    from truthprune import decoder_layers, prunable_linears

    grams, handles, last = {}, [], {}
    for i, layer in enumerate(decoder_layers(model)):
        for name, lin in prunable_linears(layer).items():
            key = f"{i}.{name}"
            grams[key] = torch.zeros(lin.in_features, lin.in_features, dtype=torch.float64)

            def hook(module, args, key=key):
                x = args[0]
                if last.get("x") is not x:  # q/k/v (gate/up) read the same tensor: one product
                    flat = x.detach().reshape(-1, x.shape[-1]).float()
                    last["x"], last["g"] = x, (flat.t() @ flat).double()
                grams[key] += last["g"]

            handles.append(lin.register_forward_pre_hook(hook))
    try:
        with torch.inference_mode():
            for s in range(0, min(n, len(calib)), batch_size):
                model(input_ids=calib.input_ids[s : s + batch_size], attention_mask=calib.attention_mask[s : s + batch_size])
    finally:
        for h in handles:
            h.remove()
        last.clear()
    return grams


def linear_weights(model) -> dict[str, "torch.Tensor"]:
    """{"<layer>.<linear>": a copy of its weight} of every prunable linear."""
    from truthprune import decoder_layers, prunable_linears

    return {f"{i}.{n}": lin.weight.detach().clone()
            for i, layer in enumerate(decoder_layers(model)) for n, lin in prunable_linears(layer).items()}


def linear_errors(pruned: dict, dense: dict, grams: dict) -> dict[str, float]:
    out = {}
    for key, w in pruned.items():
        d = dense[key].double() - w.double()
        out[key] = float(((d @ grams[key]) * d).sum().clamp(min=0).sqrt())
    return out


def main() -> None:
    from truthprune import SharedModel, execute

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--nm", default=None)
    ap.add_argument("--allocator", default=None)
    ap.add_argument("--methods", default="wanda,trim,fw,wandapp")
    ap.add_argument("--json", default=None)
    ap.add_argument("--opt", action="append", default=[], help="METHOD:KEY=VALUE pruner option (repeatable)")
    ap.add_argument("--error-samples", type=int, default=8, help="calibration windows for the reconstruction errors")
    ap.add_argument("--ppl-windows", type=int, default=64, help="first N WikiText-2 test windows (64 = docs/results.md)")
    args = ap.parse_args()
    methods = args.methods.split(",")
    if methods[0] != "wanda":
        raise SystemExit("--methods must start with wanda (the reference for every ratio)")
    tmp = tempfile.mkdtemp(prefix="recent-")
    opts = method_options(args.opt)
    plans = {m: make_plan(args, m, f"{tmp}/{m}", opts.get(m)) for m in methods}  # every name and option checked first
    shared = SharedModel()  # loads once; restores the dense weights before every later run
    results: dict = {"sparsity": args.sparsity, "nm": args.nm, "ppl_windows": args.ppl_windows, "allocator": args.allocator, "options": opts, "methods": {}}
    dense = grams = None
    pruned_weights: dict[str, dict] = {}
    for m in methods:
        state = execute(plans[m], load=shared)  # seeds, loads (or restores), calibrates, prunes, evaluates
        pruned_weights[m] = linear_weights(state.loaded.model)
        if grams is None:  # the calibration windows are the same for every method (same seed and source)
            model = shared(plans[m].config).model  # the dense weights again
            dense = linear_weights(model)
            t = time.perf_counter()
            grams = dense_grams(model, state.calibration, args.error_samples)
            print(f"dense grams: {time.perf_counter() - t:.1f} s", flush=True)
        report, ppl = state.pruning, state.pruned["ppl"]["ppl"]
        errs = linear_errors(pruned_weights.pop(m), dense, grams)
        results["methods"][m] = {"ppl": ppl, "prune_s": report.prune_pass_s + report.dense_pass_s,
                                 "overall": report.overall, "errors": errs}
        print(f"{m}: ppl {ppl:.3f}, prune {results['methods'][m]['prune_s']:.1f} s, sparsity {report.overall:.4f}", flush=True)
        if args.json:  # after every method, so an interrupted run keeps what it measured
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    ref = results["methods"]["wanda"]
    for m, r in results["methods"].items():
        ratios = sorted(r["errors"][k] / ref["errors"][k] for k in r["errors"] if ref["errors"][k] > 0)
        q = statistics.quantiles(ratios, n=4)
        r["error_ratio"] = {"median": statistics.median(ratios), "q1": q[0], "q3": q[2],
                            "below_1": sum(x < 1 for x in ratios) / len(ratios)}
        r["time_ratio"] = r["prune_s"] / ref["prune_s"]
        print(f"{m}: ppl {r['ppl']:.2f} | error/Wanda median {r['error_ratio']['median']:.3f} "
              f"(IQR {q[0]:.3f}-{q[2]:.3f}, {100 * r['error_ratio']['below_1']:.0f} % of linears < 1) | "
              f"time x{r['time_ratio']:.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
