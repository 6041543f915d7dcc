"""The fw pruner through the shared engine: Wanda equivalence at 0 iterations, composition, offload."""

from __future__ import annotations

import copy

import pytest
import torch

from truthprune import UserError, get_registry, prune_checkpoint, prune_model
from truthprune_fw import FWPruner


def _prune(model, calib, pruner, allocator="uniform", sparsity=0.5, batch_size=4, **kw):
    reg = get_registry()
    if isinstance(pruner, str):
        pruner = reg.create("pruner", pruner)
    return prune_model(model, calib, pruner, reg.create("allocator", allocator), sparsity, batch_size=batch_size, quiet=True, **kw)


def _weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_registered_and_options_validated():
    reg = get_registry()
    assert reg.get("pruner", "fw") is FWPruner
    assert reg.entry("pruner", "fw").distribution == "truthprune-fw"
    assert FWPruner.required_stats == {"sq_norm", "gram"}
    with pytest.raises(UserError, match="'step'"):
        reg.create("pruner", "fw", {"step": "armijo"})
    with pytest.raises(UserError, match="'iterations'"):
        reg.create("pruner", "fw", {"iterations": -1})


@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_zero_iterations_is_exactly_wanda(tiny_llama, tiny_calibration, nm):
    ref = copy.deepcopy(tiny_llama)
    _prune(ref, tiny_calibration, "wanda", nm=nm)
    _prune(tiny_llama, tiny_calibration, FWPruner({"iterations": 0}), nm=nm)
    a, b = _weights(ref), _weights(tiny_llama)
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_masks_differ_from_wanda_with_same_counts(tiny_llama, tiny_calibration):
    ref = copy.deepcopy(tiny_llama)
    _prune(ref, tiny_calibration, "wanda")
    _prune(tiny_llama, tiny_calibration, FWPruner({"iterations": 20}))
    changed = 0
    for (n, a), b in zip(ref.named_parameters(), tiny_llama.parameters()):
        if a.dim() == 2 and "layers" in n:
            assert torch.equal((a == 0).sum(1), (b == 0).sum(1)), n
            changed += int(((a == 0) != (b == 0)).sum())
    assert changed > 0


@pytest.mark.parametrize("allocator", ["owl", "tplo"])
def test_composes_with_owl_and_tplo(tiny_llama, tiny_calibration, allocator):
    pytest.importorskip(f"truthprune_{allocator}")
    report = _prune(tiny_llama, tiny_calibration, FWPruner({"iterations": 5, "update": True}), allocator=allocator,
                    truth_profile=[0.2, 0.5, 0.3])
    assert max(report.allocation) - min(report.allocation) > 0.01
    assert [r.achieved for r in report.layers] == pytest.approx(report.allocation, abs=1 / 32 + 1e-9)


def test_offload_equals_in_memory(tiny_llama, tiny_calibration, tmp_path):
    from transformers import AutoModelForCausalLM

    tiny_llama.save_pretrained(tmp_path / "src")
    ref = copy.deepcopy(tiny_llama)
    opts = {"iterations": 10, "update": True}
    _prune(ref, tiny_calibration, FWPruner(opts), batch_size=3)
    prune_checkpoint(str(tmp_path / "src"), tmp_path / "out", tiny_calibration, FWPruner(opts),
                     get_registry().create("allocator", "uniform"), 0.5, batch_size=3, quiet=True)
    got = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    want = dict(ref.named_parameters())
    for n, p in got.named_parameters():
        torch.testing.assert_close(p, want[n], rtol=1e-5, atol=1e-6)
