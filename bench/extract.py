"""Activation-extraction throughput on SmolLM2-135M: batched vs batch size 1, in one run.

    flock /tmp/truthprune-heavy.lock python bench/extract.py [--n 256] [--batch-size 32]

Uses the first ``--n`` generated city statements (offline), all decoder layers, no cache.
Prints statements/s for both settings, the speed-up, and the max relative difference
between the two results (batching must not change the activations).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=256, help="statements to extract")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    import torch

    import truthprune
    from truthprune import generate_statement_sets

    statements = generate_statement_sets(seed=0, topics=["cities"])[0].statements[: args.n]
    loaded = truthprune.load_model(args.model, device=args.device)
    model, tok = loaded.model, loaded.tokenizer
    truthprune.extract_last_token(model, tok, statements[:8], batch_size=8)  # warm-up
    results = {}
    for bs in (1, args.batch_size):
        t0 = time.perf_counter()
        acts = truthprune.extract_last_token(model, tok, statements, batch_size=bs)
        dt = time.perf_counter() - t0
        results[bs] = (acts, len(statements) / dt)
    (a1, r1), (ab, rb) = results[1], results[args.batch_size]
    rel = float(np.max(np.abs(ab - a1).max(axis=-1) / np.abs(a1).max(axis=-1)))
    print(f"model {args.model} on {loaded.device} ({torch.get_num_threads()} threads), {len(statements)} statements, "
          f"{a1.shape[0]} layers x d={a1.shape[2]}")
    print(f"batch size 1:  {r1:8.1f} statements/s")
    print(f"batch size {args.batch_size}: {rb:8.1f} statements/s")
    print(f"speed-up: {rb / r1:.2f}x   max relative difference: {rel:.2e}")


if __name__ == "__main__":
    main()
