"""The four unit importances on the tiny GQA Llama, each against an independent computation:
magnitude and wanda-sum exactly, entropy and taylor-ce against central finite differences."""

from __future__ import annotations

import pytest
import torch

from truthprune import structured_layers
from truthprune_structured.importance import signed_first_order, unit_importance


def test_magnitude_is_the_l2_norm_of_each_unit(tiny, calib):
    layers = structured_layers(tiny)
    scores = unit_importance(tiny, calib, layers, "magnitude", heads=True)
    la = layers[1]
    g, u, d = (la.mlp[k].weight for k in ("gate_proj", "up_proj", "down_proj"))
    j = 5
    expect = torch.sqrt(g[j].pow(2).sum() + u[j].pow(2).sum() + d[:, j].pow(2).sum())
    assert scores[1].mlp[j].item() == pytest.approx(expect.item(), rel=1e-6)
    q, k, v, o = (la.attn[n].weight for n in ("q_proj", "k_proj", "v_proj", "o_proj"))
    grp = 1  # KV head 1 <- query heads 2 and 3 (head_dim 8)
    expect = torch.sqrt(q[16:32].pow(2).sum() + k[8:16].pow(2).sum() + v[8:16].pow(2).sum() + o[:, 16:32].pow(2).sum())
    assert scores[1].heads[grp].item() == pytest.approx(expect.item(), rel=1e-6)


def test_wanda_sum_matches_inputs_captured_independently(tiny, calib):
    """Expected: capture the MLP block's input, recompute the down-projection input by hand, and
    sum |W| * ||X|| over the real (unpadded) tokens only."""
    layers = structured_layers(tiny)
    la = layers[2]
    mlp = tiny.model.layers[2].mlp
    seen = []
    h = mlp.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    with torch.no_grad():
        tiny(input_ids=calib.input_ids, attention_mask=calib.attention_mask)
    h.remove()
    x = seen[0][calib.attention_mask.bool()]  # [real tokens, hidden]
    z = mlp.act_fn(x @ mlp.gate_proj.weight.T) * (x @ mlp.up_proj.weight.T)
    nx, nz = x.pow(2).sum(0).sqrt(), z.pow(2).sum(0).sqrt()
    expect = ((mlp.gate_proj.weight.abs() + mlp.up_proj.weight.abs()) * nx).sum(1) + (mlp.down_proj.weight.abs() * nz).sum(0)
    scores = unit_importance(tiny, calib, layers, "wanda-sum", heads=False, batch_size=4)
    assert torch.allclose(scores[2].mlp, expect, rtol=1e-4)
    assert scores[2].heads is None


def _mean_loss(model, calib, loss):
    """Independent reference: the mean over real next-token positions, whole batch at once."""
    with torch.no_grad():
        logits = model(input_ids=calib.input_ids, attention_mask=calib.attention_mask).logits[:, :-1].double()
    m = calib.attention_mask.bool()
    valid = m[:, :-1] & m[:, 1:]
    lp = torch.log_softmax(logits, -1)
    if loss == "entropy":
        per = -(lp.exp() * lp).sum(-1)
    else:
        per = -lp.gather(-1, calib.input_ids[:, 1:, None]).squeeze(-1)
    return per[valid].mean().item()


def _scale_unit(la, kind, idx, factor):
    with torch.no_grad():
        if kind == "mlp":
            la.mlp["gate_proj"].weight[idx] *= factor
            la.mlp["up_proj"].weight[idx] *= factor
            la.mlp["down_proj"].weight[:, idx] *= factor
        else:
            hd, rep = la.head_dim, la.rep
            la.attn["q_proj"].weight[idx * rep * hd:(idx + 1) * rep * hd] *= factor
            la.attn["k_proj"].weight[idx * hd:(idx + 1) * hd] *= factor
            la.attn["v_proj"].weight[idx * hd:(idx + 1) * hd] *= factor
            la.attn["o_proj"].weight[:, idx * rep * hd:(idx + 1) * rep * hd] *= factor


def _float64_rmsnorm(self, h):
    """Llama's RMSNorm computes in float32 even for a float64 model; finite differences of 1e-11
    need every step in float64."""
    return self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))


@pytest.mark.parametrize("loss", ["entropy", "taylor-ce"])
def test_first_order_terms_match_finite_differences(make_model, calib, loss, monkeypatch):
    """sum over a unit of g * w is dL/d(alpha) for the unit's weights scaled by alpha at 1."""
    from transformers.models.llama import modeling_llama

    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, "forward", _float64_rmsnorm)
    model = make_model(dtype=torch.float64)
    layers = structured_layers(model)
    signed = signed_first_order(model, calib, layers, loss, micro_batch=2)
    eps = 1e-4
    for kind, idx in (("mlp", 3), ("mlp", 40), ("heads", 0), ("heads", 1)):
        la = layers[1]
        _scale_unit(la, kind, idx, 1 + eps)
        up = _mean_loss(model, calib, loss)
        _scale_unit(la, kind, idx, (1 - eps) / (1 + eps))
        down = _mean_loss(model, calib, loss)
        _scale_unit(la, kind, idx, 1 / (1 - eps))
        fd = (up - down) / (2 * eps)
        got = float(getattr(signed[1], kind)[idx])
        assert got == pytest.approx(fd, rel=1e-4, abs=1e-10), (kind, idx)


def test_gradient_importance_does_not_depend_on_micro_batch(make_model, calib):
    model = make_model()
    a = unit_importance(model, calib, structured_layers(model), "entropy", heads=True, micro_batch=1)
    model = make_model()
    b = unit_importance(model, calib, structured_layers(model), "entropy", heads=True, micro_batch=6)
    model = make_model()
    c = unit_importance(model, calib, structured_layers(model), "entropy", heads=True, micro_batch=1)
    for i in range(3):
        assert torch.allclose(a[i].mlp, b[i].mlp, rtol=1e-4, atol=1e-9)
        assert torch.allclose(a[i].heads, b[i].heads, rtol=1e-4, atol=1e-9)
        assert torch.equal(a[i].mlp, c[i].mlp)  # same config -> identical numbers


def test_entropy_and_cross_entropy_rank_differently_and_element_bounds_vector(make_model, calib):
    model = make_model()
    layers = structured_layers(model)
    ent = unit_importance(model, calib, layers, "entropy", heads=False)
    ce = unit_importance(model, calib, layers, "taylor-ce", heads=False)
    vec = unit_importance(model, calib, layers, "entropy", heads=False, aggregate="vector")
    assert not torch.allclose(ent[0].mlp, ce[0].mlp)
    assert (ent[0].mlp >= vec[0].mlp - 1e-9).all()  # sum |g w| >= |sum g w|
    assert all(p.grad is None for p in model.parameters())  # no gradient left behind
    assert not any(p.requires_grad is False for p in model.parameters())  # flags restored
