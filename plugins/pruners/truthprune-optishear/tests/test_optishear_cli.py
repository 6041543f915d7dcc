"""OptiShear as a user runs it: `truthprune optishear search` writes a state that `truthprune
allocate`, `--pruner optishear --pruner-opt from=` and `--allocator optishear --allocator-opt from=`
read; the result prunes the same in memory and with --offload, composes with --allocator owl and
tplo, and bad inputs fail before any model loads (exit 2, one line)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from truthprune.testing import save_tiny_checkpoint

_PRUNE = ("--nsamples", "4", "--seqlen", "32", "--batch-size", "4", "--device", "cpu", "--quiet")


def _main(capsys, *args):
    from truthprune.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


def _weights(path):
    return {k: v for f in sorted(path.glob("*.safetensors")) for k, v in load_file(f).items()}


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One small search on the tiny checkpoint (shared by the tests of this module)."""
    d = tmp_path_factory.mktemp("optishear")
    model = save_tiny_checkpoint(d / "tiny")
    state = d / "search.json"
    out = subprocess.run([sys.executable, "-m", "truthprune", "optishear", "search", "--model", str(model), "--state", str(state),
                          "--sparsity", "0.6", "--population", "4", "--trials", "8", "--knots", "2", "--nsamples", "4",
                          "--seqlen", "32", "--device", "cpu", "--quiet"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "best of 8 candidates" in out.stdout
    return model, state


def test_state_file_is_a_finished_search_that_allocate_reads(searched, capsys):
    model, state = searched
    data = json.loads(state.read_text())
    assert data["done"] and len(data["evaluations"]) == 8 and data["target_sparsity"] == 0.6
    assert len(data["optishear_sparsity"]) == 3 and sum(data["optishear_sparsity"]) / 3 == pytest.approx(0.6)
    code, out, err = _main(capsys, "allocate", "--allocator", "optishear", "--stats", str(state), "--json")
    assert code == 0, err
    assert json.loads(out)["sparsity"] == pytest.approx(data["optishear_sparsity"])
    code, out, _ = _main(capsys, "allocate", "--allocator", "optishear", "--stats", str(state), "--sparsity", "0.5", "--json")
    assert json.loads(out)["sparsity"] == pytest.approx([s - 0.1 for s in data["optishear_sparsity"]])


def test_result_prunes_the_same_in_memory_and_offloaded(searched, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    model, state = searched
    args = ("prune", "--model", str(model), "--pruner", "optishear", "--pruner-opt", f"from={state}", "--allocator", "optishear",
            "--allocator-opt", f"from={state}", "--sparsity", "0.6", *_PRUNE)
    assert _main(capsys, *args, "--save", str(tmp_path / "mem"))[0] == 0
    assert _main(capsys, *args, "--offload", "--save", str(tmp_path / "off"))[0] == 0
    a, b = _weights(tmp_path / "mem"), _weights(tmp_path / "off")
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    meta = json.loads((tmp_path / "mem" / "truthprune.json").read_text())
    assert meta["allocation"] == pytest.approx(json.loads(state.read_text())["optishear_sparsity"], abs=1e-12)


@pytest.mark.parametrize("allocator", ["owl", "tplo"])
def test_metric_composes_with_owl_and_tplo(searched, tmp_path, capsys, monkeypatch, allocator):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    model, state = searched
    code, _, err = _main(capsys, "prune", "--model", str(model), "--pruner", "optishear", "--pruner-opt", f"from={state}",
                         "--allocator", allocator, *_PRUNE, "--save", str(tmp_path / allocator))
    assert code == 0, err
    meta = json.loads((tmp_path / allocator / "truthprune.json").read_text())
    assert meta["config"]["allocator"] == allocator and len({round(s, 3) for s in meta["per_layer_sparsity"]}) > 1


@pytest.mark.parametrize("args, fragment", [
    (("--pruner", "optishear", "--pruner-opt", "from=missing.json"), "does not exist"),
    (("--pruner", "wanda", "--allocator", "optishear"), "pass --allocator-opt from=FILE"),
    (("--pruner", "optishear", "--pruner-opt", "from=STATE", "--pruner-opt", "beta=2"), "either from=FILE or beta/gamma"),
])
def test_bad_options_fail_before_the_model_loads(searched, tmp_path, capsys, args, fragment):
    model, state = searched
    args = tuple(a.replace("STATE", str(state)) for a in args)
    code, _, err = _main(capsys, "prune", "--model", str(model), *args, *_PRUNE, "--save", str(tmp_path / "x"))
    assert code == 2 and fragment in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_search_refuses_bad_settings_before_loading(tmp_path, capsys):
    code, _, err = _main(capsys, "optishear", "search", "--model", "no-such-model", "--state", str(tmp_path / "s.json"),
                         "--sparsity", "0.8", "--span", "0.2")
    assert code == 2 and "--span" in err
    code, _, err = _main(capsys, "optishear", "search", "--model", "no-such-model", "--state", str(tmp_path / "s.json"),
                         "--population", "8", "--trials", "4")
    assert code == 2 and "--trials 4" in err
