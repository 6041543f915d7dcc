"""UniPruning through the shared engine: one dense calibration for several sparsities, the
controller's allocation, composition with OWL/TPLO and other pruners, offload, and a CLI sweep."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from truthprune import UserError, get_registry, prune_checkpoint, prune_model
from truthprune.models.loading import weights_fingerprint
from truthprune.pruning.engine.dense_stats import DenseCache
from truthprune_unipruning import UniPruningAllocator, UniPruningPruner


def _prune(model, calib, pruner="unipruning", allocator="unipruning", sparsity=0.5, **kw):
    reg = get_registry()
    pruner = reg.create("pruner", pruner) if isinstance(pruner, str) else pruner
    allocator = reg.create("allocator", allocator) if isinstance(allocator, str) else allocator
    return prune_model(model, calib, pruner, allocator, sparsity, batch_size=4, quiet=True, **kw)


def _skewed(model):
    """Make the layers differ (scale layer 0's MLP weights down), so the controller has something to share."""
    with torch.no_grad():
        for lin in (model.model.layers[0].mlp.gate_proj, model.model.layers[0].mlp.up_proj):
            lin.weight[:, ::2] *= 0.05
    return model


def test_registered_as_pruner_and_allocator():
    reg = get_registry()
    assert reg.get("pruner", "unipruning") is UniPruningPruner and reg.get("allocator", "unipruning") is UniPruningAllocator
    assert reg.entry("allocator", "unipruning").distribution == "truthprune-unipruning"
    assert UniPruningPruner.dense_statistics and UniPruningPruner.default_allocator == "unipruning"
    with pytest.raises(UserError, match="'delta'"):
        reg.create("allocator", "unipruning", {"delta": 0})


def test_several_sparsities_from_one_calibration(tiny_llama, tiny_calibration):
    model = _skewed(tiny_llama)
    dense = copy.deepcopy(model.state_dict())
    cache = DenseCache({}, lambda: weights_fingerprint(model))
    reports, weights = {}, {}
    for s in (0.5, 0.6, 0.7):
        model.load_state_dict(dense)
        alloc = get_registry().create("allocator", "unipruning")
        reports[s] = _prune(model, tiny_calibration, allocator=alloc, sparsity=s, dense_cache=cache)
        weights[s] = [p.detach().clone() for p in model.parameters()]
        last = alloc.last
        assert max(abs(x - 1) for x in last.budget_sums) <= 1e-12
        mean = sum(n * a for n, a in zip([r.params for r in reports[s].layers], reports[s].allocation)) / sum(r.params for r in reports[s].layers)
        assert mean == pytest.approx(s, abs=1e-12)
        assert reports[s].overall == pytest.approx(s, abs=0.02)
    assert cache.hits == 2 and [reports[s].statistics_reused for s in (0.5, 0.6, 0.7)] == [False, True, True]
    assert max(reports[0.6].allocation) - min(reports[0.6].allocation) > 0.01  # the controller moved budget
    # a sparsity pruned from reused statistics is the one a fresh calibration gives
    fresh = copy.deepcopy(model)
    fresh.load_state_dict(dense)
    _prune(fresh, tiny_calibration, sparsity=0.6)
    assert all(torch.equal(a, b.detach()) for a, b in zip(weights[0.6], fresh.parameters()))


def test_controller_lowers_its_objective_against_uniform(tiny_llama, tiny_calibration):
    alloc = get_registry().create("allocator", "unipruning")
    _prune(_skewed(tiny_llama), tiny_calibration, allocator=alloc, sparsity=0.6)
    assert min(alloc.last.objective) < alloc.last.objective[0]
    assert alloc.diagnostics()["unipruning_layer_error"]


@pytest.mark.parametrize("allocator", ["owl", "tplo"])
def test_composes_with_owl_and_tplo(tiny_llama, tiny_calibration, allocator):
    pytest.importorskip(f"truthprune_{allocator}")
    report = _prune(tiny_llama, tiny_calibration, allocator=allocator, truth_profile=[0.2, 0.5, 0.3])
    assert max(report.allocation) - min(report.allocation) > 0.01
    assert [r.achieved for r in report.layers] == pytest.approx(report.allocation, abs=1 / 32 + 1e-9)


def test_controller_serves_other_pruners_and_nm_needs_uniform(tiny_llama, tiny_calibration):
    report = _prune(_skewed(tiny_llama), tiny_calibration, pruner="wanda", sparsity=0.6)
    assert report.overall == pytest.approx(0.6, abs=0.02)
    with pytest.raises(UserError, match="N:M"):
        _prune(tiny_llama, tiny_calibration, nm=(2, 4))
    _prune(tiny_llama, tiny_calibration, allocator="uniform", nm=(2, 4))


def test_offload_equals_in_memory(tiny_llama, tiny_calibration, tmp_path):
    from transformers import AutoModelForCausalLM

    _skewed(tiny_llama).save_pretrained(tmp_path / "src")
    ref = copy.deepcopy(tiny_llama)
    _prune(ref, tiny_calibration, sparsity=0.6)
    reg = get_registry()
    prune_checkpoint(str(tmp_path / "src"), tmp_path / "out", tiny_calibration, reg.create("pruner", "unipruning"),
                     reg.create("allocator", "unipruning"), 0.6, batch_size=4, quiet=True)
    got = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    want = dict(ref.named_parameters())
    for n, p in got.named_parameters():
        torch.testing.assert_close(p, want[n], rtol=1e-5, atol=1e-6)


def _char_tokenizer():
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{chr(c): 3 + i for i, c in enumerate(range(32, 127))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<unk>")


def test_cli_sweep_saves_every_sparsity_and_calibrates_once(tiny_llama, tmp_path, cli):
    _skewed(tiny_llama).save_pretrained(tmp_path / "m")
    _char_tokenizer().save_pretrained(tmp_path / "m")
    text = " ".join(f"the {w} of truth number {i} is plain text." for i, w in enumerate(["cat", "dog", "sun"] * 80))
    (tmp_path / "calib.txt").write_text(text)
    r = cli("sweep", "--model", str(tmp_path / "m"), "--pruner", "unipruning", "--sparsity", "0.5,0.7",
            "--calibration", "text", "--calibration-opt", f"path={tmp_path / 'calib.txt'}", "--nsamples", "4",
            "--seqlen", "32", "--batch-size", "4", "--eval", "ppl", "--ppl-data", str(tmp_path / "calib.txt"),
            "--ppl-max-windows", "2", "--device", "cpu", "--quiet", "--out", str(tmp_path / "sw"), "--save", str(tmp_path / "ck"))
    assert r.returncode == 0, r.stderr
    reused = []
    for s in ("0.5", "0.7"):
        rep = json.loads((tmp_path / "sw" / f"unipruning-{s}" / "report.json").read_text())
        reused.append(rep["pruning"]["statistics_reused"])
        assert rep["pruning"]["overall"] == pytest.approx(float(s), abs=0.02)
        assert (tmp_path / "ck" / f"unipruning-{s}" / "model.safetensors").is_file()
    assert reused == [False, True]
