"""Statement-extraction throughput against the model's dense forward, in one run.

    python bench/extract.py [--model smollm2-135m] [--n 1600] [--repeats 3] [--json out.json]

Both sides run on the same loaded model, interleaved (dense, extraction, dense, extraction, ...),
so a busy machine slows both alike; the load average is printed with the numbers.

* dense forward: the full model (logits included) over random-token windows of ``--seqlen``
  tokens in batches of ``--batch-size``, as the engine's calibration passes run it;
* extraction: ``truthprune.extract_last_token`` of ``--n`` generated statements (all topics,
  mixed lengths), all decoder layers, no cache, default batching (``--token-budget``).

It prints tokens/s of both and their ratio per pair and as the median over pairs, then two
exactness checks: the largest relative difference of the batched result from batch size 1 (one
statement per forward, no padding), and the same for the previous default batching (at most 32
statements per forward) with its own tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np


def rel_diff(a: np.ndarray, ref: np.ndarray) -> float:
    """Largest per-vector max-abs difference, relative to the reference vector's max-abs."""
    return float(np.max(np.abs(a - ref).max(axis=-1) / np.abs(ref).max(axis=-1)))


def mixed_statements(n: int) -> list[str]:
    import truthprune

    sets = truthprune.generate_statement_sets(seed=0)
    pool = [s for st in sets for s in st.statements]
    rng = np.random.default_rng(0)
    return [pool[i] for i in rng.permutation(len(pool))[:n]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=1600, help="statements to extract")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved (dense, extraction) pairs")
    ap.add_argument("--dense-windows", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=8, help="windows per dense forward")
    ap.add_argument("--token-budget", type=int, default=None, help="padded tokens per extraction forward (default: the library's)")
    ap.add_argument("--check", type=int, default=96, help="statements for the exactness checks")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    import truthprune

    budget = args.token_budget or truthprune.DEFAULT_TOKEN_BUDGET
    loaded = truthprune.load_model(args.model, device="cpu", dtype="float32")
    model, tok = loaded.model, loaded.tokenizer
    statements = mixed_statements(args.n)
    n_tokens = sum(len(ids) for ids in truthprune.encode_statements(tok, statements))
    g = torch.Generator().manual_seed(0)
    windows = torch.randint(0, len(tok), (args.dense_windows, args.seqlen), generator=g)

    def dense() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for s in range(0, len(windows), args.batch_size):
                w = windows[s : s + args.batch_size]
                model(input_ids=w, attention_mask=torch.ones_like(w), use_cache=False)
        return windows.numel() / (time.perf_counter() - t0)

    def extract(**kw) -> tuple[float, np.ndarray]:
        t0 = time.perf_counter()
        acts = truthprune.extract_last_token(model, tok, statements, **kw)
        return n_tokens / (time.perf_counter() - t0), acts

    extract(token_budget=budget)  # warm-up (tokenizer, allocator)
    dense()
    pairs = []
    for r in range(args.repeats):
        d = dense()
        e, acts = extract(token_budget=budget)
        pairs.append({"dense_tok_s": d, "extract_tok_s": e, "ratio": e / d, "load": os.getloadavg(),
                      "threads": torch.get_num_threads()})
        print(f"pair {r + 1}: dense {d:7.1f} tok/s   extraction {e:7.1f} tok/s   ratio {e / d:.2f}   "
              f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {torch.get_num_threads()} threads", flush=True)
    med = statistics.median(p["ratio"] for p in pairs)

    sub = statements[: args.check]
    ref = truthprune.extract_last_token(model, tok, sub, token_budget=1)
    batched = truthprune.extract_last_token(model, tok, sub, token_budget=budget)
    old_rate, old_acts = extract(batch_size=32, token_budget=10**9)
    d_after = dense()
    result = {
        "model": args.model, "threads": torch.get_num_threads(), "statements": len(statements), "tokens": n_tokens,
        "layers": int(acts.shape[0]), "token_budget": budget, "pairs": pairs, "median_ratio": med,
        "rel_diff_vs_batch1": rel_diff(batched, ref[:, : len(sub)]),
        "rel_diff_vs_32_per_forward": rel_diff(acts, old_acts),
        "per_32_tok_s": old_rate, "per_32_ratio": old_rate / d_after,
    }
    print(f"model {args.model} ({torch.get_num_threads()} threads): {len(statements)} statements, {n_tokens} tokens "
          f"({n_tokens / len(statements):.1f} per statement), {acts.shape[0]} layers, token budget {budget}")
    print(f"extraction / dense forward tokens/s: median {med:.2f} over {len(pairs)} pairs")
    print(f"at most 32 statements per forward: {old_rate:.1f} tok/s, {old_rate / d_after:.2f}x the dense forward "
          "(next to a dense pass run right after it)")
    print(f"max relative difference: batched vs batch size 1 {result['rel_diff_vs_batch1']:.2e}, "
          f"vs 32 per forward {result['rel_diff_vs_32_per_forward']:.2e}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
