"""truthprune against llm-compressor on identical calibration windows: time, perplexity, masks.

    python bench/peer_llmcompressor.py [--pairs 2] [--methods wanda,sparsegpt,sparsegpt-2:4]
        [--out results/peer] [--peer-batch-size 8] [--nsamples 32] [--seqlen 512] [--ppl-windows 64]

Needs a Python environment holding both truthprune and llm-compressor (bench-only, never a
truthprune dependency). The pins both accept, as measured: torch 2.13.0 (CPU),
llmcompressor 0.14.0.1, which requires transformers >=5.15,<=5.17, so transformers 5.17.0:

    python -m venv --system-site-packages .venv-peer      # sees the installed torch
    .venv-peer/bin/pip install llmcompressor==0.14.0.1 transformers==5.17.0
    .venv-peer/bin/pip install --no-deps -e . -e plugins/pruners/truthprune-sparsegpt -e plugins/calibration/truthprune-hub
    .venv-peer/bin/python bench/peer_llmcompressor.py

What runs. SmolLM2-135M in float32 on the CPU; the calibration is one tensor, ``--nsamples``
WikiText-2 validation windows of ``--seqlen`` tokens (seed 0, truthprune's ``wikitext2``
source), handed to both libraries unchanged (llm-compressor gets it as a DataLoader, no
shuffling). Methods: ``wanda`` and ``sparsegpt`` at 50 % and ``sparsegpt-2:4``, with each
library's defaults otherwise equal (block 128, dampening 0.01 of mean diag H, lm_head not pruned).
Sides: ``truthprune``, ``peer`` (llm-compressor at ``--peer-batch-size``; batch 8 was its fastest
in the measurements of docs/performance.md), and for SparseGPT ``truthprune-before``: the
arithmetic truthprune used before its sub-block sweep and shared factorisation (float64, a
column-by-column sweep over each whole block, one factorisation per linear), which is also the
float64 reference whose masks and perplexity the shipped code must keep.

Every (method, side, pair) is one unit in a fresh subprocess, so no library state, hook or
thread setting carries over. Pairs are interleaved (pair k runs the sides in turn, the order
reversed on odd k), so a busy period slows both sides of a pair. Timed: the prune call alone
(model loaded and windows built beforehand), with the load average at its start and end.
Also timed: truthprune's mask stage (for SparseGPT: H, factorisation, sweeps and updates) and
the peer's per-module compression total (its ``sparsify_weight`` calls). Pair 0 also saves
the zero masks and the per-window loss on ``--ppl-windows`` WikiText-2 test windows.

Resumable: each unit writes ``--out/<method>/<side>-<pair>.json`` (``:`` in a method written ``of``) when done and is skipped
when that file exists (delete the directory to start over). The summary is printed at the end
(``--summary`` prints it from what is there without running anything).

How much of a mask difference is rounding: run again with another ``--batch-size`` into another
``--out`` (the statistics are then summed in another order), and print
``--summary --rounding-check OTHER_OUT``: the same sides' perplexity ratios and mask agreement
between the two runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pairing import (eval_windows, loadavg, machine_state, mask_agreement, ppl, ppl_ratio, wikitext_path, window_nlls,
                     zero_masks)

# llm-compressor 0.14 matches ``ignore`` against "<layer>.<submodule>" names, and lm_head is its own
# sequential target, so its name is "lm_head." and a plain "lm_head" entry does not match it
LM_HEAD = "re:.*lm_head"
METHODS = {"wanda": ("wanda", None), "sparsegpt": ("sparsegpt", None), "sparsegpt-2:4": ("sparsegpt", (2, 4))}


def unit_folder(args, method: str) -> Path:
    return Path(args.out) / method.replace(":", "of")


def sides(method: str) -> list[str]:
    return ["truthprune", "peer"] + (["truthprune-before"] if METHODS[method][0] == "sparsegpt" else [])


def calibration(tok, args):
    import truthprune

    source = truthprune.get_registry().create("calibration", "wikitext2", {"path": wikitext_path("valid", args.valid_text)})
    return source.samples(tok, args.nsamples, args.seqlen, 0)


def prune_truthprune(model, calib, method: str, side: str, args) -> dict:
    import truthprune

    from obs_precision import make_pruner

    name, nm = METHODS[method]
    registry = truthprune.get_registry()
    if name == "sparsegpt":
        pruner = make_pruner("reference" if side == "truthprune-before" else "float64")
    else:
        pruner = registry.create("pruner", name)
    t0 = time.perf_counter()
    report = truthprune.prune_model(model, calib, pruner, registry.create("allocator", "uniform"), 0.5, nm=nm,
                                    batch_size=args.batch_size, quiet=True)
    return {"seconds": time.perf_counter() - t0, "mask_stage_s": report.phase_s["masks"], "phase_s": report.phase_s}


def prune_peer(model, tok, calib, method: str, args) -> dict:
    import torch
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier
    from llmcompressor.modifiers.pruning.sparsegpt import base as sgpt_base
    from llmcompressor.modifiers.pruning.wanda import base as wanda_base
    from torch.utils.data import DataLoader

    name, nm = METHODS[method]
    structure = f"{nm[0]}:{nm[1]}" if nm else "0:0"
    compress = {"s": 0.0, "calls": 0}
    module = sgpt_base if name == "sparsegpt" else wanda_base
    original = module.sparsify_weight

    def timed(*a, **kw):
        t = time.perf_counter()
        try:
            return original(*a, **kw)
        finally:
            compress["s"] += time.perf_counter() - t
            compress["calls"] += 1

    module.sparsify_weight = timed
    if name == "sparsegpt":
        recipe = SparseGPTModifier(sparsity=0.5, mask_structure=structure, block_size=128, dampening_frac=0.01, ignore=[LM_HEAD])
    else:
        recipe = WandaPruningModifier(sparsity=0.5, mask_structure=structure, ignore=[LM_HEAD])
    rows = [{"input_ids": calib.input_ids[i], "attention_mask": calib.attention_mask[i]} for i in range(len(calib))]
    loader = DataLoader(rows, batch_size=args.peer_batch_size, shuffle=False,
                        collate_fn=lambda b: {k: torch.stack([r[k] for r in b]) for k in b[0]})
    head = model.get_output_embeddings().weight
    head_zeros = int((head == 0).sum())
    t0 = time.perf_counter()
    oneshot(model=model, tokenizer=tok, dataset=loader, recipe=recipe, num_calibration_samples=len(calib),
            max_seq_length=args.seqlen, shuffle_calibration_samples=False)
    seconds = time.perf_counter() - t0
    if int((model.get_output_embeddings().weight == 0).sum()) != head_zeros:
        raise SystemExit("error: llm-compressor pruned lm_head (tied to the embedding on SmolLM2); the comparison is void")
    return {"seconds": seconds, "mask_stage_s": compress["s"], "compress_calls": compress["calls"]}


def run_unit(method: str, side: str, pair: int, args) -> None:
    """One prune in this (fresh) process; writes the unit's JSON (and masks, losses for pair 0)."""
    import truthprune

    loaded = truthprune.load_model(args.model, device="cpu", dtype="float32")
    model, tok = loaded.model, loaded.tokenizer
    calib = calibration(tok, args)
    load0 = machine_state()
    if side == "peer":
        out = prune_peer(model, tok, calib, method, args)
    else:
        out = prune_truthprune(model, calib, method, side, args)
    out.update(method=method, side=side, pair=pair, load_start=load0, load_end=machine_state(), load1_end=loadavg())
    unit_dir = unit_folder(args, method)
    if pair == 0:
        masks = zero_masks(model)
        np.save(unit_dir / f"{side}-masks.npy", np.concatenate([np.packbits(m.numpy().ravel()) for m in masks]))
        out["mask_sizes"] = [int(m.numel()) for m in masks]
        nll = window_nlls(model, eval_windows(tok, wikitext_path("test", args.test_text), args.ppl_windows, args.ppl_seqlen))
        out["window_nll"] = nll.tolist()
    (unit_dir / f"{side}-{pair}.json").write_text(json.dumps(out, indent=1))


