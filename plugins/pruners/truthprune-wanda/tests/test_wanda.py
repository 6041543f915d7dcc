"""Wanda on hand-made tensors: unstructured, 2:4 and the alpha variant."""

import torch

from truthprune import LinearStats, SparsityTarget, get_registry
from truthprune_wanda.variant import variant_mask, variant_mask_for_alpha


def _wanda(**opts):
    return get_registry().create("pruner", "wanda", opts)


def test_registered_with_distribution():
    entry = get_registry().entry("pruner", "wanda")
    assert entry.distribution == "truthprune-wanda"


def test_unstructured_uses_activation_norms():
    # |W| alone would prune column 0 in both rows; the activation norms flip that.
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    stats = LinearStats(n_tokens=10, sq_norm=torch.tensor([100.0, 1.0, 1.0, 1.0]))
    mask = _wanda().prune(w, stats, SparsityTarget(0.5)).mask
    # scores per row: 10, 2, 3, 4 -> prune columns 1 and 2
    assert mask.tolist() == [[False, True, True, False]] * 2


def test_two_four_pattern():
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0, 4.0, 3.0, 2.0, 1.0]])
    stats = LinearStats(n_tokens=1, sq_norm=torch.ones(8))
    mask = _wanda().prune(w, stats, SparsityTarget(0.5, (2, 4))).mask
    assert mask.tolist() == [[True, True, False, False, False, False, True, True]]


def test_variant_hand_worked_alpha():
    scores = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # row sum 10, cumsum 1, 3, 6, 10
    assert variant_mask_for_alpha(scores, 0.3).tolist() == [[True, True, False, False]]
    assert variant_mask_for_alpha(scores, 0.05).tolist() == [[False, False, False, False]]


def test_variant_reaches_target_fraction():
    torch.manual_seed(0)
    scores = torch.rand(64, 256)
    mask = variant_mask(scores, 0.5)
    assert abs(mask.float().mean().item() - 0.5) <= 0.001 + 1e-9
    # rows get different counts (per-row thresholds)
    assert mask.sum(1).unique().numel() > 1


def test_variant_option_through_plugin():
    torch.manual_seed(0)
    w = torch.randn(32, 64)
    stats = LinearStats(n_tokens=5, sq_norm=torch.rand(64) + 0.1)
    mask = _wanda(variant=True).prune(w, stats, SparsityTarget(0.4)).mask
    assert abs(mask.float().mean().item() - 0.4) <= 0.0011
