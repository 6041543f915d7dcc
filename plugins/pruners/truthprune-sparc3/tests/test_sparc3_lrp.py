"""The LRP rules and relevances on hand-worked and tiny cases: conservation on a linear layer, a
gated MLP and an RMS norm (within float tolerance), unchanged forward values, rules removed on exit."""

from __future__ import annotations

import pytest
import torch

from truthprune.testing import tiny_llama
from truthprune_sparc3.relevance import combine, next_token_logits, next_token_score, weight_relevance
from truthprune_sparc3.rules import lrp_rules


def test_linear_layer_relevance_hand_worked():
    """y = W x with W = [[1, 2], [3, -1]], x = [1, 1]: y = [3, 2]; explaining sum(y) = 5 gives
    R_W = W (each connection's contribution x_j W_ij) and R_x = [1 + 3, 2 - 1] = [4, 1]: both sum to 5."""
    lin = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, -1.0]]))
    x = torch.ones(1, 2, requires_grad=True)
    lin(x).sum().backward()
    assert weight_relevance(lin).tolist() == [[1.0, 2.0], [3.0, -1.0]]
    assert (x * x.grad).tolist() == [[4.0, 1.0]]


def _relevances(mlp, x):
    x.grad = None
    for p in mlp.parameters():
        p.grad = None
    out = mlp(x)
    out.sum().backward()  # explained score: the sum of the outputs (R_out = out)
    return (float(out.detach().sum()), float((x.detach() * x.grad).sum()), float(weight_relevance(mlp.down_proj).sum()),
            float(weight_relevance(mlp.gate_proj).sum() + weight_relevance(mlp.up_proj).sum()))


def test_gated_mlp_conserves_relevance_under_the_rules():
    mlp = tiny_llama().model.layers[0].mlp
    x = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(1), requires_grad=True)
    with lrp_rules(mlp) as n:
        assert n == 1
        total, r_in, r_down, r_gate_up = _relevances(mlp, x)
    scale = abs(total) + float(mlp(x).detach().abs().sum()) * 1e-6
    for r in (r_in, r_down, r_gate_up):
        assert r == pytest.approx(total, abs=1e-4 * scale)
    _, plain_in, _, plain_gate_up = _relevances(mlp, x)  # without the rules: not conservative
    assert abs(plain_in - total) > 0.5 * abs(total) and abs(plain_gate_up - total) > 0.5 * abs(total)


def test_rms_norm_passes_relevance_unchanged():
    norm = tiny_llama().model.layers[0].input_layernorm
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 32))
    x = torch.randn(3, 32, generator=torch.Generator().manual_seed(2), requires_grad=True)
    c = torch.randn(3, 32, generator=torch.Generator().manual_seed(3))
    with lrp_rules(norm):
        y = norm(x)
        (y * c).sum().backward()  # R_y = y * c
    assert float((x.detach() * x.grad).sum()) == pytest.approx(float((y.detach() * c).sum()), rel=1e-5)


def test_rules_keep_forward_values_and_are_removed_on_exit():
    model = tiny_llama()
    ids = torch.randint(3, 128, (2, 12), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        before = model(ids).logits
        with lrp_rules(model) as n:
            during = model(ids).logits
        after = model(ids).logits
    assert n == 3 * (1 + 2) + 1 + 3 * 3  # per layer an MLP and two norms, the final norm; q/k/v hooks
    assert torch.equal(before, during) and torch.equal(before, after)
    assert all("forward" not in vars(m) for m in model.modules())
    assert all(not m._forward_hooks for m in model.modules())


def test_next_token_score_hand_worked():
    """Logits [b=2, S=3, vocab=4] = 0..23; ids row 0 = [0, 1, 2], row 1 = [3, 0, 0] with padding last:
    row 0 explains logit[0,0,1] + logit[0,1,2] = 1 + 6, row 1 logit[1,0,0] = 12 (its last pair is padding)."""
    logits = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    ids = torch.tensor([[0, 1, 2], [3, 0, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    picked = logits[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    assert float(next_token_score(picked, mask)) == 19.0


def test_next_token_logits_equal_the_full_head_output():
    head = torch.nn.Linear(8, 11, bias=True)
    hidden = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(5))
    ids = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(6))
    full = head(hidden)[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(next_token_logits(head, hidden, ids), full, atol=1e-6)


def test_combine_normalises_per_linear_and_keeps_text_where_truth_is_absent():
    text = {0: {"a": torch.tensor([[1.0, 3.0]])}, 1: {"a": torch.tensor([[2.0, 2.0]])}}
    truth = {0: {"a": torch.tensor([[4.0, 0.0]])}, 1: {"a": torch.zeros(1, 2)}}
    out = combine(text, truth, 0.5)
    assert out[0]["a"].tolist() == [[0.5 * 0.5 + 0.5 * 2.0, 0.5 * 1.5 + 0.0]]
    assert out[1]["a"].tolist() == [[1.0, 1.0]]
    assert combine(text, None, 0.5)[0]["a"].tolist() == [[0.5, 1.5]]
