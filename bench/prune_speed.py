"""Pruning speed: the engine against one dense forward pass and a batch-size-1 reference loop.

    flock /tmp/truthprune-heavy.lock python bench/prune_speed.py [--repeats 3] [--nsamples 64]
        [--seqlen 512] [--batch-size 8] [--text ../shared/data/wikitext-2/valid.txt] [--json out.json]

In one process and on one loaded model (restored to its dense weights before every prune) it
times (a) one dense forward pass of all calibration samples through the full model (batched,
same batch size, logits included), (b) a Wanda prune through ``prune_model``, (c) an OWL prune
(allocator ``owl``), (d) a faithful batch-size-1 loop in the reference style (section 4.1/4.2
of the reference: capture per sample, per layer a statistics pass that also stores outputs,
running-mean statistics, masks, a propagation pass, all one sample at a time). It prints
prune/dense ratios for Wanda and OWL, the speed-up of the engine's Wanda over the reference loop
and how many of the reference loop's mask entries the engine reproduces. With ``--repeats N``
every timing is repeated and the medians are printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def calibration(tokenizer, args):
    import torch

    from truthprune import CalibrationSamples, record_windows

    if args.text:
        lines = [ln for ln in open(args.text, encoding="utf-8").read().split("\n") if ln.strip()]
        return record_windows(lines, tokenizer, args.nsamples, args.seqlen, seed=0, name="text")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, len(tokenizer), (args.nsamples, args.seqlen), generator=g)
    return CalibrationSamples(ids, torch.ones_like(ids), f"{args.nsamples} random windows of {args.seqlen} tokens")


def dense_forward(model, calib, batch_size: int) -> float:
    import torch

    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(calib), batch_size):
            model(input_ids=calib.input_ids[s : s + batch_size], attention_mask=calib.attention_mask[s : s + batch_size])
    return time.perf_counter() - t0


def reference_wanda(model, calib, sparsity: float) -> None:
    """Reference-style Wanda (batch size 1 everywhere), pruning ``model`` in place."""
    import torch

    from truthprune import decoder_layers, prunable_linears

    layers = decoder_layers(model)
    n = len(calib)
    captured: dict = {}

    class Caught(Exception):
        pass

    def interceptor(module, args, kwargs):
        captured["inp"].append(args[0] if args else kwargs["hidden_states"])
        captured["kwargs"] = {k: v for k, v in kwargs.items() if k not in ("hidden_states", "past_key_values")}
        raise Caught

    captured["inp"] = []
    handle = layers[0].register_forward_pre_hook(interceptor, with_kwargs=True)
    with torch.no_grad():
        for i in range(n):
            try:
                model(input_ids=calib.input_ids[i : i + 1], attention_mask=calib.attention_mask[i : i + 1], use_cache=False)
            except Caught:
                pass
    handle.remove()
    inps = torch.cat(captured["inp"])  # [N, S, d]
    outs = torch.zeros_like(inps)
    kwargs = captured["kwargs"]  # the last sample's mask/positions serve every sample (4.1 step 3)
    with torch.no_grad():
        for layer in layers:
            linears = prunable_linears(layer)
            scaler = {name: torch.zeros(lin.in_features) for name, lin in linears.items()}
            seen = {name: 0 for name in linears}

            def add_batch(name):
                def hook(module, inp, out):
                    x = inp[0].reshape(-1, inp[0].shape[-1]).float()  # [S, in] for batch size 1
                    scaler[name] *= seen[name] / (seen[name] + 1)
                    seen[name] += 1
                    scaler[name] += torch.norm(x, p=2, dim=0) ** 2 / seen[name]

                return hook

            handles = [lin.register_forward_hook(add_batch(name)) for name, lin in linears.items()]
            for j in range(n):
                outs[j] = layer(inps[j : j + 1], **kwargs)[0]
            for h in handles:
                h.remove()
            for name, lin in linears.items():
                metric = lin.weight.data.abs() * torch.sqrt(scaler[name].reshape(1, -1))
                k = int(lin.in_features * sparsity)
                idx = torch.sort(metric, dim=-1, stable=True)[1][:, :k]
                mask = torch.zeros_like(metric, dtype=torch.bool).scatter_(1, idx, True)
                lin.weight.data[mask] = 0
            for j in range(n):
                outs[j] = layer(inps[j : j + 1], **kwargs)[0]
            inps, outs = outs, inps


def masks(model):
    from truthprune import decoder_layers, prunable_linears

    return [lin.weight.detach() == 0 for layer in decoder_layers(model) for lin in prunable_linears(layer).values()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--nsamples", type=int, default=64)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--text", default=None, help="plain-text file for real calibration text (default: seeded random tokens)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--skip-reference", action="store_true", help="do not run the slow batch-1 reference loop")
    ap.add_argument("--json", default=None, help="also write all timings to this file")
    args = ap.parse_args()

    import torch

    import truthprune

    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = truthprune.load_model(args.model, device="cpu")
    model = loaded.model
    calib = calibration(loaded.tokenizer, args)
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    reg = truthprune.get_registry()

    def restore():
        model.load_state_dict(dense)

    runs: dict[str, list[float]] = {"dense_forward": [], "wanda": [], "owl": [], "reference_wanda": []}
    agreement = None
    for rep in range(args.repeats):
        runs["dense_forward"].append(dense_forward(model, calib, args.batch_size))
        for key, allocator in (("wanda", "uniform"), ("owl", "owl")):
            restore()
            t0 = time.perf_counter()
            truthprune.prune_model(model, calib, reg.create("pruner", "wanda"), reg.create("allocator", allocator),
                                   args.sparsity, batch_size=args.batch_size, quiet=True)
            runs[key].append(time.perf_counter() - t0)
            if key == "wanda":
                engine_masks = masks(model)
        if not args.skip_reference:
            restore()
            t0 = time.perf_counter()
            reference_wanda(model, calib, args.sparsity)
            runs["reference_wanda"].append(time.perf_counter() - t0)
            ref = masks(model)
            same = sum(int((a == b).sum()) for a, b in zip(engine_masks, ref))
            agreement = same / sum(m.numel() for m in ref)
        print(f"run {rep + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in runs.items() if v), flush=True)
    restore()

    med = {k: statistics.median(v) for k, v in runs.items() if v}
    print(f"\n{args.model} on cpu, {torch.get_num_threads()} threads, {calib.description}, batch size {args.batch_size}, "
          f"sparsity {args.sparsity}, medians of {args.repeats} run(s)")
    for k, v in med.items():
        print(f"  {k:16s} {v:8.1f} s")
    result = {"config": vars(args), "threads": torch.get_num_threads(), "runs": runs, "median": med,
              "wanda_over_dense": med["wanda"] / med["dense_forward"], "owl_over_dense": med["owl"] / med["dense_forward"]}
    print(f"Wanda / dense forward: {result['wanda_over_dense']:.2f}x   (target <= 2.5)")
    print(f"OWL   / dense forward: {result['owl_over_dense']:.2f}x   (target <= 3.5)")
    if "reference_wanda" in med:
        result["speedup_vs_reference"] = med["reference_wanda"] / med["wanda"]
        result["mask_agreement"] = agreement
        print(f"speed-up over the batch-1 reference loop: {result['speedup_vs_reference']:.2f}x   (target >= 3)")
        print(f"mask entries equal to the reference loop's: {100 * agreement:.4f}%")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
