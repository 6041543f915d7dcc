"""truthaware as a user runs it: `truthprune prune` in memory and with --offload give the same
checkpoint (the statement streams reach the engine in both modes), `--allocator tplo` composes,
no --truth-data falls back to the generated sets, and a bad build set fails before any work."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from truthprune.testing import check_pruner, save_tiny_checkpoint

_ARGS = ("--pruner", "truthaware", "--pruner-opt", "per_set=20", "--nsamples", "8", "--seqlen", "64",
         "--batch-size", "4", "--device", "cpu", "--quiet")


def _truth_dir(tmp_path):
    d = tmp_path / "truth"
    d.mkdir()
    for name, neg in (("cities", ""), ("neg_cities", " not")):
        rows = ["statement,label"] + [f"The city of C{i} is{neg} in K{i % 7}.,{(i + (neg != '')) % 2}" for i in range(30)]
        (d / f"{name}.csv").write_text("\n".join(rows) + "\n")
    return d


def _prune(capsys, *args):
    from truthprune.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["prune", *args])
    out = capsys.readouterr()
    assert exc.value.code in (0, None), out.err[-2000:]
    return out.out


def _weights(path):
    return {k: v for f in sorted(path.glob("*.safetensors")) for k, v in load_file(f).items()}


def test_contract():
    check_pruner("truthaware")


def test_in_memory_equals_offload_and_composes_with_tplo(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    model = save_tiny_checkpoint(tmp_path / "tiny")
    truth = str(_truth_dir(tmp_path))
    common = ("--model", str(model), "--truth-data", truth, *_ARGS)
    _prune(capsys, *common, "--save", str(tmp_path / "mem"))
    _prune(capsys, *common, "--save", str(tmp_path / "off"), "--offload")
    a, b = _weights(tmp_path / "mem"), _weights(tmp_path / "off")
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)

    _prune(capsys, "--model", str(model), "--truth-data", truth, *_ARGS, "--pruner-opt", "gamma=0",
           "--pruner-opt", "delta=0", "--save", str(tmp_path / "plain"))
    plain = _weights(tmp_path / "plain")
    assert any(not torch.equal(a[k], plain[k]) for k in a)  # the statements changed the result

    _prune(capsys, *common, "--allocator", "tplo", "--save", str(tmp_path / "tplo"))
    meta = json.loads((tmp_path / "tplo" / "truthprune.json").read_text())
    assert meta["config"]["pruner"] == "truthaware" and meta["config"]["allocator"] == "tplo"
    assert len({round(s, 3) for s in meta["per_layer_sparsity"]}) > 1


def test_without_truth_data_uses_generated_sets(tmp_path, capsys, monkeypatch, caplog):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    model = save_tiny_checkpoint(tmp_path / "tiny")
    _prune(capsys, "--model", str(model), *_ARGS, "--save", str(tmp_path / "gen"))
    assert (tmp_path / "gen" / "truthprune.json").is_file()


def test_unknown_build_set_fails_at_plan_time(tmp_path, capsys):
    from truthprune.cli.main import main

    model = save_tiny_checkpoint(tmp_path / "tiny")
    with pytest.raises(SystemExit) as exc:
        main(["prune", "--model", str(model), "--truth-data", str(_truth_dir(tmp_path)), *_ARGS,
              "--pruner-opt", "build_sets=[\"animal_class\"]", "--save", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "build_sets" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_memory_check_before_loading_counts_statements_and_the_dense_copy(tmp_path, capsys, monkeypatch):
    """The check before the model loads sees the statement streams and the dense-target copy: with
    memory for exactly the plain text estimate, target=dense is refused (exit 2, one line, nothing
    loaded or written) while sparsegpt, which needs neither, runs."""
    from transformers import AutoConfig

    from truthprune.cli.main import main
    from truthprune.models import loading
    from truthprune.pruning.engine import memory as mem

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    model = save_tiny_checkpoint(tmp_path / "tiny")
    plain = mem.estimate_memory(mem.ModelShape.from_config(AutoConfig.from_pretrained(model)), 8, 64, 4)
    monkeypatch.setattr(mem, "available_memory", lambda: plain.total)
    loads = []
    real_load = loading.load_model
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    capsys.readouterr()  # the tiny checkpoint's own save progress is not the command's output
    with pytest.raises(SystemExit) as exc:
        main(["prune", "--model", str(model), "--truth-data", str(_truth_dir(tmp_path)), *_ARGS,
              "--pruner-opt", "target=dense", "--save", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "calibration needs" in err[0], err
    assert loads == [] and not (tmp_path / "x").exists()
    _prune(capsys, "--model", str(model), *_ARGS[4:], "--pruner", "sparsegpt", "--save", str(tmp_path / "sgpt"))
    assert len(loads) == 1 and (tmp_path / "sgpt" / "truthprune.json").is_file()


@pytest.mark.parametrize("offload", [False, True])
def test_statements_are_tokenised_once_per_prune(tmp_path, capsys, monkeypatch, offload):
    """In memory, the memory check builds the statement streams to size them and the calibrate
    stage reuses them instead of tokenising every statement a second time. With --offload there is
    no such check (offload is what it suggests), so calibration builds them, once."""
    import truthprune_truthaware.streams as streams

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    built = []
    real = streams.statement_streams
    monkeypatch.setattr(streams, "statement_streams", lambda *a, **k: built.append(1) or real(*a, **k))
    model = save_tiny_checkpoint(tmp_path / "tiny")
    _prune(capsys, "--model", str(model), "--truth-data", str(_truth_dir(tmp_path)), *_ARGS,
           "--save", str(tmp_path / "out"), *(["--offload"] if offload else []))
    assert built == [1] and (tmp_path / "out" / "truthprune.json").is_file()
