"""Pruning + quantization through truthprune's engine on a tiny Llama: the mask survives, the
model holds exactly the sidecar's dequantized codes, runs are deterministic, the CLI round trip."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from truthprune import dequantize, get_registry, load_quantization, prune_model, prunable_linears, decoder_layers


class _Recording:
    """Wraps a pruner and remembers every mask it returned, in engine order."""

    def __init__(self, pruner):
        self.inner, self.masks = pruner, []

    def __getattr__(self, name):  # everything else the engine asks is the wrapped pruner's
        return getattr(self.inner, name)

    def prune(self, weight, stats, target):
        result = self.inner.prune(weight, stats, target)
        self.masks.append(result.mask.clone())
        return result


def _run(model, calib, pruner="wanda", sparsity=0.5, quantizer="gptq", **qopts):
    from truthprune.pruning.quantization import QuantizedLinears  # core internals: test only

    reg = get_registry()
    rec = _Recording(reg.create("pruner", pruner))
    q = reg.create("quantizer", quantizer, {"group_size": 16, **qopts})
    store = QuantizedLinears(q)
    report = prune_model(model, calib, rec, reg.create("allocator", "uniform"), sparsity, batch_size=4, quiet=True,
                         quantizer=q, quant_store=store)
    return rec, store, report


@pytest.mark.parametrize("quantizer,bits", [("gptq", 4), ("gptq", 2), ("rtn", 3)])
def test_pruned_weights_stay_zero_and_model_equals_sidecar(tiny_llama, tiny_calibration, quantizer, bits):
    rec, store, report = _run(tiny_llama, tiny_calibration, quantizer=quantizer, bits=bits)
    weights = [(i, n, lin.weight.detach()) for i, layer in enumerate(decoder_layers(tiny_llama)) for n, lin in prunable_linears(layer).items()]
    assert len(rec.masks) == len(weights) == len(store.results)
    for (i, name, w), mask, (key, r) in zip(weights, rec.masks, store.results.items()):
        assert key == (i, name)
        assert mask.float().mean() == pytest.approx(0.5, abs=0.02)
        assert torch.all(w[mask] == 0)  # the pruned weights are still exactly zero
        assert torch.equal(r.codes[mask], r.zeros[:, r.g_idx.long()][mask])  # ... because their code is the zero-point
        assert torch.equal(w, dequantize(r.codes, r.scales, r.zeros, r.g_idx).to(w.dtype))
        assert int(r.codes.max()) < 2**bits and len(set(w[~mask].tolist())) <= 2**bits * r.scales.shape[1] * w.shape[0]
    assert report.quantization["method"] == quantizer and report.quantization["bits"] == bits
    assert len(report.quantization["layer_weight_change"]) == 3
    # sparsity is measured before quantization: quantization zeros are not counted as pruned
    assert report.overall == pytest.approx(0.5, abs=0.02)


def test_quantization_only_and_gptq_beats_rtn_on_layer_outputs(tiny_llama, tiny_calibration):
    """--sparsity 0: nothing pruned; GPTQ's next-token logits stay closer to the dense model's."""
    dense = copy.deepcopy(tiny_llama)
    ids = tiny_calibration.input_ids
    with torch.no_grad():
        ref = dense(ids).logits
    errs = {}
    for method in ("rtn", "gptq"):
        model = copy.deepcopy(dense)
        _, _, report = _run(model, tiny_calibration, pruner="magnitude", sparsity=0.0, quantizer=method, bits=3)
        assert report.overall < 0.01
        with torch.no_grad():
            errs[method] = float((model(ids).logits - ref).pow(2).mean())
    assert errs["gptq"] < errs["rtn"]


def test_deterministic(tiny_llama, tiny_calibration):
    a, b = copy.deepcopy(tiny_llama), copy.deepcopy(tiny_llama)
    _, sa, _ = _run(a, tiny_calibration, act_order=True)
    _, sb, _ = _run(b, tiny_calibration, act_order=True)
    for (ka, ra), (kb, rb) in zip(sa.results.items(), sb.results.items()):
        assert ka == kb and torch.equal(ra.codes, rb.codes) and torch.equal(ra.scales, rb.scales)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_sidecar_written_and_read_back(tiny_llama, tiny_calibration, tmp_path):
    from truthprune.run.saving import save_pruned

    _, store, _ = _run(tiny_llama, tiny_calibration, bits=4)

    class _Tok:
        def save_pretrained(self, d):
            pass

    save_pruned(tiny_llama, _Tok(), tmp_path / "q", {"note": "test"}, quantization=store)
    meta = json.loads((tmp_path / "q" / "truthprune.json").read_text())["quantization"]
    assert meta["file"] == "quantization.safetensors" and meta["method"] == "gptq" and meta["bits"] == 4
    assert meta["group_size"] == 16 and meta["linears"] == 21
    results, file_meta = load_quantization(tmp_path / "q")
    assert file_meta["format"] == "truthprune-quant/1" and file_meta["bits"] == 4
    state = tiny_llama.state_dict()
    assert len(results) == 21
    for key, r in results.items():
        assert key in state
        assert torch.equal(dequantize(r.codes, r.scales, r.zeros, r.g_idx).to(state[key].dtype), state[key])


def test_cli_prune_with_quantizer_round_trip(tiny_dir, tmp_path, capsys, monkeypatch):
    from safetensors.torch import load_file

    from truthprune.cli.main import main

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    args = ["prune", "--model", str(tiny_dir), "--pruner", "wanda", "--sparsity", "0.5", "--quantizer", "gptq", "--bits", "4",
            "--group-size", "16", "--nsamples", "8", "--seqlen", "64", "--device", "cpu", "--quiet", "--save", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    assert exc.value.code == 0, err[-2000:]
    assert "quantized: gptq 4-bit, group 16, asymmetric" in out
    saved = load_file(tmp_path / "out" / "model.safetensors")
    results, _ = load_quantization(tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "truthprune.json").read_text())
    assert meta["config"]["quantizer"] == "gptq" and meta["config"]["quantizer_options"] == {"bits": 4, "group_size": 16}
    for key, r in results.items():
        assert torch.equal(dequantize(r.codes, r.scales, r.zeros, r.g_idx).to(saved[key].dtype), saved[key])
    assert 0.49 < meta["overall_sparsity"] < 0.51


@pytest.mark.parametrize("extra,message", [
    (["--bits", "4"], "without --quantizer"),
    (["--quantizer", "gptqq"], "did you mean"),
    (["--quantizer", "rtn", "--bits", "9"], "bits"),
    (["--quantizer", "rtn", "--offload"], "--offload does not quantize"),
])
def test_cli_bad_quantizer_input_exits_2_before_loading(tiny_dir, tmp_path, capsys, extra, message):
    from truthprune.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["prune", "--model", str(tiny_dir), "--seqlen", "64", "--save", str(tmp_path / "never"), "--quiet", *extra])
    _, err = capsys.readouterr()
    assert exc.value.code == 2 and message in err
    assert not (tmp_path / "never").exists()
