"""Core side of quantization: the format (dequantize), the contract the engine enforces on every
quantizer (masked weights stay 0, well-formed codes), the sidecar, and plan-time checks.
Uses quantizers written here, so it does not depend on the truthprune-quant plugin."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from truthprune import QuantResult, Quantizer, UserError, dequantize, get_registry, load_quantization, prune_model


def test_dequantize_formula_by_hand():
    codes = torch.tensor([[0, 3, 1, 2]], dtype=torch.uint8)
    scales = torch.tensor([[0.5, 2.0]])
    zeros = torch.tensor([[1, 2]], dtype=torch.uint8)
    g_idx = torch.tensor([1, 0, 0, 1], dtype=torch.int32)  # act-order style: groups need not be contiguous
    assert dequantize(codes, scales, zeros, g_idx).tolist() == [[-4.0, 1.0, 0.0, 0.0]]


class _Sign(Quantizer):
    """1-bit-ish toy: code 1 for w >= 0 else 0 on the grid {-s, 0, s}; ``revive`` breaks the mask contract."""

    name = "toy-sign"
    revive = False

    def quantize(self, weight, stats, mask):
        w = weight.float().cpu()
        scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-8)
        codes = torch.where(w > 0, 2, torch.where(w < 0, 0, 1)).to(torch.uint8)
        if not self.revive:
            codes[mask.cpu()] = 1
        return QuantResult(codes, scale, torch.ones(w.shape[0], 1, dtype=torch.uint8),
                           torch.zeros(w.shape[1], dtype=torch.int32), bits=2)


class _Reviving(_Sign):
    name = "toy-reviving"
    revive = True

    def quantize(self, weight, stats, mask):
        r = super().quantize(weight, stats, mask)
        r.codes[mask.cpu()] = 2  # a pruned weight becomes +scale
        return r


class _BadDtype(_Sign):
    name = "toy-bad-dtype"

    def quantize(self, weight, stats, mask):
        r = super().quantize(weight, stats, mask)
        r.codes = r.codes.to(torch.int64)
        return r


def _prune(model, calib, quantizer, store=None):
    reg = get_registry()
    return prune_model(model, calib, reg.create("pruner", "magnitude"), reg.create("allocator", "uniform"), 0.5,
                       batch_size=4, quiet=True, quantizer=quantizer, quant_store=store)


def test_engine_applies_the_dequantized_codes_and_keeps_the_mask(tiny_llama, tiny_calibration):
    from truthprune.pruning.quantization import QuantizedLinears

    q = _Sign()
    store = QuantizedLinears(q)
    report = _prune(tiny_llama, tiny_calibration, q, store)
    w = tiny_llama.model.layers[1].mlp.down_proj.weight.detach()
    r = store.results[(1, "mlp.down_proj")]
    assert torch.equal(w, dequantize(r.codes, r.scales, r.zeros, r.g_idx))
    assert set(torch.unique(w / r.scales).tolist()) <= {-1.0, 0.0, 1.0}
    assert report.overall == pytest.approx(0.5, abs=0.01)  # measured before quantization
    assert report.quantization["method"] == "toy-sign" and len(report.quantization["layer_weight_change"]) == 3


@pytest.mark.parametrize("bad,message", [(_Reviving, r"pruned \(zero\) weights a non-zero value"), (_BadDtype, "codes must be uint8")])
def test_engine_refuses_a_quantizer_that_breaks_the_contract(tiny_llama, tiny_calibration, bad, message):
    from truthprune import PluginContractError

    with pytest.raises(PluginContractError, match=message) as exc:
        _prune(tiny_llama, tiny_calibration, bad())
    assert bad.name in str(exc.value)


def test_sidecar_round_trip(tiny_llama, tiny_calibration, tmp_path):
    from truthprune.pruning.quantization import QuantizedLinears
    from truthprune.run.saving import save_pruned

    q = _Sign()
    store = QuantizedLinears(q)
    _prune(tiny_llama, tiny_calibration, q, store)

    class _NoTokenizer:
        def save_pretrained(self, directory):
            pass

    save_pruned(tiny_llama, _NoTokenizer(), tmp_path / "m", {}, quantization=store)
    results, meta = load_quantization(tmp_path / "m")
    assert meta["format"] == "truthprune-quant/1" and meta["method"] == "toy-sign"
    state = tiny_llama.state_dict()
    assert sorted(results) == sorted(k for k in state if k.endswith("proj.weight"))
    for key, r in results.items():
        assert torch.equal(dequantize(r.codes, r.scales, r.zeros, r.g_idx), state[key])
    with pytest.raises(UserError, match="does not exist"):
        load_quantization(tmp_path / "missing")


def test_describe_line():
    from truthprune.pruning.quantization import describe_line

    assert describe_line({"method": "gptq", "bits": 4, "group_size": 128, "symmetric": False, "act_order": True,
                          "layer_weight_change": []}) == "gptq 4-bit, group 128, asymmetric (act_order=True)"
    assert describe_line({"method": "rtn", "bits": 8, "group_size": 0, "symmetric": True}) == "rtn 8-bit, per channel, symmetric"


def test_compare_adds_a_quantization_column_only_when_a_run_quantized():
    from truthprune.reporting.compare import Run, summary
    from truthprune.pruning.quantization import short_label

    def report(quant):
        return {"config": {"sparsity": 0.5, "seed": 0}, "dense": {"ppl": {"ppl": 10.0}}, "pruned": {"ppl": {"ppl": 12.0}},
                "pruning": {"pruner": "wanda", "allocator": "uniform", "overall": 0.5, **({"quantization": quant} if quant else {})}}

    gptq = {"method": "gptq", "bits": 4, "group_size": 128}
    assert short_label(gptq) == "gptq 4-bit g128" and short_label({"method": "rtn", "bits": 8, "group_size": 0}) == "rtn 8-bit per-channel"
    header, rows, records = summary([Run("a", Path("a"), report(gptq)), Run("b", Path("b"), report(None))])
    col = header.index("quantization")
    assert [row[col] for row in rows] == ["-", "gptq 4-bit g128", "-"] and records[1]["quantization"] == "gptq 4-bit g128"
    assert "quantization" not in summary([Run("b", Path("b"), report(None))])[0]


def test_quantizer_options_without_quantizer_fail_at_plan_time():
    from truthprune.run.config import build_config
    from truthprune.run.pipeline import plan_quantizer

    cfg = build_config(None, {"quantizer_options": {"bits": 4}})
    with pytest.raises(UserError, match="without --quantizer"):
        plan_quantizer(cfg)
    assert plan_quantizer(build_config(None, {})) is None
