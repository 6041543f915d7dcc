"""Does perplexity move when the ``text`` source splits WikiText into paragraphs (``split=blank-lines``)?

    python bench/calibration_split.py [--pruner wanda] [--seeds 3] [--nsamples 32] [--seqlen 512] [--ppl-windows 64]

The WikiText-2 raw validation file through the ``text`` calibration source, two ways, for each
calibration seed: ``empty-lines`` (the default: the file is one record, windows are random cuts
of the whole text) and ``blank-lines`` (whitespace-only lines separate records: windows are
random paragraphs and headings concatenated). Each arm prunes the same dense SmolLM2-135M
(allocator uniform, 50 %) and is scored on the same WikiText-2 test windows.

Decision rule (fixed before measuring): perplexity moves if the 95 % t-interval of the mean
over seeds of log(ppl blank-lines / ppl empty-lines) excludes 0. The interval is over seeds,
so it covers the calibration draw and, through it, the evaluation windows' response to it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics

from pairing import eval_windows, machine_state, ppl, wikitext_path, window_nlls

T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--pruner", default="wanda")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--ppl-windows", type=int, default=64)
    ap.add_argument("--valid-text", default=None)
    ap.add_argument("--test-text", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import truthprune

    loaded = truthprune.load_model(args.model, device="cpu", dtype="float32")
    model, tok = loaded.model, loaded.tokenizer
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    registry = truthprune.get_registry()
    windows = eval_windows(tok, wikitext_path("test", args.test_text), args.ppl_windows, 512)
    valid = wikitext_path("valid", args.valid_text)
    print(f"{args.pruner} 50 % on {args.model}, text source on {valid}, {args.nsamples} x {args.seqlen}; {machine_state()}")
    rows = []
    for seed in range(args.seeds):
        row = {"seed": seed}
        for split in ("empty-lines", "blank-lines"):
            model.load_state_dict(dense)
            source = registry.create("calibration", "text", {"path": valid, "split": split})
            calib = source.samples(tok, args.nsamples, args.seqlen, seed)
            truthprune.prune_model(model, calib, registry.create("pruner", args.pruner), registry.create("allocator", "uniform"),
                                   0.5, batch_size=8, quiet=True)
            row[split] = ppl(window_nlls(model, windows))
        row["log_ratio"] = math.log(row["blank-lines"] / row["empty-lines"])
        rows.append(row)
        print(f"seed {seed}: empty-lines {row['empty-lines']:.3f}  blank-lines {row['blank-lines']:.3f}  "
              f"ratio {math.exp(row['log_ratio']):.4f}  ({machine_state()})", flush=True)
    logs = [r["log_ratio"] for r in rows]
    m = statistics.mean(logs)
    half = T95.get(len(logs) - 1, 1.96) * statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else float("nan")
    verdict = "moves" if (m - half > 0 or m + half < 0) else "does not move (interval contains 1)"
    print(f"mean ratio blank-lines / empty-lines {math.exp(m):.4f}, 95 % t-interval over {len(logs)} seeds "
          f"[{math.exp(m - half):.4f}, {math.exp(m + half):.4f}]: perplexity {verdict}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "rows": rows, "mean_ratio": math.exp(m),
                       "interval": [math.exp(m - half), math.exp(m + half)]}, f, indent=1)


if __name__ == "__main__":
    main()
