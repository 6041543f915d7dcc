"""Where a pruning method's time goes: per engine stage, per sub-step and per linear, in one prune.

    python bench/profile_method.py METHOD [--model smollm2-135m] [--nsamples 32] [--seqlen 512]
        [--batch-size 8] [--sparsity 0.5] [--nm 2:4] [--pruner-opt key=value ...] [--json out.json]

One ``truthprune.prune_model`` of METHOD (a registered pruner, allocator ``uniform``) on WikiText-2
validation windows (``--valid-text``; the calibration of docs/results.md), run under ``cProfile``
(Python calls only: tensor operations are not profiled calls, their time counts in the Python
function that issued them). Nothing in truthprune or the plugin is replaced; the breakdown is:

* the engine's stages (``PruneReport.phase_s``): capture of the layer-0 inputs, statistics,
  masks (the pruner's work), propagation;
* inside statistics, the statistic arithmetic (input flattening, float32 casts, Gram products,
  square sums: the cumulative time of the function named ``StatsCollector._contribution``), the
  rest being the layer forward;
* inside masks, the named steps of methods that have them (SparseGPT and the pruners built on
  its OBS functions: H from the Gram statistic, factorisation, column sweep, mask selection,
  lazy-batch update, found by function name in truthprune's packages); exclusive times, so the
  selection and the sub-block updates called from the sweep count under their own names only;
* every ``pruner.prune`` call, attributed to its linear's name (summed over layers): the pruner
  object's ``prune`` is wrapped so that each linear's calls are profiled apart.

The profiler adds a cost to every Python function call (not to the tensor operations inside
them), so a profiled prune is somewhat slower than a plain one; the times and shares printed are
those of the profiled prune. Prints the load average with the numbers (timings on a busy machine are slower, not different in
kind).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import time
from collections import defaultdict
from pathlib import Path

from pairing import machine_state, wikitext_path

# method -> (label, qualified names of the functions that do that step): the steps timed inside
# the mask stage; the second names are those of --variant's stand-ins (bench/obs_precision.py,
# bench/obs_reference.py)
STEPS = {
    "sparsegpt": [("H from the Gram statistic", ("hessian_from_gram",)),
                  ("factorisation", ("inverse_hessian_factor", "explicit_inverse_factor")),
                  ("column sweep", ("sweep_block", "_full_width_sweep")),
                  ("mask selection", ("lowest_k_mask", "sorted_lowest_k")),
                  ("lazy update", ("lazy_update", "_float32_lazy_update"))],
}
STEPS["truthaware"] = STEPS["sparsegpt"][1:]
ARITHMETIC = "StatsCollector._contribution"  # the engine's statistic arithmetic of one layer input
OUTSIDE = "(outside pruner.prune)"  # steps a pruner runs in another hook
BENCH = Path(__file__).resolve().parent


def qualname(code) -> str | None:
    """The qualified name of a profiled function of truthprune's packages (core or a plugin) or of
    this directory, else None (builtins and third-party code)."""
    if isinstance(code, str):
        return None
    path = Path(code.co_filename).resolve()
    if path.parent != BENCH and not any(part.startswith("truthprune") for part in path.parts):
        return None
    return getattr(code, "co_qualname", code.co_name)


def exclusive_seconds(profile: cProfile.Profile, names: set[str]) -> dict[str, float]:
    """Cumulative seconds of each function in ``names``, less what it spent in direct calls to the
    others (a step called from another step counts under its own name only)."""
    out: dict[str, float] = defaultdict(float)
    for entry in profile.getstats():
        name = qualname(entry.code)
        if name not in names:
            continue
        inner = sum(sub.totaltime for sub in entry.calls or () if sub.code is not entry.code and qualname(sub.code) in names)
        out[name] += entry.totaltime - inner
    return out


def by_label(seconds: dict[str, float], labels: dict[str, str]) -> dict[str, float]:
    """{function: seconds} -> {its step label (or its own name): seconds}."""
    out: dict[str, float] = defaultdict(float)
    for name, s in seconds.items():
        out[labels.get(name, name)] += s
    return out


class Profiles:
    """A cProfile of one prune split by linear: one profiler for the engine (everything outside
    ``pruner.prune``) and one per linear name inside it, exactly one of them enabled at a time."""

    def __init__(self) -> None:
        self.engine = cProfile.Profile(builtins=False)
        self.linears: dict[str, cProfile.Profile] = {}
        self.prune_s: dict[str, float] = defaultdict(float)  # wall seconds of pruner.prune per linear

    def attach(self, pruner, model) -> None:
        """Wrap the pruner object's ``prune`` (its public method): each call runs under its linear's profiler."""
        from truthprune import decoder_layers, prunable_linears

        names = {lin.weight.data_ptr(): name for layer in decoder_layers(model) for name, lin in prunable_linears(layer).items()}
        prune = pruner.prune

        def profiled_prune(weight, *args, **kwargs):
            name = names.get(weight.data_ptr(), f"{tuple(weight.shape)}")
            profile = self.linears.setdefault(name, cProfile.Profile(builtins=False))
            self.engine.disable()
            profile.enable()
            t0 = time.perf_counter()
            try:
                return prune(weight, *args, **kwargs)
            finally:
                self.prune_s[name] += time.perf_counter() - t0
                profile.disable()
                self.engine.enable()

        pruner.prune = profiled_prune

    def seconds(self, names: set[str]) -> dict[str, dict[str, float]]:
        """{linear (or OUTSIDE): {function: exclusive seconds}} of the functions in ``names``."""
        out = {OUTSIDE: exclusive_seconds(self.engine, names)}
        out.update({lin: exclusive_seconds(p, names) for lin, p in self.linears.items()})
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("method")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--nm", default=None)
    ap.add_argument("--pruner-opt", action="append", default=[], help="key=value (JSON values), repeatable")
    ap.add_argument("--variant", default=None,
                    help="sparsegpt only: a precision variant of bench/obs_precision.py (e.g. reference = the arithmetic before sub-block sweeps)")
    ap.add_argument("--valid-text", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    import truthprune

    opts = {}
    for kv in args.pruner_opt:
        k, _, v = kv.partition("=")
        try:
            opts[k] = json.loads(v)
        except json.JSONDecodeError:
            opts[k] = v
    nm = tuple(int(x) for x in args.nm.split(":")) if args.nm else None
    loaded = truthprune.load_model(args.model, device="cpu", dtype="float32")
    model, tok = loaded.model, loaded.tokenizer
    registry = truthprune.get_registry()
    calib = registry.create("calibration", "wikitext2", {"path": wikitext_path("valid", args.valid_text)}).samples(
        tok, args.nsamples, args.seqlen, 0)
    if args.variant:
        from obs_precision import make_pruner

        if args.method != "sparsegpt" or opts:
            raise SystemExit("error: --variant applies to sparsegpt without --pruner-opt")
        pruner = make_pruner(args.variant)
    else:
        pruner = registry.create("pruner", args.method, opts)
    steps_of = {name: label for label, names in STEPS.get(args.method, []) for name in names}  # function -> label
    profiles = Profiles()
    profiles.attach(pruner, model)
    state_before = machine_state()
    t0 = time.perf_counter()
    profiles.engine.enable()
    try:
        report = truthprune.prune_model(model, calib, pruner, registry.create("allocator", "uniform"), args.sparsity, nm=nm,
                                        batch_size=args.batch_size, quiet=True)
    finally:
        profiles.engine.disable()
    wall = time.perf_counter() - t0
    by_linear = {lin: by_label(s, steps_of) for lin, s in profiles.seconds({ARITHMETIC, *steps_of}).items()}
    labels = [label for label, _ in STEPS.get(args.method, [])]
    arithmetic = sum(s.get(ARITHMETIC, 0.0) for s in by_linear.values())
    steps = {label: sum(s.get(label, 0.0) for s in by_linear.values()) for label in labels}
    per_linear = {lin: {"pruner.prune": 0.0 if lin == OUTSIDE else profiles.prune_s.get(lin, 0.0) - sum(s.get(lab, 0.0) for lab in labels),
                        **{label: s.get(label, 0.0) for label in labels}}
                  for lin, s in by_linear.items() if lin != OUTSIDE or any(s.get(lab) for lab in labels)}
    prune_total = sum(row["pruner.prune"] for row in per_linear.values())
    phase = dict(report.phase_s)
    capture = report.prune_pass_s - sum(phase.values())
    rows = [("capture (layer-0 inputs)", capture),
            ("statistics: layer forward", phase["statistics"] - arithmetic),
            ("statistics: statistic arithmetic", arithmetic)]
    rows += [(f"masks: {label}", s) for label, s in steps.items()]
    rows += [("masks: rest of pruner.prune", prune_total), ("masks: engine (apply, checks)", phase["masks"] - prune_total - sum(steps.values())),
             ("propagation", phase["propagation"]), ("load/store/quantize", phase["load"] + phase["store"] + phase["quantize"])]
    print(f"{args.method}{' (' + args.variant + ')' if args.variant else ''} on {args.model}: {len(calib)} x {args.seqlen} tokens, batch {args.batch_size}, "
          f"{'N:M ' + args.nm if nm else f'sparsity {args.sparsity}'}, {torch.get_num_threads()} threads")
    print(f"before: {state_before}\nafter:  {machine_state()}")
    print(f"\n{'stage':40s} {'seconds':>9s} {'share':>7s}")
    for label, s in rows:
        print(f"{label:40s} {s:9.2f} {100 * s / wall:6.1f}%")
    print(f"{'total (prune_model wall)':40s} {wall:9.2f}")
    labels = ["pruner.prune", *steps]
    print(f"\nper linear, summed over {len(report.layers)} layers (seconds; pruner.prune = its own code outside the steps)")
    print(f"{'linear':24s} " + " ".join(f"{lab[:14]:>14s}" for lab in labels) + f" {'sum':>9s}")
    for lin in sorted(per_linear):
        vals = [per_linear[lin][lab] for lab in labels]
        print(f"{lin:24s} " + " ".join(f"{v:14.2f}" for v in vals) + f" {sum(vals):9.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "wall_s": wall, "stages": dict(rows), "phase_s": phase,
                       "by_linear": {f"{lin}|{lab}": v for lin, row in per_linear.items() for lab, v in row.items()},
                       "machine": state_before}, f, indent=1)


if __name__ == "__main__":
    main()
