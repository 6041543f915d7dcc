"""``truthprune prune`` on the tiny random Llama (conftest) saved with a character-level tokenizer:
in memory and --offload save identical masks, a 2-process torchrun run equals one process, and
bad input exits 2 with one line before anything is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from truthprune.testing.pytest_fixtures import one_thread  # noqa: E402,F401  (autouse: tiny matmuls on one thread)

_ARGS = ("--nsamples", "8", "--seqlen", "64", "--batch-size", "3", "--device", "cpu", "--quiet")


def _char_tokenizer():
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{chr(32 + i): 3 + i for i in range(95)}}  # < the fixture's 128
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


@pytest.fixture
def tiny_dir(tiny_llama, tmp_path):
    tiny_llama.save_pretrained(tmp_path / "tiny")
    _char_tokenizer().save_pretrained(tmp_path / "tiny")
    return tmp_path / "tiny"


def _prune_in_process(capsys, *args: str) -> str:
    """Run the CLI in this process (torch is already imported here); return its stdout."""
    from truthprune.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["prune", *args])
    out, err = capsys.readouterr()
    assert exc.value.code == 0, err[-3000:]
    return out


def _tensors(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(directory.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def _masks(directory: Path) -> dict[str, torch.Tensor]:
    return {k: v == 0 for k, v in _tensors(directory).items() if k.endswith("proj.weight")}


@pytest.mark.parametrize("pruner", ["wanda", "owl"])
def test_in_memory_and_offload_save_identical_masks(pruner, tiny_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    common = ("--model", str(tiny_dir), "--pruner", pruner, *_ARGS)
    out_mem = _prune_in_process(capsys, *common, "--save", str(tmp_path / "mem"))
    out_off = _prune_in_process(capsys, *common, "--save", str(tmp_path / "off"), "--offload",
                                "--activations-dir", str(tmp_path))
    assert "mode: in memory" in out_mem and "mode: offload" in out_off
    for out in (out_mem, out_off):
        assert "overall sparsity" in out and "per-layer sparsity" in out and "wall time" in out and "saved to" in out

    a, b = _masks(tmp_path / "mem"), _masks(tmp_path / "off")
    assert len(a) == 3 * 7 and sorted(a) == sorted(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    full_a, full_b = _tensors(tmp_path / "mem"), _tensors(tmp_path / "off")
    assert sorted(full_a) == sorted(full_b) and all(torch.equal(full_a[k], full_b[k]) for k in full_a)

    metas = [json.loads((tmp_path / d / "truthprune.json").read_text()) for d in ("mem", "off")]
    assert [m["mode"] for m in metas] == ["memory", "offload"]
    assert metas[0]["per_layer_sparsity"] == metas[1]["per_layer_sparsity"] and len(metas[0]["per_layer_sparsity"]) == 3
    assert metas[0]["overall_sparsity"] == pytest.approx(0.5, abs=0.02)
    assert "eval" not in metas[0]["config"] and metas[1]["config"]["pruner"] == pruner
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(tmp_path / "off")("ab")["input_ids"] == [68, 69]  # tokenizer copied
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs or mapped files left


def test_torchrun_two_processes_match_one(tiny_dir, tmp_path, capsys, monkeypatch):
    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available in this build")
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "truthprune", "prune", "--model", str(tiny_dir), *_ARGS, "--save", str(tmp_path / "dist")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("overall sparsity") == 1  # only rank 0 prints
    assert "2 data-parallel processes (gloo)" in proc.stdout

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    _prune_in_process(capsys, "--model", str(tiny_dir), *_ARGS, "--save", str(tmp_path / "one"))
    a, b = _tensors(tmp_path / "dist"), _tensors(tmp_path / "one")
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "dist" / "truthprune.json").read_text())["world_size"] == 2


def test_nproc_launches_workers_with_clean_output(tiny_dir, tmp_path):
    """--nproc 2: the same data-parallel prune as torchrun, one summary; a bad input is one line and exit 2
    (torchrun would add its 40-line ChildFailedError summary and exit 1)."""
    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available in this build")
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    base = [sys.executable, "-m", "truthprune", "prune", "--model", str(tiny_dir), *_ARGS, "--nproc", "2"]
    proc = subprocess.run([*base, "--save", str(tmp_path / "dist")], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("overall sparsity") == 1 and "2 data-parallel processes (gloo)" in proc.stdout
    assert "ChildFailedError" not in proc.stderr and "elastic" not in proc.stderr
    assert json.loads((tmp_path / "dist" / "truthprune.json").read_text())["world_size"] == 2

    (tmp_path / "taken").mkdir()
    proc = subprocess.run([*base, "--save", str(tmp_path / "taken")], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --save") and "already exists" in lines[0], proc.stderr


def test_torchrun_error_is_printed_by_rank_0_only(tiny_dir, tmp_path):
    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available in this build")
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    (tmp_path / "taken").mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "truthprune", "prune", "--model", str(tiny_dir), *_ARGS, "--save", str(tmp_path / "taken")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(ours) == 1 and "already exists" in ours[0], proc.stderr  # torchrun's own summary follows it


def test_memory_refusal_names_the_fix_and_writes_nothing(tiny_dir, tiny_llama, tmp_path, capsys, monkeypatch):
    from truthprune.cli.main import main
    from truthprune.pruning.engine import memory as mem
    from truthprune.pruning.engine import offload as off

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    est = mem.estimate_memory(mem.ModelShape.from_config(tiny_llama.config), 8, 64, 3)
    monkeypatch.setattr(mem, "available_memory", lambda: est.activations + est.working + est.offload_weights)
    monkeypatch.setattr(off, "available_memory", lambda: 1000)
    for extra, fix in (([], "pass --offload"), (["--offload"], "lower --nsamples")):
        with pytest.raises(SystemExit) as exc:
            main(["prune", "--model", str(tiny_dir), *_ARGS, "--save", str(tmp_path / "out"), *extra])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and "calibration needs" in err and fix in err, err
        assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "some-org/some-model", "--offload", "--save", "out"], "--offload reads a local safetensors checkpoint"),
        (["--model", "m", "--save", "existing"], "already exists; pass --overwrite"),
        (["--model", "m", "--pruner", "tplo", "--offload", "--save", "out"], "--offload cannot compute the truth profile"),
        (["--model", "m"], "needs --save DIR"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message, tmp_path):
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "keep.txt").write_text("mine")
    proc = subprocess.run([sys.executable, "-m", "truthprune", "prune", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]  # nothing written
    assert [p.name for p in (tmp_path / "existing").iterdir()] == ["keep.txt"]


def _tiny_truth_dir(root: Path) -> Path:
    """A cities pair small enough for the tiny model (the truth profile needs true/false sets)."""
    d = root / "truth"
    d.mkdir()
    rows_aff, rows_neg = ["statement,label"], ["statement,label"]
    for i in range(24):
        city, a, b = f"Town{i}", f"Land{i}", f"Land{(i + 7) % 24}"
        rows_aff += [f"The city of {city} is in {a}.,1", f"The city of {city} is in {b}.,0"]
        rows_neg += [f"The city of {city} is not in {a}.,0", f"The city of {city} is not in {b}.,1"]
    (d / "cities.csv").write_text("\n".join(rows_aff) + "\n")
    (d / "neg_cities.csv").write_text("\n".join(rows_neg) + "\n")
    return d


@pytest.mark.parametrize("allocator", ["owl", "tplo"])
def test_any_pruner_composes_with_any_allocator(allocator, tiny_dir, tmp_path, capsys, monkeypatch):
    """--pruner magnitude --allocator owl|tplo: magnitude masks at the allocator's per-layer sparsities."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    extra = ["--truth-data", str(_tiny_truth_dir(tmp_path))] if allocator == "tplo" else []
    _prune_in_process(capsys, "--model", str(tiny_dir), "--pruner", "magnitude", "--allocator", allocator, *_ARGS,
                      *extra, "--save", str(tmp_path / "out"))
    meta = json.loads((tmp_path / "out" / "truthprune.json").read_text())
    assert meta["config"]["pruner"] == "magnitude" and meta["config"]["allocator"] == allocator
    per_layer = meta["per_layer_sparsity"]
    assert len(set(round(s, 3) for s in per_layer)) > 1  # not uniform: the allocator was applied
    # magnitude masks: within each row the pruned weights are the smallest |W| of the original row
    dense = _tensors(tiny_dir)
    pruned = _tensors(tmp_path / "out")
    name = next(k for k in pruned if k.endswith("mlp.down_proj.weight"))
    w, p = dense[name].abs(), pruned[name]
    for row_w, row_p in zip(w, p):
        zeros = row_p == 0
        if zeros.any() and (~zeros).any():
            assert row_w[zeros].max() <= row_w[~zeros].min()
