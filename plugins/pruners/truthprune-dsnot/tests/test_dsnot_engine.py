"""DSnoT through the shared engine: the base is resolved through the registry (bad bases refused
at construction, i.e. at plan time), zero cycles = the base, composition, offload."""

from __future__ import annotations

import copy

import pytest
import torch

from truthprune import UserError, get_registry, prune_checkpoint, prune_model
from truthprune_dsnot import DSnoTPruner


def _prune(model, calib, pruner, allocator="uniform", sparsity=0.5, batch_size=4, **kw):
    reg = get_registry()
    if isinstance(pruner, str):
        pruner = reg.create("pruner", pruner)
    return prune_model(model, calib, pruner, reg.create("allocator", allocator), sparsity, batch_size=batch_size, quiet=True, **kw)


def _linears(model):
    return {n: p.detach() for n, p in model.named_parameters() if p.dim() == 2 and ".layers." in n}


def test_registered_and_base_resolved_through_the_registry():
    reg = get_registry()
    assert reg.get("pruner", "dsnot") is DSnoTPruner
    assert reg.entry("pruner", "dsnot").distribution == "truthprune-dsnot"
    p = reg.create("pruner", "dsnot", {"base": "sparsegpt"})
    assert p.base.name == "sparsegpt" and p.required_stats >= {"sq_norm", "sum", "gram"}
    with pytest.raises(UserError, match="unknown pruner 'wandaa'.*did you mean 'wanda'"):
        reg.create("pruner", "dsnot", {"base": "wandaa"})
    with pytest.raises(UserError, match="'variant'"):
        reg.create("pruner", "dsnot", {"base": "wanda", "base_options": {"variant": "maybe"}})
    with pytest.raises(UserError, match="refine itself"):
        reg.create("pruner", "dsnot", {"base": "dsnot"})
    with pytest.raises(UserError, match="'max_cycles'"):
        reg.create("pruner", "dsnot", {"max_cycles": -1})


def test_structured_base_refused_with_the_reason():
    pytest.importorskip("truthprune_structured")
    names = [e.name for e in get_registry().entries() if e.kind == "pruner" and getattr(e.cls, "structured", False)]
    with pytest.raises(UserError, match="removes whole units"):
        get_registry().create("pruner", "dsnot", {"base": names[0]})


def test_plan_time_refusal_is_one_line_exit_2(cli):
    r = cli("prune", "--pruner", "dsnot", "--pruner-opt", "base=nosuch", "--save", "/nonexistent/never-written")
    assert r.returncode == 2 and "nosuch" in r.stderr and "Traceback" not in r.stderr
    assert len([ln for ln in r.stderr.strip().splitlines() if ln.strip()]) == 1


@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_zero_cycles_is_exactly_the_base(tiny_llama, tiny_calibration, nm):
    ref = copy.deepcopy(tiny_llama)
    _prune(ref, tiny_calibration, "wanda", nm=nm)
    _prune(tiny_llama, tiny_calibration, DSnoTPruner({"max_cycles": 0}), nm=nm)
    a, b = _linears(ref), _linears(tiny_llama)
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_refines_wanda_with_the_same_per_row_counts(tiny_llama, tiny_calibration):
    ref = copy.deepcopy(tiny_llama)
    _prune(ref, tiny_calibration, "wanda", sparsity=0.6)
    _prune(tiny_llama, tiny_calibration, DSnoTPruner({"threshold": 0.0}), sparsity=0.6)
    changed = 0
    for (n, a), b in zip(_linears(ref).items(), _linears(tiny_llama).values()):
        assert torch.equal((a == 0).sum(1), (b == 0).sum(1)), n
        changed += int(((a == 0) != (b == 0)).sum())
    assert changed > 0


def test_block_aware_base_keeps_its_hooks(tiny_llama, tiny_calibration):
    pytest.importorskip("truthprune_ria")
    pruner = DSnoTPruner({"base": "ria", "threshold": 0.0})
    assert pruner.uses_block
    _prune(tiny_llama, tiny_calibration, pruner, nm=(2, 4))
    assert pruner.base.permuted  # RIA's channel permutation ran around DSnoT's masks
    for n, w in _linears(tiny_llama).items():
        assert ((w == 0).reshape(w.shape[0], -1, 4).sum(-1) == 2).all(), n


@pytest.mark.parametrize("allocator", ["owl", "tplo"])
def test_composes_with_owl_and_tplo(tiny_llama, tiny_calibration, allocator):
    pytest.importorskip(f"truthprune_{allocator}")
    report = _prune(tiny_llama, tiny_calibration, DSnoTPruner(), allocator=allocator, truth_profile=[0.2, 0.5, 0.3])
    assert max(report.allocation) - min(report.allocation) > 0.01
    assert [r.achieved for r in report.layers] == pytest.approx(report.allocation, abs=1 / 32 + 1e-9)


@pytest.mark.parametrize("base", ["wanda", "sparsegpt"])
def test_offload_equals_in_memory(tiny_llama, tiny_calibration, tmp_path, base):
    from transformers import AutoModelForCausalLM

    tiny_llama.save_pretrained(tmp_path / "src")
    ref = copy.deepcopy(tiny_llama)
    opts = {"base": base, "threshold": 0.0}
    _prune(ref, tiny_calibration, DSnoTPruner(opts), batch_size=3)
    prune_checkpoint(str(tmp_path / "src"), tmp_path / "out", tiny_calibration, DSnoTPruner(opts),
                     get_registry().create("allocator", "uniform"), 0.5, batch_size=3, quiet=True)
    got = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    want = dict(ref.named_parameters())
    for n, p in got.named_parameters():
        torch.testing.assert_close(p, want[n], rtol=1e-5, atol=1e-6)
