"""RIA through the shared engine: N:M masks in the stored order with the MLP permutation, the
permutation is a pure reordering, composition with OWL/TPLO, offload equals in memory."""

from __future__ import annotations

import copy

import pytest
import torch

from truthprune import UserError, get_registry, prune_checkpoint, prune_model
from truthprune_ria import RIAPruner


def _prune(model, calib, pruner, allocator="uniform", sparsity=0.5, batch_size=4, **kw):
    reg = get_registry()
    return prune_model(model, calib, pruner, reg.create("allocator", allocator), sparsity, batch_size=batch_size, quiet=True, **kw)


def _linears(model):
    return {n: p.detach() for n, p in model.named_parameters() if p.dim() == 2 and ".layers." in n}


def test_registered_and_options_validated():
    reg = get_registry()
    assert reg.get("pruner", "ria") is RIAPruner
    assert reg.entry("pruner", "ria").distribution == "truthprune-ria"
    with pytest.raises(UserError, match="'a'"):
        reg.create("pruner", "ria", {"a": -1})
    assert reg.create("pruner", "ria").uses_block and not reg.create("pruner", "ria", {"permute": False}).uses_block


def test_unstructured_masks_do_not_depend_on_the_permute_option(tiny_llama, tiny_calibration):
    ref = copy.deepcopy(tiny_llama)
    _prune(ref, tiny_calibration, RIAPruner({"permute": False}), sparsity=0.6)
    _prune(tiny_llama, tiny_calibration, RIAPruner(), sparsity=0.6)
    a, b = _linears(ref), _linears(tiny_llama)
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_nm_masks_hold_in_the_stored_order_and_the_permutation_keeps_more_score(tiny_llama, tiny_calibration):
    pruner = RIAPruner()
    report = _prune(tiny_llama, tiny_calibration, pruner, nm=(2, 4))
    assert report.overall == pytest.approx(0.5)
    for name, w in _linears(tiny_llama).items():
        assert ((w == 0).reshape(w.shape[0], -1, 4).sum(-1) == 2).all(), name
    assert set(pruner.permuted) == {0, 1, 2}
    assert all(v["after"] >= v["before"] for v in pruner.permuted.values())
    assert any(v["after"] > v["before"] for v in pruner.permuted.values())


def test_the_permutation_only_reorders_the_mlp_channels(tiny_llama, tiny_calibration):
    """Layer 0 (same inputs in both runs): gate/up rows and down columns are the unpermuted run's,
    reordered by one permutation; the kept down weights are the dense ones."""
    dense = copy.deepcopy(tiny_llama)
    plain = copy.deepcopy(tiny_llama)
    _prune(plain, tiny_calibration, RIAPruner({"permute": False}), nm=(2, 4))
    _prune(tiny_llama, tiny_calibration, RIAPruner(), nm=(2, 4))
    p0, p1, d = (m.model.layers[0].mlp for m in (plain, tiny_llama, dense))
    rows = {tuple(r.tolist()): i for i, r in enumerate(p0.gate_proj.weight)}
    perm = torch.tensor([rows[tuple(r.tolist())] for r in p1.gate_proj.weight])
    assert sorted(perm.tolist()) == list(range(perm.numel())) and not torch.equal(perm, torch.arange(perm.numel()))
    assert torch.equal(p1.gate_proj.weight, p0.gate_proj.weight[perm])
    assert torch.equal(p1.up_proj.weight, p0.up_proj.weight[perm])
    kept = p1.down_proj.weight != 0
    assert torch.equal(p1.down_proj.weight[kept], d.down_proj.weight[:, perm][kept])
    # with nothing pruned the reordered MLP computes exactly what the dense one does
    x = torch.randn(5, d.gate_proj.in_features)
    reordered = copy.deepcopy(d)
    for lin in (reordered.gate_proj, reordered.up_proj):
        lin.weight.data = lin.weight.data[perm]
    reordered.down_proj.weight.data = reordered.down_proj.weight.data[:, perm]
    torch.testing.assert_close(reordered(x), d(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("allocator", ["owl", "tplo"])
def test_composes_with_owl_and_tplo(tiny_llama, tiny_calibration, allocator):
    pytest.importorskip(f"truthprune_{allocator}")
    report = _prune(tiny_llama, tiny_calibration, RIAPruner(), allocator=allocator, truth_profile=[0.2, 0.5, 0.3])
    assert max(report.allocation) - min(report.allocation) > 0.01
    assert [r.achieved for r in report.layers] == pytest.approx(report.allocation, abs=1 / 32 + 1e-9)


@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_offload_equals_in_memory(tiny_llama, tiny_calibration, tmp_path, nm):
    from transformers import AutoModelForCausalLM

    tiny_llama.save_pretrained(tmp_path / "src")
    ref = copy.deepcopy(tiny_llama)
    _prune(ref, tiny_calibration, RIAPruner(), nm=nm, batch_size=3)
    prune_checkpoint(str(tmp_path / "src"), tmp_path / "out", tiny_calibration, RIAPruner(),
                     get_registry().create("allocator", "uniform"), 0.5, nm=nm, batch_size=3, quiet=True)
    got = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    want = dict(ref.named_parameters())
    for n, p in got.named_parameters():
        torch.testing.assert_close(p, want[n], rtol=1e-5, atol=1e-6)
