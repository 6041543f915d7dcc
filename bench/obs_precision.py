"""Which parts of SparseGPT's OBS maths need float64 for the masks to stay the same (SmolLM2-135M).

    python bench/obs_precision.py [--nsamples 8] [--seqlen 256] [--nm 2:4] [--ppl-windows 64] [--json out.json]

Calibration as in tests/test_mask_fingerprint.py: WikiText-2 validation text, 8 windows of 256
tokens, seed 0, float32 on the CPU; sparsity 0.5 (or --nm). Every variant prunes the same dense
model from the same calibration windows:

  reference      float64, the arithmetic before the speed-ups (bench/obs_reference.py: explicit
                 inverse, sort, full-width column sweep, one factorisation per linear)
  float64        the shipped default: reversed Cholesky + triangular solve, selection, sub-block
                 sweeps in the transposed layout, one factorisation per distinct H
  lazy-float32   as float64, but the lazy-batch products (both levels) in float32
  sweep-float32  factorisation in float64; sweep and lazy-batch products in float32
  float32        everything in float32 (``--pruner-opt dtype=float32``)

For each it prints the time of the mask stage (the OBS work), the zero-mask agreement with the
reference, how many linears have exactly the reference's mask, and the perplexity on
``--ppl-windows`` WikiText-2 test windows with the paired ratio to the reference (95 % interval
over windows; the calibration draw is fixed, so it is not in the interval).
"""

from __future__ import annotations

import argparse
import json
import time

from pairing import (eval_windows, identical_linears, machine_state, mask_agreement, ppl, ppl_ratio, wikitext_path,
                     window_nlls, zero_masks)

_SHIPPED: dict = {}  # the plugin's own lazy_update, restored between variants
VARIANTS = ("reference", "float64", "lazy-float32", "sweep-float32", "float32")


def _float32_lazy_update(wt_rest, err_t, u_rows) -> None:
    wt_rest -= (u_rows.t().float() @ err_t.float()).to(wt_rest.dtype)


def make_pruner(variant: str):
    """The sparsegpt pruner with ``variant``'s precision (patching the plugin's public steps)."""
    import torch

    import obs_reference
    import truthprune
    import truthprune_sparsegpt.obs as obs
    from truthprune import PruneResult
    from truthprune_sparsegpt import hessian_from_gram

    _SHIPPED.setdefault("lazy_update", obs.lazy_update)
    obs.lazy_update = _float32_lazy_update if variant == "lazy-float32" else _SHIPPED["lazy_update"]
    dtype = "float32" if variant in ("sweep-float32", "float32") else "float64"
    pruner = truthprune.get_registry().create("pruner", "sparsegpt", {"dtype": dtype})
    cfg = pruner.config
    if variant == "reference":
        def reference_prune(weight, stats, target):
            new_weight, mask = obs_reference.obs_prune(weight, pruner.hessian(stats), target, cfg.blocksize, cfg.percdamp)
            return PruneResult(mask=mask, weight=new_weight)

        pruner.prune = reference_prune
    if variant == "sweep-float32":
        pruner.hessian = lambda stats: hessian_from_gram(stats.gram, stats.n_tokens, torch.float64)
        pruner.factor = lambda h: obs.obs_factor(h, cfg.percdamp, torch.float64).float()
    return pruner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--nsamples", type=int, default=8)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--nm", default=None, help="N:M pattern, e.g. 2:4 (default: unstructured 50 %%)")
    ap.add_argument("--ppl-windows", type=int, default=64)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--valid-text", default=None)
    ap.add_argument("--test-text", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import truthprune

    nm = tuple(int(x) for x in args.nm.split(":")) if args.nm else None
    loaded = truthprune.load_model(args.model, device="cpu", dtype="float32")
    model, tok = loaded.model, loaded.tokenizer
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    registry = truthprune.get_registry()
    calib = registry.create("calibration", "wikitext2", {"path": wikitext_path("valid", args.valid_text)}).samples(
        tok, args.nsamples, args.seqlen, 0)
    windows = eval_windows(tok, wikitext_path("test", args.test_text), args.ppl_windows, 512)
    print(f"{args.model}, {args.nsamples} x {args.seqlen} calibration tokens, {'N:M ' + args.nm if nm else '50 %'}, "
          f"ppl on {len(windows)} x 512 test tokens; {machine_state()}", flush=True)
    rows, ref = [], None
    for variant in args.variants.split(","):
        model.load_state_dict(dense)
        pruner = make_pruner(variant)
        t0 = time.perf_counter()
        report = truthprune.prune_model(model, calib, pruner, registry.create("allocator", "uniform"), 0.5, nm=nm,
                                        batch_size=8, quiet=True)
        total = time.perf_counter() - t0
        masks, nll = zero_masks(model), window_nlls(model, windows)
        if ref is None:
            ref = {"masks": masks, "nll": nll, "masks_s": report.phase_s["masks"]}
        r, lo, hi = ppl_ratio(ref["nll"], nll)
        row = {"variant": variant, "masks_s": report.phase_s["masks"], "prune_s": total,
               "agreement": mask_agreement(ref["masks"], masks), "identical": identical_linears(ref["masks"], masks),
               "linears": len(masks), "ppl": ppl(nll), "ratio": r, "ratio_lo": lo, "ratio_hi": hi}
        rows.append(row)
        print(f"{variant:14s} masks {row['masks_s']:6.1f} s ({row['masks_s'] / ref['masks_s']:.2f}x ref)  "
              f"agreement {100 * row['agreement']:.4f} %  identical linears {row['identical']}/{row['linears']}  "
              f"ppl {row['ppl']:.3f}  ratio {r:.4f} [{lo:.4f}, {hi:.4f}]  ({machine_state()})", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
