"""float64 vs float32 for the OBS maths on SmolLM2-135M's linear shapes (random weights, inputs
with correlated columns): time per decoder layer, how far the result is from a float64 run on
float64 inputs, and whether it changes with the number of BLAS threads.
Prints ratios and differences measured in this one run; no assertion (speed is not a test).

    python plugins/pruners/truthprune-sparsegpt/bench/precision.py
"""

from __future__ import annotations

import time

import torch

from truthprune import SparsityTarget
from truthprune_sparsegpt import obs_prune

SHAPES = {"q": (576, 576), "k": (192, 576), "v": (192, 576), "o": (576, 576),
          "gate": (1536, 576), "up": (1536, 576), "down": (576, 1536)}


def _layer(rows: int, cols: int, g: torch.Generator):
    x = torch.randn(4096, cols, generator=g) @ (torch.eye(cols) + 0.1 * torch.randn(cols, cols, generator=g))
    return torch.randn(rows, cols, generator=g) * 0.02, 2 * x.T @ x / x.shape[0]


def main() -> None:
    g = torch.Generator().manual_seed(0)
    layers = {name: _layer(*shape, g) for name, shape in SHAPES.items()}
    seconds = {}
    for dtype in (torch.float64, torch.float32):
        t = time.perf_counter()
        for w, h in layers.values():
            obs_prune(w, h, SparsityTarget(0.5), compute_dtype=dtype)
        seconds[dtype] = time.perf_counter() - t
    print(f"one decoder layer (7 linears, {torch.get_num_threads()} threads): float64 {seconds[torch.float64]:.2f} s, "
          f"float32 {seconds[torch.float32]:.2f} s, ratio {seconds[torch.float64] / seconds[torch.float32]:.2f}")
    threads = torch.get_num_threads()
    w, h = layers["down"]
    for n in (1, threads):
        torch.set_num_threads(n)
        t = time.perf_counter()
        obs_prune(w, h, SparsityTarget(0.5))
        print(f"down {tuple(w.shape)} float64 on {n} thread(s): {time.perf_counter() - t:.2f} s")
    torch.set_num_threads(threads)
    for name in ("q", "down"):
        w, h = layers[name]
        ref_w, ref_mask = obs_prune(w.double(), h.double(), SparsityTarget(0.5))
        for dtype in (torch.float64, torch.float32):
            results = []
            for n in (1, threads):  # the BLAS thread count changes float reduction order
                torch.set_num_threads(n)
                results.append(obs_prune(w, h, SparsityTarget(0.5), compute_dtype=dtype))
            torch.set_num_threads(threads)
            (w1, m1), (wn, mn) = results
            rel = ((wn.double() - ref_w).norm() / ref_w.norm()).item()
            print(f"{name} {tuple(w.shape)} {str(dtype)[6:]}: weights vs float64 input rel. diff {rel:.1e}; "
                  f"1 vs {threads} threads: {int((m1 != mn).sum())} of {mn.numel()} mask entries differ, "
                  f"weights rel. diff {((w1.double() - wn.double()).norm() / ref_w.norm()).item():.1e}")

if __name__ == "__main__":
    main()
