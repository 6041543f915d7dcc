"""Hand-worked examples for the shared mask maths (reference section 5)."""

import pytest
import torch

from truthprune import SparsityTarget, UserError, mask_from_scores, nm_mask, unstructured_mask, wanda_scores
from truthprune.pruning.masks import prune_count


def test_unstructured_prunes_lowest_per_row_with_stable_ties():
    scores = torch.tensor([[4.0, 1.0, 3.0, 2.0], [1.0, 1.0, 1.0, 0.5]])
    mask = unstructured_mask(scores, 0.5)
    assert mask.tolist() == [[False, True, False, True], [True, False, False, True]]


def test_unstructured_exact_count_per_row():
    torch.manual_seed(0)
    scores = torch.rand(7, 100)
    for s in (0.0, 0.1, 0.29, 0.5, 0.73):
        mask = unstructured_mask(scores, s)
        assert (mask.sum(1) == prune_count(100, s)).all()
    assert prune_count(100, 0.29) == 29  # 0.29 * 100 = 28.999999999999996 in binary floating point


def test_nm_blocks_exact():
    scores = torch.tensor([[1.0, 4.0, 2.0, 3.0, 8.0, 5.0, 7.0, 6.0]])
    assert nm_mask(scores, 2, 4).tolist() == [[True, False, True, False, False, True, False, True]]
    torch.manual_seed(0)
    m = nm_mask(torch.rand(5, 16), 2, 4)
    assert (m.reshape(5, 4, 4).sum(-1) == 2).all()


def test_nm_rejects_bad_patterns():
    with pytest.raises(UserError):
        nm_mask(torch.rand(2, 8), 4, 4)
    with pytest.raises(UserError):
        nm_mask(torch.rand(2, 6), 2, 4)


def test_wanda_scores_hand_worked():
    w = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    sq = torch.tensor([4.0, 1.0])  # column norms 2 and 1
    assert wanda_scores(w, sq).tolist() == [[2.0, 2.0], [6.0, 0.5]]


def test_mask_from_scores_dispatch_and_validation():
    scores = torch.arange(8.0).reshape(1, 8)
    assert mask_from_scores(scores, SparsityTarget(0.25)).sum() == 2
    assert mask_from_scores(scores, SparsityTarget(0.5, (1, 4))).sum() == 2
    with pytest.raises(UserError):
        SparsityTarget(1.0)


def test_row_chunking_gives_the_same_masks_as_one_sort():
    from truthprune.pruning.masks import nm_mask, unstructured_mask

    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (1300, 16), generator=g).float()  # many ties, > 2 row chunks
    order = torch.sort(scores, dim=1, stable=True).indices[:, :6]
    expected = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, order, True)
    assert torch.equal(unstructured_mask(scores, 6 / 16), expected)
    blocks = scores.reshape(1300, 4, 4)
    order = torch.sort(blocks, dim=2, stable=True).indices[:, :, :2]
    expected_nm = torch.zeros_like(blocks, dtype=torch.bool).scatter_(2, order, True).reshape(1300, 16)
    assert torch.equal(nm_mask(scores, 2, 4), expected_nm)
