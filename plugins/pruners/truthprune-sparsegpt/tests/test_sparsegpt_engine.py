"""sparsegpt through truthprune's engine and CLI on the tiny random Llama: the engine hands it the
Gram statistic and applies its updated weights; it composes with the uniform, owl and tplo
allocators and with N:M; `truthprune prune` gives the same checkpoint in memory, with --offload,
and under a 2-process torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from truthprune import decoder_layers, get_registry, prunable_linears, prune_model
from truthprune_sparsegpt import SparseGPTPruner, obs_prune, pruned_total

_ARGS = ("--pruner", "sparsegpt", "--nsamples", "8", "--seqlen", "64", "--batch-size", "3", "--device", "cpu", "--quiet")


class _Recording(SparseGPTPruner):
    """sparsegpt that keeps what the engine gave it, to recompute the answer independently."""

    name = "sparsegpt-recording"

    def __init__(self, config=None):
        super().__init__(config)
        self.calls = []

    def prune(self, weight, stats, target):
        self.calls.append((weight.detach().clone(), stats, target))
        return super().prune(weight, stats, target)


def _linears(model):
    return [lin for layer in decoder_layers(model) for lin in prunable_linears(layer).values()]


def test_engine_applies_obs_weights_from_the_gram_statistic(tiny_llama, tiny_calibration):
    dense = [lin.weight.detach().clone() for lin in _linears(tiny_llama)]
    pruner = _Recording()
    report = prune_model(tiny_llama, tiny_calibration, pruner, get_registry().create("allocator", "uniform"), 0.5,
                         batch_size=3, quiet=True)
    assert len(pruner.calls) == len(dense) == 3 * 7
    for lin, before, (weight, stats, target) in zip(_linears(tiny_llama), dense, pruner.calls):
        assert torch.equal(weight, before) and stats.gram is not None and stats.n_tokens == 8 * 64
        expect_w, expect_mask = obs_prune(weight, 2 * stats.gram.double() / stats.n_tokens, target)
        assert torch.equal(lin.weight.detach(), expect_w)
        assert int((lin.weight == 0).sum()) == int(expect_mask.sum()) == pruned_total(*before.shape, 0.5)
        kept = ~expect_mask
        assert not torch.equal(lin.weight.detach()[kept], before[kept])  # surviving weights were updated
    assert report.overall == pytest.approx(0.5)


@pytest.mark.parametrize("allocator, extra", [("owl", {}), ("tplo", {"truth_profile": [0.2, 0.3, 0.5]})])
def test_composes_with_allocators(allocator, extra, tiny_llama, tiny_calibration):
    reg = get_registry()
    report = prune_model(tiny_llama, tiny_calibration, reg.create("pruner", "sparsegpt"),
                         reg.create("allocator", allocator, {"lam": 0.1}), 0.5, batch_size=4, quiet=True, **extra)
    assert len(set(round(s, 4) for s in report.allocation)) > 1  # the allocator's sparsities, not uniform
    for layer, s in zip(decoder_layers(tiny_llama), report.allocation):
        for lin in prunable_linears(layer).values():
            assert int((lin.weight == 0).sum()) == pruned_total(*lin.weight.shape, s)


def test_two_four_through_engine(tiny_llama, tiny_calibration):
    reg = get_registry()
    prune_model(tiny_llama, tiny_calibration, reg.create("pruner", "sparsegpt"), reg.create("allocator", "uniform"), 0.5,
                nm=(2, 4), batch_size=4, quiet=True)
    for lin in _linears(tiny_llama):
        w = lin.weight.detach()
        assert ((w == 0).reshape(w.shape[0], -1, 4).sum(-1) == 2).all()


def _prune_in_process(capsys, *args: str) -> str:
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


def _assert_same_checkpoint(a: Path, b: Path) -> None:
    ta, tb = _tensors(a), _tensors(b)
    assert sorted(ta) == sorted(tb)
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


def test_cli_in_memory_equals_offload_and_tplo_runs(tiny_dir, tiny_truth_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    common = ("--model", str(tiny_dir), *_ARGS)
    _prune_in_process(capsys, *common, "--save", str(tmp_path / "mem"))
    out = _prune_in_process(capsys, *common, "--save", str(tmp_path / "off"), "--offload", "--activations-dir", str(tmp_path))
    assert "mode: offload" in out
    _assert_same_checkpoint(tmp_path / "mem", tmp_path / "off")
    dense, pruned = _tensors(tiny_dir), _tensors(tmp_path / "mem")
    name = next(k for k in pruned if k.endswith("mlp.down_proj.weight"))
    assert not torch.equal(pruned[name][pruned[name] != 0], dense[name][pruned[name] != 0])  # OBS-updated weights saved

    _prune_in_process(capsys, *common, "--allocator", "tplo", "--truth-data", str(tiny_truth_dir), "--save", str(tmp_path / "tplo"))
    meta = json.loads((tmp_path / "tplo" / "truthprune.json").read_text())
    assert meta["config"]["pruner"] == "sparsegpt" and meta["config"]["allocator"] == "tplo"
    assert len(set(round(s, 3) for s in meta["per_layer_sparsity"])) > 1


def test_torchrun_two_processes_match_one(tiny_dir, tmp_path, capsys, monkeypatch):
    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available in this build")
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "truthprune", "prune", "--model", str(tiny_dir), *_ARGS, "--save", str(tmp_path / "dist")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 data-parallel processes (gloo)" in proc.stdout

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    _prune_in_process(capsys, "--model", str(tiny_dir), *_ARGS, "--save", str(tmp_path / "one"))
    _assert_same_checkpoint(tmp_path / "dist", tmp_path / "one")
