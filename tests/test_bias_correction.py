"""``--bias-correction``: the shift maths, what it does to the mean output, which linears get a
slot, and that the saved checkpoint (in memory and --offload) reloads in plain transformers with
the logits of the in-memory pruned model."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from truthprune import UserError, get_registry, prune_model
from truthprune.pruning.engine.bias import output_shift, plan_bias
from truthprune.testing.pytest_fixtures import one_thread  # noqa: E402,F401  (autouse: tiny matmuls on one thread)


def _calib():
    from truthprune.testing import tiny_calibration

    calib = tiny_calibration(nsamples=6, seqlen=40, seed=3)
    calib.attention_mask[1, :5] = 0  # padding must stay out of the means
    return calib


def _wanda():
    reg = get_registry()
    return reg.create("pruner", "wanda"), reg.create("allocator", "uniform")


def test_output_shift_restores_the_dense_mean_by_hand():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 5, generator=g)
    w_pruned = w * (torch.rand(3, 5, generator=g) > 0.5)
    x_dense, x_pruned = torch.randn(40, 5, generator=g) + 1.0, torch.randn(40, 5, generator=g) + 0.7
    shift = output_shift(w.double() @ x_dense.double().mean(0), w_pruned, x_pruned.double().mean(0))
    dense_out = (x_dense.double() @ w.double().t()).mean(0)
    pruned_out = (x_pruned.double() @ w_pruned.double().t()).mean(0) + shift
    assert torch.allclose(dense_out, pruned_out, atol=1e-12)


def test_llama_gets_both_flags_and_every_linear(tiny_llama):
    plan = plan_bias(tiny_llama.config)
    assert plan.flags == ("attention_bias", "mlp_bias") and len(plan.corrected) == 7 and not plan.no_slot
    from truthprune.models.adapter import TargetSelection

    mlp_only = plan_bias(tiny_llama.config, TargetSelection.from_options(["mlp.*"], None))
    assert mlp_only.flags == ("mlp_bias",) and not any("attn" in n for n in mlp_only.corrected)


def test_architecture_without_any_slot_is_refused():
    from transformers import Qwen2Config

    from truthprune.models.adapter import TargetSelection

    cfg = Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=1)
    plan = plan_bias(cfg)  # q/k/v carry biases; o_proj and the MLP have no slot: corrected where possible
    assert set(plan.corrected) == {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"} and "mlp.down_proj" in plan.no_slot
    assert "no bias slot" in plan.warning()
    with pytest.raises(UserError, match="no pruned linear .* has a bias slot"):
        plan_bias(cfg, TargetSelection.from_options(["mlp.*"], None))


def test_pruned_mean_output_matches_dense_on_the_first_layer(tiny_llama):
    """At layer 0 the pruned model's inputs are the dense ones: the corrected q_proj output mean is the dense one."""
    calib = _calib()
    dense = copy.deepcopy(tiny_llama)
    prune_model(tiny_llama, calib, *_wanda(), 0.5, batch_size=4, quiet=True, bias_correction=True)
    outs = {}

    def grab(key):
        def hook(module, args, out):
            keep = calib.attention_mask.bool().reshape(-1)
            outs[key] = out.reshape(-1, out.shape[-1])[keep].double().mean(0)
        return hook

    for key, model in (("dense", dense), ("pruned", tiny_llama)):
        h = model.model.layers[0].self_attn.q_proj.register_forward_hook(grab(key))
        with torch.no_grad():
            model(calib.input_ids, attention_mask=calib.attention_mask)
        h.remove()
    assert torch.allclose(outs["dense"], outs["pruned"], atol=1e-5)
    assert tiny_llama.model.layers[0].self_attn.q_proj.bias.abs().sum() > 0


def test_checkpoint_reloads_in_plain_transformers_with_equal_logits(tiny_llama, tmp_path):
    from transformers import AutoModelForCausalLM

    from truthprune.pruning.engine.offload import prune_checkpoint

    src = tmp_path / "src"
    tiny_llama.save_pretrained(src)
    calib = _calib()
    report = prune_model(tiny_llama, calib, *_wanda(), 0.5, batch_size=4, quiet=True, bias_correction=True)
    assert report.bias_correction["flags"] == ["attention_bias", "mlp_bias"] and len(report.bias_correction["layer_shift"]) == 3
    tiny_llama.save_pretrained(tmp_path / "mem")
    prune_checkpoint(str(src), tmp_path / "off", calib, *_wanda(), 0.5, batch_size=4, quiet=True, bias_correction=True)
    ids = calib.input_ids[:3]
    with torch.no_grad():
        expected = tiny_llama(ids).logits
    for name in ("mem", "off"):
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert config["attention_bias"] is True and config["mlp_bias"] is True
        reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / name).eval()
        assert reloaded.model.layers[2].mlp.down_proj.bias is not None
        with torch.no_grad():
            assert torch.allclose(reloaded(ids).logits, expected, atol=1e-6), name


def test_bias_correction_composes_with_a_weight_updating_pruner(tiny_llama):
    """SparseGPT changes the kept weights, then the bias is measured on the result: still matches at layer 0."""
    calib = _calib()
    reg = get_registry()
    dense = copy.deepcopy(tiny_llama)
    prune_model(tiny_llama, calib, reg.create("pruner", "sparsegpt", {"target": "dense"}), reg.create("allocator", "uniform"), 0.5,
                batch_size=4, quiet=True, bias_correction=True)
    x = dense.model.embed_tokens(calib.input_ids)
    layer, layer_d = tiny_llama.model.layers[0], dense.model.layers[0]
    keep = calib.attention_mask.bool().reshape(-1)
    with torch.no_grad():
        h = layer.input_layernorm(x).reshape(-1, 32)[keep]
        a = layer.self_attn.v_proj(h).double().mean(0)
        b = layer_d.self_attn.v_proj(layer_d.input_layernorm(x).reshape(-1, 32)[keep]).double().mean(0)
    assert torch.allclose(a, b, atol=1e-5)


def test_cli_flag_and_plan_time_refusals(tmp_path):
    from truthprune.run.config import build_config
    from truthprune.run.pipeline import plan_run

    cfg = build_config(None, {"bias_correction": True, "pruner": "structured", "out": str(tmp_path / "o")})
    with pytest.raises(UserError, match="structured pruner"):
        plan_run(cfg)
    assert not (tmp_path / "o").exists()


def test_prune_command_saves_a_reloadable_bias_corrected_checkpoint(tmp_path, capsys, monkeypatch):
    from transformers import AutoModelForCausalLM

    from truthprune.cli.main import main
    from truthprune.testing import save_tiny_checkpoint

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    src = save_tiny_checkpoint(tmp_path / "src", layers=2)
    with pytest.raises(SystemExit) as exc:
        main(["prune", "--model", str(src), "--pruner", "sparsegpt", "--pruner-opt", "target=dense", "--bias-correction",
              "--nsamples", "4", "--seqlen", "32", "--batch-size", "2", "--device", "cpu", "--quiet", "--save", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert exc.value.code == 0, err[-2000:]
    assert "bias correction: 7 linears per layer (config: attention_bias=true, mlp_bias=true)" in out
    meta = json.loads((tmp_path / "out" / "truthprune.json").read_text())
    assert meta["config"]["bias_correction"] is True and meta["pruning"]["bias_correction"]["corrected"]
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert float(model.model.layers[1].self_attn.o_proj.bias.detach().abs().sum()) > 0
