"""sparc3 as a user runs it: `truthprune prune` composes with --allocator owl and tplo, the same
command gives the same checkpoint, target=truth changes the masks, --offload and a missing build
set are refused before any model loads (exit 2, one line, nothing written)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from truthprune.testing import save_tiny_checkpoint

_ARGS = ("--pruner", "sparc3", "--nsamples", "4", "--seqlen", "32", "--batch-size", "4", "--device", "cpu", "--quiet")


def _truth_dir(tmp_path):
    d = tmp_path / "truth"
    d.mkdir()
    for name, neg in (("cities", ""), ("neg_cities", " not")):
        rows = ["statement,label"] + [f"The city of C{i} is{neg} in K{i % 7}.,{(i + (neg != '')) % 2}" for i in range(30)]
        (d / f"{name}.csv").write_text("\n".join(rows) + "\n")
    return d


def _main(*args):
    from truthprune.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(list(args))
    return exc.value.code


def _prune(capsys, *args):
    code = _main("prune", *args)
    out = capsys.readouterr()
    assert code in (0, None), out.err[-2000:]
    return out.out


def _weights(path):
    return {k: v for f in sorted(path.glob("*.safetensors")) for k, v in load_file(f).items()}


@pytest.fixture
def model(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    return save_tiny_checkpoint(tmp_path / "tiny")


def test_deterministic_and_composes_with_owl_and_tplo(model, tmp_path, capsys):
    truth = str(_truth_dir(tmp_path))
    common = ("--model", str(model), "--truth-data", truth, *_ARGS)
    _prune(capsys, *common, "--save", str(tmp_path / "a"))
    _prune(capsys, *common, "--save", str(tmp_path / "b"))
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    for allocator in ("owl", "tplo"):
        _prune(capsys, *common, "--allocator", allocator, "--save", str(tmp_path / allocator))
        meta = json.loads((tmp_path / allocator / "truthprune.json").read_text())
        assert meta["config"]["pruner"] == "sparc3" and meta["config"]["allocator"] == allocator
        assert len({round(s, 3) for s in meta["per_layer_sparsity"]}) > 1


def test_truth_target_changes_the_masks(model, tmp_path, capsys):
    truth = str(_truth_dir(tmp_path))
    common = ("--model", str(model), "--truth-data", truth, *_ARGS, "--pruner-opt", "build_sets=[\"cities\",\"neg_cities\"]")
    _prune(capsys, *common, "--save", str(tmp_path / "text"))
    _prune(capsys, *common, "--pruner-opt", "target=truth", "--pruner-opt", "probe_layer=1", "--save", str(tmp_path / "mixed"))
    text, mixed = _weights(tmp_path / "text"), _weights(tmp_path / "mixed")
    changed = [k for k in text if "layers." in k and not torch.equal(text[k] == 0, mixed[k] == 0)]
    assert any(".0." in k or ".1." in k for k in changed)  # the probe reads layer 1: layers 0-1 are re-scored
    assert not any(".layers.2." in k for k in changed)  # above the probe layer: text relevance only


def test_offload_is_refused_at_plan_time(model, tmp_path, capsys):
    code = _main("prune", "--model", str(model), *_ARGS, "--offload", "--save", str(tmp_path / "x"))
    err = capsys.readouterr().err
    assert code == 2 and "drop --offload" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_unknown_build_set_fails_at_plan_time(model, tmp_path, capsys):
    code = _main("prune", "--model", str(model), "--truth-data", str(_truth_dir(tmp_path)), *_ARGS, "--pruner-opt", "target=truth",
                 "--pruner-opt", "build_sets=[\"animal_class\"]", "--save", str(tmp_path / "x"))
    err = capsys.readouterr().err
    assert code == 2 and "build_sets" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()
