"""Prune time of dense-target variants as ratios to plain SparseGPT, measured in one run.

    python bench/dense_target_speed.py [--model smollm2-135m] [--repeats 2] [--json out.json]

Loads the model once and, for every repeat, prunes a fresh copy of the dense weights with each
variant back to back (same calibration: 32 windows of 512 WikiText-2 validation tokens), so a
ratio compares runs that shared the machine's state. Reported: the engine's prune pass
(``PruneReport.prune_pass_s``) per variant and repeat, its ratio to ``sparsegpt`` of the same
repeat, the per-phase split of the last repeat, and the medians of the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

VARIANTS = {
    "sparsegpt": ("sparsegpt", {}, False),
    "sparsegpt target=dense": ("sparsegpt", {"target": "dense"}, False),
    "sparsegpt target=dense +bias": ("sparsegpt", {"target": "dense"}, True),
    "truthaware": ("truthaware", {}, False),
    "truthaware target=dense": ("truthaware", {"target": "dense"}, False),
    "truthaware target=dense tokens=all": ("truthaware", {"target": "dense", "tokens": "all"}, False),
    "wanda": ("wanda", {}, False),
    "wanda +bias": ("wanda", {}, True),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma list of: " + ", ".join(VARIANTS))
    ap.add_argument("--calib", default="../shared/data/wikitext-2/valid.txt")
    ap.add_argument("--truth-data", default="../shared/data/truth_statements")
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import torch

    from truthprune import CalibrationContext, get_registry, load_calibration, load_model, prune_model

    loaded = load_model(args.model, device="cpu", dtype="float32")
    model, tok = loaded.model, loaded.tokenizer
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    had_bias = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m.bias is not None}
    text = model.config.get_text_config()
    flags = {k: v for k, v in text.to_dict().items() if k.endswith("_bias") and isinstance(v, bool)}
    reg = get_registry()
    source = reg.create("calibration", "wikitext2", {"path": args.calib})
    calib = load_calibration([source], tok, args.nsamples, args.seqlen, 0)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    rows: dict[str, list[float]] = {n: [] for n in names}
    phases: dict[str, dict] = {}
    for rep in range(args.repeats):
        for name in names:
            pruner_name, options, bias = VARIANTS[name]
            strip_added_biases(model, had_bias, flags)
            model.load_state_dict(dense)
            pruner = reg.create("pruner", pruner_name, options)
            c = calib
            aux = pruner.auxiliary_calibration(CalibrationContext(tokenizer=tok, seed=0, truth_data=args.truth_data))
            if aux:
                c = type(calib)(calib.input_ids, calib.attention_mask, calib.description, calib.stat_mask, aux)
            t0 = time.perf_counter()
            report = prune_model(model, c, pruner, reg.create("allocator", "uniform"), 0.5, batch_size=8, quiet=True,
                                 bias_correction=bias)
            rows[name].append(report.prune_pass_s)
            phases[name] = report.phase_s
            print(f"repeat {rep + 1} {name}: prune pass {report.prune_pass_s:.1f} s (wall {time.perf_counter() - t0:.1f} s)", flush=True)
    base = rows.get("sparsegpt")
    print("| variant | " + " | ".join(f"repeat {r + 1} s" for r in range(args.repeats)) + " | ratio to sparsegpt (median) |")
    print("|---|" + "---|" * args.repeats + "---|")
    out = {}
    for name, times in rows.items():
        ratios = [t / b for t, b in zip(times, base)] if base else []
        med = statistics.median(ratios) if ratios else float("nan")
        out[name] = {"seconds": times, "ratios": ratios, "median_ratio": med, "phase_s": phases[name]}
        print(f"| {name} | " + " | ".join(f"{t:.1f}" for t in times) + f" | {med:.2f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return 0


def strip_added_biases(model, had_bias: set[str], flags: dict[str, bool]) -> None:
    """Undo a previous ``--bias-correction`` variant: its added biases and config flags."""
    import torch

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module.bias is not None and name not in had_bias:
            module.bias = None
    text = model.config.get_text_config()
    for k, v in flags.items():
        setattr(text, k, v)


if __name__ == "__main__":
    raise SystemExit(main())
