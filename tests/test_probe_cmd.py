"""``truthprune probe`` end to end on a tiny random Llama with the SmolLM2 tokenizer (seconds)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from truthprune import UserError
from truthprune.cli.probe_cmd import parse_layers


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "truthprune", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from truthprune.models.loading import resolve_model_path

    try:
        tok_path, _ = resolve_model_path("smollm2-135m")
    except UserError as err:
        pytest.skip(f"needs the SmolLM2 tokenizer from the embedded model: {err}")
    root = tmp_path_factory.mktemp("probe_cmd") / "tiny"
    tokenizer = AutoTokenizer.from_pretrained(tok_path)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    LlamaForCausalLM(cfg).save_pretrained(root)
    tokenizer.save_pretrained(root)
    return root


def test_parse_layers():
    assert parse_layers(None) is None and parse_layers("all") is None
    assert parse_layers("0,4,10-12,-1") == [0, 4, 10, 11, 12, -1]
    with pytest.raises(UserError, match="range like 10-20"):
        parse_layers("3-x")


def test_probe_command_writes_json_and_plots(tiny_dir, tmp_path):
    out, plots = tmp_path / "probe.json", tmp_path / "plots"
    res = _cli(
        "probe", "--model", str(tiny_dir), "--device", "cpu", "--datasets", "capitals,neg_capitals,larger_than,neg_larger_than",
        "--generalization-repeats", "1", "--out", str(out), "--plot", str(plots), "--no-cache",
    )
    assert res.returncode == 0, res.stderr
    assert "generated offline statement sets" in res.stderr  # says where the data came from
    assert "best layer" in res.stdout and "cross-topic" in res.stdout
    data = json.loads(out.read_text())
    assert data["layers"] == [0, 1, 2] and data["probe"] == "logreg"
    assert set(data["heldout"]["accuracy"]) == {"capitals", "neg_capitals", "larger_than", "neg_larger_than"}
    assert data["extraction"]["add_bos"] is True
    assert sorted(p.name for p in plots.iterdir()) == ["probe_logreg_accuracy.png", "probe_logreg_separation.png"]


def test_probe_command_user_errors_before_loading(tiny_dir):
    bad = _cli("probe", "--model", str(tiny_dir), "--probe-opt", "C=-1")
    assert bad.returncode == 2 and bad.stderr.startswith("error: probe 'logreg'") and bad.stderr.count("\n") == 1
    unknown = _cli("probe", "--model", str(tiny_dir), "--datasets", "cities,moons")
    assert unknown.returncode == 2 and "moons" in unknown.stderr
    layer = _cli("probe", "--model", str(tiny_dir), "--device", "cpu", "--layers", "7", "--datasets", "capitals")
    assert layer.returncode == 2 and "layer 7 does not exist" in layer.stderr
