"""The trim pruner through the shared engine: exact layer totals, composition, offload, errors."""

from __future__ import annotations

import copy

import pytest
import torch

from truthprune import UserError, get_registry, prune_checkpoint, prune_model
from truthprune_trim import TrimPruner


def _prune(model, calib, pruner, allocator="uniform", sparsity=0.5, batch_size=4, **kw):
    reg = get_registry()
    if isinstance(pruner, str):
        pruner = reg.create("pruner", pruner)
    return prune_model(model, calib, pruner, reg.create("allocator", allocator), sparsity, batch_size=batch_size, quiet=True, **kw)


def _linears(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.dim() == 2 and ".layers." in n}


def test_registered_and_sparsegpt_refused_with_reason():
    reg = get_registry()
    assert reg.get("pruner", "trim") is TrimPruner
    assert reg.entry("pruner", "trim").distribution == "truthprune-trim"
    with pytest.raises(UserError, match="option 'score'.*per-weight score"):
        reg.create("pruner", "trim", {"score": "sparsegpt"})
    with pytest.raises(UserError, match="'score'"):
        reg.create("pruner", "trim", {"score": "random"})


def test_cli_refuses_sparsegpt_score_at_plan_time(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "truthprune", "prune", "--pruner", "trim", "--pruner-opt", "score=sparsegpt",
                          "--save", str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "per-weight score" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("score", ["wanda", "magnitude"])
def test_layer_totals_equal_the_uniform_pruner_and_rows_vary(tiny_llama, tiny_calibration, score):
    ref = copy.deepcopy(tiny_llama)
    _prune(ref, tiny_calibration, "wanda" if score == "wanda" else "magnitude", sparsity=0.7)
    _prune(tiny_llama, tiny_calibration, TrimPruner({"score": score, "step": 0.2}), sparsity=0.7)
    varied = 0
    for (n, a), b in zip(_linears(ref).items(), _linears(tiny_llama).values()):
        assert int((a == 0).sum()) == int((b == 0).sum()), n  # same layer total, exactly
        varied += int((b == 0).sum(1).unique().numel() > 1)
    assert varied > 0


def test_zero_iterations_and_nm_are_the_plain_wanda_masks(tiny_llama, tiny_calibration):
    for opts, kw in (({"iterations": 0}, {}), ({}, {"nm": (2, 4)})):
        ref, model = copy.deepcopy(tiny_llama), copy.deepcopy(tiny_llama)
        _prune(ref, tiny_calibration, "wanda", **kw)
        _prune(model, tiny_calibration, TrimPruner(opts), **kw)
        a, b = _linears(ref), _linears(model)
        assert all(torch.equal(a[n], b[n]) for n in a)


@pytest.mark.parametrize("allocator", ["owl", "tplo"])
def test_composes_with_owl_and_tplo(tiny_llama, tiny_calibration, allocator):
    pytest.importorskip(f"truthprune_{allocator}")
    ref = copy.deepcopy(tiny_llama)
    want = _prune(ref, tiny_calibration, "wanda", allocator=allocator, truth_profile=[0.2, 0.5, 0.3])
    got = _prune(tiny_llama, tiny_calibration, TrimPruner(), allocator=allocator, truth_profile=[0.2, 0.5, 0.3])
    assert max(got.allocation) - min(got.allocation) > 0.01
    # TRIM moves sparsity between rows only: every layer's achieved sparsity is the uniform pruner's
    assert [r.achieved for r in got.layers] == [r.achieved for r in want.layers]


def test_offload_equals_in_memory(tiny_llama, tiny_calibration, tmp_path):
    from transformers import AutoModelForCausalLM

    tiny_llama.save_pretrained(tmp_path / "src")
    ref = copy.deepcopy(tiny_llama)
    _prune(ref, tiny_calibration, TrimPruner(), batch_size=3)
    prune_checkpoint(str(tmp_path / "src"), tmp_path / "out", tiny_calibration, TrimPruner(),
                     get_registry().create("allocator", "uniform"), 0.5, batch_size=3, quiet=True)
    got = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    want = dict(ref.named_parameters())
    for n, p in got.named_parameters():
        torch.testing.assert_close(p, want[n], rtol=1e-5, atol=1e-6)
