"""Where a pruning method's time goes: per engine stage, per sub-step and per linear, in one prune.

    python bench/profile_method.py METHOD [--model smollm2-135m] [--nsamples 32] [--seqlen 512]
        [--batch-size 8] [--sparsity 0.5] [--nm 2:4] [--pruner-opt key=value ...] [--json out.json]

One ``truthprune.prune_model`` of METHOD (a registered pruner, allocator ``uniform``) on WikiText-2
validation windows (``--valid-text``; the calibration of docs/results.md), with timers around:

* the engine's stages (``PruneReport.phase_s``): capture of the layer-0 inputs, statistics,
  masks (the pruner's work), propagation;
* inside statistics, the statistic arithmetic (input flattening, float32 casts, Gram products,
  square sums), the rest being the layer forward;
* inside masks, the named steps of methods that have them (SparseGPT and the pruners built on
  its OBS functions: H from the Gram statistic, factorisation, column sweep, mask selection,
  lazy-batch update; exclusive times, so the selection and the sub-block updates inside the
  sweep count under their own names only);
* every ``pruner.prune`` call, attributed to its linear's name (summed over layers).

The timers add a few function calls per linear and per batch; nothing else changes. Prints the
load average with the numbers (timings on a busy machine are slower, not different in kind).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import time
from collections import defaultdict

from pairing import machine_state, wikitext_path

# method -> (module, function, label) timed inside the mask stage
STEPS = {
    "sparsegpt": [("truthprune_sparsegpt.obs", "hessian_from_gram", "H from the Gram statistic"),
                  ("truthprune_sparsegpt.obs", "inverse_hessian_factor", "factorisation"),
                  ("truthprune_sparsegpt.obs", "sweep_block", "column sweep"),
                  ("truthprune_sparsegpt.obs", "lowest_k_mask", "mask selection"),
                  ("truthprune_sparsegpt.obs", "lazy_update", "lazy update")],
}
STEPS["truthaware"] = STEPS["sparsegpt"][1:]


class Timers:
    """Exclusive wall time per label: a timed call inside another timed call is not counted twice."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.by_linear: dict[tuple[str, str], float] = defaultdict(float)
        self.linear = "?"
        self._stack: list[float] = []  # time spent in children of each open call

    def wrap(self, fn, label: str):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self._stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                own = dt - self._stack.pop()
                if self._stack:
                    self._stack[-1] += dt
                self.total[label] += own
                self.calls[label] += 1
                self.by_linear[(self.linear, label)] += own

        return timed


def instrument(method: str, pruner, model, timers: Timers) -> None:
    from truthprune import decoder_layers, prunable_linears
    from truthprune.pruning.engine import stats as stats_module

    names = {lin.weight.data_ptr(): name for layer in decoder_layers(model) for name, lin in prunable_linears(layer).items()}
    prune = pruner.prune

    def timed_prune(weight, stats, target):
        timers.linear = names.get(weight.data_ptr(), f"{tuple(weight.shape)}")
        return timers.wrap(prune, "pruner.prune")(weight, stats, target)

    pruner.prune = timed_prune
    collector = stats_module.StatsCollector
    collector._contribution = timers.wrap(collector._contribution, "statistic arithmetic")
    for module_name, fn_name, label in STEPS.get(method, []):
        module = importlib.import_module(module_name)
        setattr(module, fn_name, timers.wrap(getattr(module, fn_name), label))


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
    timers = Timers()
    instrument(args.method, pruner, model, timers)
    state_before = machine_state()
    t0 = time.perf_counter()
    report = truthprune.prune_model(model, calib, pruner, registry.create("allocator", "uniform"), args.sparsity, nm=nm,
                                    batch_size=args.batch_size, quiet=True)
    wall = time.perf_counter() - t0
    phase = dict(report.phase_s)
    capture = report.prune_pass_s - sum(phase.values())
    arithmetic = timers.total.pop("statistic arithmetic", 0.0)
    prune_total = timers.total.pop("pruner.prune", 0.0)
    steps = dict(timers.total)
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
    linears = sorted({lin for lin, lab in timers.by_linear if lab == "pruner.prune"})
    print(f"\nper linear, summed over {len(report.layers)} layers (seconds; pruner.prune = its own code outside the steps)")
    print(f"{'linear':24s} " + " ".join(f"{lab[:14]:>14s}" for lab in labels) + f" {'sum':>9s}")
    for lin in linears:
        vals = [timers.by_linear.get((lin, lab), 0.0) for lab in labels]
        print(f"{lin:24s} " + " ".join(f"{v:14.2f}" for v in vals) + f" {sum(vals):9.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "wall_s": wall, "stages": dict(rows), "phase_s": phase,
                       "by_linear": {f"{a}|{b}": v for (a, b), v in timers.by_linear.items()},
                       "machine": state_before}, f, indent=1)


if __name__ == "__main__":
    main()
