"""compressed-tensors export: the exact mapping of truthprune's grid, plain transformers loading, file size,
pruned zeros that stay exactly 0, and ``truthprune inspect`` on every step.

Tolerances: a float32 model reloads with bit-identical weights (scales are stored in float32, codes are
checked one by one), so logits are compared with atol 0. In bfloat16 transformers rounds each scale
to bf16 before multiplying: every weight is then within 2**-7 of truthprune's, relative.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from truthprune import QuantResult, UserError
from truthprune.pruning.ct_export import CtLayout, ct_layout, ct_tensors, run_boundaries

ct = pytest.importorskip("compressed_tensors")


def _result(codes, scales, zeros, g_idx, bits=4):
    return QuantResult(codes.to(torch.uint8), scales.float(), zeros.to(torch.uint8), g_idx.to(torch.int32), bits)


def test_layout_gcd_of_partial_groups_and_channel():
    g = torch.arange(48) // 32  # group 32 over 48 columns: runs of 32 and 16 -> written at 16
    r = _result(torch.zeros(2, 48), torch.ones(2, 2), torch.full((2, 2), 3), g)
    assert run_boundaries(g) == [32, 48]
    assert ct_layout({"a": r}) == CtLayout(4, False, 16)
    one = _result(torch.zeros(2, 48), torch.ones(2, 1), torch.full((2, 1), 8), torch.zeros(48))
    assert ct_layout({"a": one}) == CtLayout(4, True, None)  # zero-point 8 everywhere: symmetric, per channel
    assert ct_layout({"a": r, "b": one}).group_size == 16


def test_layout_refuses_permuted_groups_and_mixed_bits():
    g = torch.tensor([0, 1, 0, 1])
    r = _result(torch.zeros(1, 4), torch.ones(1, 2), torch.zeros(1, 2), g)
    assert run_boundaries(g) is None
    with pytest.raises(UserError, match="act-order"):
        ct_layout({"a": r})
    a = _result(torch.zeros(1, 4), torch.ones(1, 1), torch.zeros(1, 1), torch.zeros(4), bits=4)
    b = _result(torch.zeros(1, 4), torch.ones(1, 1), torch.zeros(1, 1), torch.zeros(4), bits=8)
    with pytest.raises(UserError, match="bit widths"):
        ct_layout({"a": a, "b": b})


def test_tensors_map_codes_and_zero_points_exactly():
    g = torch.arange(6) // 4  # groups of 4 and 2 -> ct groups of 2
    codes = torch.tensor([[0, 15, 7, 8, 3, 9]])
    r = _result(codes, torch.tensor([[0.5, 0.25]]), torch.tensor([[7, 9]]), g)
    layout = ct_layout({"a": r})
    w, scale, zp = ct_tensors(r, layout)
    assert layout.group_size == 2
    assert torch.equal(scale, torch.tensor([[0.5, 0.5, 0.25]]))
    assert torch.equal(zp, torch.tensor([[-1, -1, 1]], dtype=torch.int8))  # zero - 8
    assert torch.equal(w, torch.tensor([[-3.5, 4.0, 0.0, 0.5, -1.5, 0.0]]))  # (code - zero) * scale


# ----------------------------------------------------------------------------- end to end (tiny models)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from truthprune.testing import save_tiny_checkpoint

    root = tmp_path_factory.mktemp("ct")
    path = save_tiny_checkpoint(root / "tiny", seed=0, layers=2)
    (root / "calib.txt").write_text(" ".join(["the model of truth and a prune"] * 400))
    return root


def _prune(cli, root, out, *extra):
    args = ["prune", "--model", str(root / "tiny"), "--calibration", "text", "--calibration-opt", f"path={root / 'calib.txt'}",
            "--nsamples", "4", "--seqlen", "32", "--device", "cpu", "--quiet", "--save", str(out), *extra]
    code, stdout, err = cli(*args)
    assert code == 0, err[-2000:]
    return out


@pytest.fixture
def cli(capsys):
    from truthprune.cli.main import main

    def run(*args):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _logits(path, dtype=torch.float32):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).eval()
    ids = torch.randint(3, 100, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model, model(ids).logits


LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.mark.parametrize("quant", [["--quantizer", "gptq", "--bits", "4", "--group-size", "16"],
                                   ["--quantizer", "rtn", "--bits", "4", "--group-size", "0", "--quantizer-opt", "symmetric=true"],
                                   ["--quantizer", "rtn", "--bits", "8", "--group-size", "48"]],
                         ids=["gptq4-g16-asym", "rtn4-channel-sym", "rtn8-g48-partial"])
def test_prune_quantize_export_loads_in_plain_transformers_with_equal_logits(tiny, tmp_path, cli, quant):
    from truthprune.reporting.inspect_model import inspect_checkpoint

    sidecar = _prune(cli, tiny, tmp_path / "sidecar", "--pruner", "wanda", "--sparsity", "0.5", *quant)
    direct = _prune(cli, tiny, tmp_path / "ct", "--pruner", "wanda", "--sparsity", "0.5", *quant, "--format", "compressed-tensors")
    code, out, err = cli("export", str(sidecar), "--out", str(tmp_path / "exported"))
    assert code == 0, err[-2000:]
    config = json.loads((direct / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "compressed-tensors" and config["format"] == "pack-quantized"
    assert config["ignore"] == ["lm_head"]
    weights = config["config_groups"]["group_0"]["weights"]
    assert weights["num_bits"] == int(quant[3]) and weights["type"] == "int"

    ref_model, ref = _logits(sidecar)
    for path in (direct, tmp_path / "exported"):
        model, logits = _logits(path)
        assert torch.equal(logits, ref)  # float32: bit-identical weights, so identical logits
        for i, layer in enumerate(model.model.layers):
            for name in LINEARS:
                w = layer.get_submodule(("self_attn." if name[0] in "qkvo" else "mlp.") + name).weight
                w_ref = ref_model.model.layers[i].get_submodule(("self_attn." if name[0] in "qkvo" else "mlp.") + name).weight
                assert torch.equal(w, w_ref)
        info = inspect_checkpoint(path)
        assert info["format"] == "compressed-tensors" and info["quantization"]["bits"] == int(quant[3])
        assert info["warnings"] == [] and info["overall_sparsity"] >= 0.5 - 1e-9
    sc = inspect_checkpoint(sidecar)
    assert sc["warnings"] == [] and [r["sparsity"] for r in sc["layers"]] == [r["sparsity"] for r in inspect_checkpoint(direct)["layers"]]
    a = (direct / "model.safetensors").read_bytes()
    assert a == (tmp_path / "exported" / "model.safetensors").read_bytes()  # export == direct save, byte for byte


def test_pruned_weights_stay_zero_and_file_shrinks_by_the_expected_factor(tiny, tmp_path, cli):
    from safetensors import safe_open

    dense = tiny / "tiny"
    sidecar = _prune(cli, tiny, tmp_path / "sidecar", "--pruner", "wanda", "--sparsity", "0.5", "--quantizer", "gptq",
                     "--bits", "4", "--group-size", "16")
    ct_dir = _prune(cli, tiny, tmp_path / "ct", "--pruner", "wanda", "--sparsity", "0.5", "--quantizer", "gptq", "--bits", "4",
                    "--group-size", "16", "--format", "compressed-tensors")
    model, _ = _logits(ct_dir)
    ref, _ = _logits(sidecar)
    got = dict(model.named_parameters())
    for name, w_ref in ref.named_parameters():
        if w_ref.dim() == 2 and ".layers." in name:
            w = got[name]
            assert torch.equal(w == 0, w_ref == 0) and float((w == 0).float().mean()) >= 0.5
    # expected bytes: unquantized tensors as in the dense file; each linear 4 bits per weight (int32 words),
    # float32 scales and packed int4 zero-points per group of 16
    with safe_open(str(dense / "model.safetensors"), "pt") as f:
        shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
    dense_linear = sum(4 * o * i for k, (o, *rest) in ((k, s) for k, s in shapes.items()) if ".layers." in k and len(rest) == 1 for i in rest)
    other = sum(4 * math.prod(s) for k, s in shapes.items() if not (".layers." in k and len(s) == 2))
    packed = sum(4 * o * math.ceil(i * 4 / 32) + 4 * o * (i // 16) + 4 * math.ceil(o * 4 / 32) * (i // 16) + 16
                 for k, (o, *rest) in shapes.items() if ".layers." in k and len(rest) == 1 for i in rest)
    size = (ct_dir / "model.safetensors").stat().st_size
    header = 16_000  # the safetensors JSON header (tensor names and offsets)
    assert other + packed <= size <= other + packed + header
    assert dense_linear / packed > 4  # 32 bits -> 4 bits + a 64-bit scale/zero-point per 16 weights: 32/6 = 5.3


def test_bfloat16_reload_within_stated_tolerance(tiny, tmp_path, cli):
    sidecar = _prune(cli, tiny, tmp_path / "sidecar", "--pruner", "wanda", "--sparsity", "0.5", "--quantizer", "rtn",
                     "--bits", "4", "--group-size", "16", "--quantizer-opt", "symmetric=true", "--dtype", "bfloat16")
    ct_dir = _prune(cli, tiny, tmp_path / "ct", "--pruner", "wanda", "--sparsity", "0.5", "--quantizer", "rtn", "--bits", "4",
                    "--group-size", "16", "--quantizer-opt", "symmetric=true", "--dtype", "bfloat16", "--format",
                    "compressed-tensors")
    model, _ = _logits(ct_dir, torch.bfloat16)
    ref, _ = _logits(sidecar, torch.bfloat16)
    got = dict(model.named_parameters())
    for name, w_ref in ref.named_parameters():
        if w_ref.dim() == 2 and ".layers." in name:
            w = got[name]
            assert w.dtype == torch.bfloat16 and torch.equal(w == 0, w_ref == 0)
            assert float(((w.float() - w_ref.float()).abs() - 2**-7 * w_ref.float().abs()).max()) <= 0