def _masks(unit_dir: Path, side: str, sizes: list[int]):
    import torch

    bits = np.load(unit_dir / f"{side}-masks.npy")
    out, at = [], 0
    for n in sizes:
        nbytes = (n + 7) // 8
        out.append(torch.from_numpy(np.unpackbits(bits[at : at + nbytes])[:n].astype(bool)))
        at += nbytes
    return out


def summary(args) -> None:
    print(f"truthprune vs llm-compressor (batch {args.peer_batch_size}); {args.nsamples} x {args.seqlen} calibration tokens")
    for method in args.methods.split(","):
        unit_dir = unit_folder(args, method)
        units = {}
        for f in sorted(unit_dir.glob("*-[0-9]*.json")):
            u = json.loads(f.read_text())
            units[(u["side"], u["pair"])] = u
        if not units:
            continue
        print(f"\n## {method}")
        print("pair | side | prune s | mask stage s | load at end (1/5/15 min)")
        for (side, pair), u in sorted(units.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            print(f"{pair} | {side} | {u['seconds']:.1f} | {u['mask_stage_s']:.1f} | {u['load_end'].split(' on ')[0]}")
        for side in [s for s in sides(method) if s != "peer"]:
            ratios = [units[(side, p)]["seconds"] / units[("peer", p)]["seconds"] for p in range(args.pairs)
                      if (side, p) in units and ("peer", p) in units]
            mratios = [units[(side, p)]["mask_stage_s"] / units[("peer", p)]["mask_stage_s"] for p in range(args.pairs)
                       if (side, p) in units and ("peer", p) in units]
            if ratios:
                print(f"{side} / peer time: " + ", ".join(f"{r:.2f}" for r in ratios) + f" (median {statistics.median(ratios):.2f});"
                      f" mask stage / peer compression: " + ", ".join(f"{r:.2f}" for r in mratios)
                      + f" (median {statistics.median(mratios):.2f})")
        first = {s: units.get((s, 0)) for s in sides(method)}
        if all(u is not None and "window_nll" in u for u in first.values()):
            nll = {s: np.asarray(u["window_nll"]) for s, u in first.items()}
            print("perplexity: " + ", ".join(f"{s} {ppl(v):.3f}" for s, v in nll.items()))
            sizes = first["truthprune"]["mask_sizes"]
            masks = {s: _masks(unit_dir, s, sizes) for s in first}
            for other in [s for s in first if s != "truthprune"]:
                r, lo, hi = ppl_ratio(nll[other], nll["truthprune"])
                print(f"truthprune vs {other}: ppl ratio {r:.4f} [{lo:.4f}, {hi:.4f}] (95 % over {len(nll[other])} windows), "
                      f"zero-mask agreement {100 * mask_agreement(masks[other], masks['truthprune']):.2f} %")


def rounding_check(args) -> None:
    """This output's truthprune units against the same sides in ``--rounding-check DIR``, a run at
    another ``--batch-size``: the statistics are then summed in another order, so the difference is
    what floating-point rounding alone does to the masks and the perplexity (pair 0 of each)."""
    other_root = Path(args.rounding_check)
    print(f"\nrounding check: {args.out} against {other_root} (same sides, pair 0, another summation order)")
    for method in args.methods.split(","):
        here, there = unit_folder(args, method), other_root / method.replace(":", "of")
        for side in [s for s in sides(method) if s != "peer"]:
            a, b = here / f"{side}-0.json", there / f"{side}-0.json"
            if not (a.exists() and b.exists()):
                continue
            ua, ub = json.loads(a.read_text()), json.loads(b.read_text())
            r, lo, hi = ppl_ratio(np.asarray(ua["window_nll"]), np.asarray(ub["window_nll"]))
            agree = mask_agreement(_masks(here, side, ua["mask_sizes"]), _masks(there, side, ub["mask_sizes"]))
            print(f"{method} {side}: ppl {ppl(np.asarray(ua['window_nll'])):.3f} vs {ppl(np.asarray(ub['window_nll'])):.3f}, "
                  f"ratio {r:.4f} [{lo:.4f}, {hi:.4f}], zero-mask agreement {100 * agree:.2f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=8, help="truthprune's batch size")
    ap.add_argument("--peer-batch-size", type=int, default=8)
    ap.add_argument("--ppl-windows", type=int, default=64)
    ap.add_argument("--ppl-seqlen", type=int, default=512)
    ap.add_argument("--valid-text", default=None)
    ap.add_argument("--test-text", default=None)
    ap.add_argument("--out", default="results/peer")
    ap.add_argument("--summary", action="store_true", help="print the summary of the units already run")
    ap.add_argument("--rounding-check", default=None, metavar="DIR",
                    help="with --summary: compare this output's truthprune sides with DIR's (a run at another --batch-size)")
    ap.add_argument("--unit", default=None, help=argparse.SUPPRESS)  # method:side:pair, run by the parent
    args = ap.parse_args()
    unknown = [m for m in args.methods.split(",") if m not in METHODS]
    if unknown:
        sys.exit(f"error: unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if args.unit:
        method, side, pair = args.unit.rsplit(":", 2)
        run_unit(method, side, int(pair), args)
        return
    if not args.summary:
        try:
            import llmcompressor  # noqa: F401
        except ImportError:
            sys.exit("error: llm-compressor is not installed in this Python; see the setup in this script's docstring")
        wikitext_path("valid", args.valid_text), wikitext_path("test", args.test_text)
        passthrough = [a for a in sys.argv[1:] if a != "--summary"]
        for pair in range(args.pairs):
            for method in args.methods.split(","):
                unit_folder(args, method).mkdir(parents=True, exist_ok=True)
                order = sides(method) if pair % 2 == 0 else sides(method)[::-1]
                for side in order:
                    if (unit_folder(args, method) / f"{side}-{pair}.json").exists():
                        continue
                    print(f"pair {pair} {method} {side} ({machine_state()})", flush=True)
                    subprocess.run([sys.executable, __file__, *passthrough, "--unit", f"{method}:{side}:{pair}"], check=True,
                                   env={**os.environ, "TQDM_DISABLE": "1", "LOGURU_LEVEL": "WARNING"})
    summary(args)
    if args.rounding_check:
        rounding_check(args)


if __name__ == "__main__":
    main()
