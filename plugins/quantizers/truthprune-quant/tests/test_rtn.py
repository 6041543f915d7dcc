"""RTN and the affine grid on known tensors: hand-worked codes, the scale/2 error bound, masks."""

from __future__ import annotations

import pytest
import torch

from truthprune import dequantize
from truthprune_quant import grid_params, group_index, rtn_quantize


def test_hand_worked_asymmetric_2bit_row():
    # range [-1, 2] -> scale 1, zero 1; codes round(w) + 1
    w = torch.tensor([[-1.0, 0.0, 0.4, 2.0]])
    q = rtn_quantize(w, None, bits=2, group_size=0, symmetric=False)
    assert q.scales.tolist() == [[1.0]] and q.zeros.tolist() == [[1.0]]
    assert q.codes.tolist() == [[0, 1, 1, 3]]
    assert q.deq.tolist() == [[-1.0, 0.0, 0.0, 2.0]]


def test_hand_worked_symmetric_3bit_row():
    # amax 3.5 -> scale 7/7 = 1, zero 4; codes in [0, 7] read back as -4..3
    w = torch.tensor([[-3.5, -1.2, 0.0, 2.6, 3.5]])
    q = rtn_quantize(w, None, bits=3, group_size=0, symmetric=True)
    assert q.scales.item() == pytest.approx(1.0) and q.zeros.item() == 4.0
    assert q.codes.tolist() == [[0, 3, 4, 7, 7]]  # -3.5 -> round(-3.5) = -4 (half to even); 3.5 clipped to 3
    assert q.deq.tolist() == [[-4.0, -1.0, 0.0, 3.0, 3.0]]


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("group_size", [0, 16, 128])
def test_round_trip_error_at_most_half_a_step(bits, symmetric, group_size):
    g = torch.Generator().manual_seed(bits * 10 + group_size)
    w = torch.randn(24, 80, generator=g) * torch.linspace(0.1, 3.0, 24).unsqueeze(1)
    q = rtn_quantize(w, None, bits, group_size, symmetric)
    g_idx = q.g_idx.long()
    step = q.scales[:, g_idx]
    assert torch.all((q.deq - w).abs() <= step / 2 + 4 * torch.finfo(torch.float32).eps * w.abs())  # float32 rounding
    assert int(q.codes.max()) <= 2**bits - 1
    # the core reader gives back exactly the quantizer's weights
    assert torch.equal(dequantize(q.codes, q.scales, q.zeros.to(torch.uint8), q.g_idx), q.deq)
    # groups: consecutive columns, the last one may be shorter (80 = 5 x 16; 128 > 80 -> one group)
    expected_groups = 1 if group_size in (0, 128) else 5
    assert q.scales.shape == (24, expected_groups) and g_idx.tolist() == (torch.arange(80) // (group_size or 80)).tolist()


def test_more_bits_smaller_error():
    w = torch.randn(32, 256, generator=torch.Generator().manual_seed(3))
    errs = [float((rtn_quantize(w, None, b, 128, False).deq - w).norm()) for b in (2, 3, 4, 8)]
    assert errs == sorted(errs, reverse=True) and errs[-1] < errs[0] / 20


def test_masked_weights_read_back_exactly_zero():
    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(4)) + 0.3  # mostly positive: 0 is off-centre
    mask = torch.rand(16, 64, generator=torch.Generator().manual_seed(5)) < 0.5
    w_pruned = w.masked_fill(mask, 0.0)
    for symmetric in (False, True):
        q = rtn_quantize(w_pruned, mask, 3, 16, symmetric)
        assert torch.all(q.deq[mask] == 0)
        zeros_at = q.zeros[:, q.g_idx.long()]
        assert torch.equal(q.codes[mask].float(), zeros_at[mask])


def test_all_zero_group_and_uneven_last_group():
    w = torch.zeros(2, 20)
    w[1, 16:] = torch.tensor([1.0, -2.0, 0.4, 3.0])
    q = rtn_quantize(w, None, 4, 16, False)
    assert q.scales.shape == (2, 2) and torch.all(q.scales > 0)
    assert torch.all(q.deq[0] == 0) and torch.all(q.deq[1, :16] == 0)
    assert (q.deq[1, 16:] - w[1, 16:]).abs().max() <= q.scales[1, 1] / 2


def test_group_index_and_params_edge_cases():
    assert group_index(5, 0).tolist() == [0] * 5 and group_index(5, 2).tolist() == [0, 0, 1, 1, 2]
    scale, zero = grid_params(torch.tensor([[0.5, 1.5]]), bits=4, symmetric=False)  # min clamped to 0 -> zero 0
    assert zero.item() == 0.0 and scale.item() == pytest.approx(1.5 / 15)
