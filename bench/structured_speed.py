"""Generation speed of a structurally pruned model against its dense original, measured in one run.

    flock /tmp/truthprune-heavy.lock python bench/structured_speed.py [--model smollm2-135m]
        [--pruned DIR ...] [--sparsity 0.3 ...] [--prompt-tokens 256] [--new-tokens 64]
        [--repeats 5] [--threads N] [--json out.json]

Both models sit in memory in the same process; every repeat times the dense model and then each
pruned one, back to back, so machine load affects all alike, and the medians are compared:

* **prefill**: one forward pass over a ``--prompt-tokens`` prompt (batch 1, KV cache on), tokens/s;
* **decode**: greedy generation of ``--new-tokens`` tokens one at a time with the KV cache after a
  32-token prompt, tokens/s.

Pruned models come from ``--pruned DIR`` (checkpoints written by ``truthprune prune --pruner
structured``, loaded with plain transformers) and/or ``--sparsity S`` (pruned here with the
structured pruner's ``magnitude`` importance, which needs no calibration; speed depends only on
the widths, not on which units were kept). ``--random-weights`` builds seeded random weights in
the model's shapes instead of reading its checkpoint (for a quick check when the real model
cannot be loaded; dense matmul speed does not depend on the values). Prints the pruned/dense
ratio of each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def _prompt(vocab: int, n: int, seed: int = 0):
    import torch

    return torch.randint(0, vocab, (1, n), generator=torch.Generator().manual_seed(seed))


def prefill_tps(model, ids) -> float:
    import torch

    with torch.inference_mode():
        t0 = time.perf_counter()
        model(input_ids=ids, use_cache=True)
        return ids.shape[1] / (time.perf_counter() - t0)


def decode_tps(model, ids, new_tokens: int) -> float:
    import inspect

    import torch

    kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"  # transformers >= 5.2x
    with torch.inference_mode():
        out = model(input_ids=ids, use_cache=True)
        past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
        t0 = time.perf_counter()
        for _ in range(new_tokens):
            out = model(input_ids=nxt, use_cache=True, **{kw: past})
            past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
        return new_tokens / (time.perf_counter() - t0)


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def load_models(args):
    from transformers import AutoModelForCausalLM

    from truthprune import get_registry, load_model, prune_structured

    if args.random_weights:  # same shapes, seeded random weights: speed depends on shapes only
        import torch
        from transformers import AutoConfig

        from truthprune import resolve_model_path

        config = AutoConfig.from_pretrained(resolve_model_path(args.model)[0])

        def fresh():  # its own config copy: pruning rewrites the config of the model it prunes
            import copy

            torch.manual_seed(0)
            return AutoModelForCausalLM.from_config(copy.deepcopy(config), dtype=torch.float32).eval()

        models = {"dense (random weights)": fresh()}
        for s in args.sparsity:
            m = fresh()
            prune_structured(m, None, get_registry().create("pruner", "structured", {"importance": "magnitude"}), s)
            models[f"structured {s:.0%} (random weights)"] = m
        for m in models.values():
            m.config.use_cache = True
        return models
    dense = load_model(args.model, device="cpu", dtype="float32")
    models = {"dense": dense.model}
    for path in args.pruned:
        models[f"pruned {path}"] = AutoModelForCausalLM.from_pretrained(path, dtype="float32").eval()
    for s in args.sparsity:
        m = load_model(args.model, device="cpu", dtype="float32").model
        prune_structured(m, None, get_registry().create("pruner", "structured", {"importance": "magnitude"}), s)
        models[f"structured {s:.0%} (magnitude)"] = m
    for m in models.values():
        m.config.use_cache = True
    return models


def main(argv=None) -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--pruned", action="append", default=[], help="A structured checkpoint directory (repeatable).")
    ap.add_argument("--sparsity", type=float, action="append", default=[], help="Prune here at this fraction (repeatable).")
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--random-weights", action="store_true",
                    help="Seeded random weights in the model's shapes (no checkpoint is read; speed depends on shapes only).")
    args = ap.parse_args(argv)
    if not args.pruned and not args.sparsity:
        ap.error("give --pruned DIR and/or --sparsity S")
    if args.random_weights and args.pruned:
        ap.error("--random-weights prunes in this process; use --sparsity, not --pruned")
    if args.threads:
        torch.set_num_threads(args.threads)
    models = load_models(args)
    vocab = next(iter(models.values())).config.vocab_size
    long_ids, short_ids = _prompt(vocab, args.prompt_tokens), _prompt(vocab, 32, seed=1)
    for m in models.values():  # warm-up: first calls allocate
        prefill_tps(m, short_ids)
        decode_tps(m, short_ids, 4)
    times: dict[str, dict[str, list[float]]] = {k: {"prefill": [], "decode": []} for k in models}
    for _ in range(args.repeats):
        for name, m in models.items():
            times[name]["prefill"].append(prefill_tps(m, long_ids))
            times[name]["decode"].append(decode_tps(m, short_ids, args.new_tokens))
    med = {k: {p: statistics.median(v) for p, v in d.items()} for k, d in times.items()}
    base = next(iter(med.values()))  # the dense model comes first
    rows = []
    print(f"threads {torch.get_num_threads()}, prompt {args.prompt_tokens} tokens, decode {args.new_tokens} tokens, "
          f"median of {args.repeats} interleaved repeats")
    print(f"{'model':<36} {'params':>12} {'prefill tok/s':>14} {'decode tok/s':>13} {'prefill x':>10} {'decode x':>9}")
    for name, m in models.items():
        r = {"model": name, "params": _params(m), **med[name], "prefill_ratio": med[name]["prefill"] / base["prefill"],
             "decode_ratio": med[name]["decode"] / base["decode"], "samples": times[name]}
        rows.append(r)
        print(f"{name:<36} {r['params']:>12,} {r['prefill']:>14.1f} {r['decode']:>13.1f} {r['prefill_ratio']:>9.2f}x {r['decode_ratio']:>8.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "threads": torch.get_num_threads(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
