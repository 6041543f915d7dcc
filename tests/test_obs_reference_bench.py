"""bench/obs_reference.py is the float64 arithmetic that bench/obs_precision.py and
bench/peer_llmcompressor.py hold the shipped SparseGPT to. A refactor of the plugin once broke its
import and the peer bench died on its first SparseGPT unit; this runs it on small layers, so the
reference must both import and keep agreeing with the shipped OBS (same masks, same weights up to
rounding) for the benches' comparisons to mean anything."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from truthprune import SparsityTarget  # noqa: E402

import obs_reference  # noqa: E402  (needs truthprune-sparsegpt, which make setup installs)
from truthprune_sparsegpt import obs_prune  # noqa: E402


def _layer(rows: int, cols: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g)
    x = torch.randn(4 * cols, cols, generator=g, dtype=torch.float64)
    return w, 2 * x.T @ x / x.shape[0]


@pytest.mark.parametrize("target", [SparsityTarget(0.5), SparsityTarget(0.7), SparsityTarget(0.5, nm=(2, 4))],
                         ids=["50%", "70%", "2:4"])
def test_reference_and_shipped_obs_agree(target):
    w, h = _layer(24, 96, seed=3)
    ref_w, ref_mask = obs_reference.obs_prune(w.clone(), h, target, blocksize=32)
    new_w, new_mask = obs_prune(w.clone(), h, target, blocksize=32)
    assert torch.equal(ref_mask, new_mask)
    assert ref_mask.sum().item() == new_mask.sum().item() > 0
    assert torch.allclose(ref_w.double(), new_w.double(), rtol=1e-5, atol=1e-5)
    assert bool((new_w[new_mask] == 0).all())


def test_precision_bench_builds_every_variant():
    import obs_precision

    try:
        for variant in obs_precision.VARIANTS:
            pruner = obs_precision.make_pruner(variant)
            assert callable(pruner.prune)
    finally:
        obs_precision.make_pruner("float64")  # restores the plugin's own lazy update, even after a failure
