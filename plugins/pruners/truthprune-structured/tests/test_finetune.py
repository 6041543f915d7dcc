"""LoRA recovery: deterministic for a seed, resumable to bit-identical weights after an interruption,
merged into a plain checkpoint; plan-time errors; it lowers held-out perplexity on the tiny model."""

from __future__ import annotations

import json

import pytest
import torch

from truthprune_structured.lora import LoraSettings, batch_indices, lr_at, train_lora


@pytest.fixture
def windows():
    from truthprune import CalibrationSamples

    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, 40, (10, 16), generator=g)
    mask = torch.ones_like(ids)
    mask[9, :4] = 0  # a left-padded window: padding is not a label
    return CalibrationSamples(ids, mask)


_S = LoraSettings(steps=6, lr=5e-3, rank=4, alpha=8.0, dropout=0.1, batch_size=3, warmup=2, seed=5)


class Interrupted(Exception):
    pass


def _stop_at(step):
    def on_step(t):
        if t == step:
            raise Interrupted

    return on_step


def _ctrl_c_at(step):
    def on_step(t):
        if t == step:
            raise KeyboardInterrupt

    return on_step


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_same_seed_same_weights_and_merged_into_plain_linears(make_model, windows):
    a, sa = train_lora(make_model(), windows, _S)
    b, sb = train_lora(make_model(), windows, _S)
    assert sa.losses == sb.losses
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not any("lora" in k for k in wa)  # merged: a plain Llama state dict
    assert set(wa) == set(make_model().state_dict())
    c, _ = train_lora(make_model(), windows, LoraSettings(**{**_S.__dict__, "seed": 6}))
    assert not all(torch.equal(wa[k], v) for k, v in _weights(c).items())


def test_resume_after_interruption_gives_identical_weights(make_model, windows, tmp_path):
    full, s_full = train_lora(make_model(), windows, _S, tmp_path / "a", checkpoint_every=2)
    ckpt = tmp_path / "b"
    with pytest.raises(Interrupted):  # killed after step 5; the last checkpoint is step 4
        train_lora(make_model(), windows, _S, ckpt, checkpoint_every=2, on_step=_stop_at(5))
    assert torch.load(ckpt / "state.pt", weights_only=False)["step"] == 4
    resumed, s_res = train_lora(make_model(), windows, _S, ckpt, checkpoint_every=2, resume=True)
    assert s_res.resumed_from == 4 and s_res.losses == s_full.losses
    wf, wr = _weights(full), _weights(resumed)
    assert all(torch.equal(wf[k], wr[k]) for k in wf)


def test_resume_refuses_other_settings(make_model, windows, tmp_path):
    from truthprune import UserError

    with pytest.raises(Interrupted):
        train_lora(make_model(), windows, _S, tmp_path, checkpoint_every=2, on_step=_stop_at(3))
    with pytest.raises(UserError, match="lr"):
        train_lora(make_model(), windows, LoraSettings(**{**_S.__dict__, "lr": 1e-3}), tmp_path, 2, resume=True)


def test_schedule_and_batches_are_pure_functions():
    assert [lr_at(t, _S) for t in (0, 1)] == pytest.approx([2.5e-3, 5e-3])
    assert lr_at(5, _S) == pytest.approx(5e-3 * (0.1 + 0.9 * 0.5 * (1 + __import__("math").cos(__import__("math").pi * 0.75))))
    seen = [i for t in range(4) for i in batch_indices(10, 5, t, 0)]
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))  # each epoch a permutation
    assert batch_indices(10, 5, 3, 0) == batch_indices(10, 5, 3, 0)


def _finetune_args(tiny_dir, text_file, out, *extra):
    return ("finetune", "--model", str(tiny_dir), "--save", str(out), "--calibration", "text", "--calibration-opt",
            f"path={text_file}", "--nsamples", "8", "--seqlen", "32", "--steps", "6", "--lr", "1e-2", "--rank", "4",
            "--batch-size", "2", "--checkpoint-every", "2", "--device", "cpu", "--quiet", *extra)


def test_cli_interrupted_then_resumed_equals_uninterrupted(tiny_dir, text_file, tmp_path, cli, monkeypatch):
    from safetensors.torch import load_file

    code, out, err = cli(*_finetune_args(tiny_dir, text_file, tmp_path / "full", "--eval-data", str(text_file), "--eval-seqlen", "64", "--eval-max-windows", "30"))
    assert code == 0, err[-2000:]
    meta = json.loads((tmp_path / "full" / "truthprune.json").read_text())["finetune"]
    assert meta["ppl_after"]["ppl"] < meta["ppl_before"]["ppl"]  # recovery training lowers perplexity
    assert not (tmp_path / "full.lora-resume").exists()  # checkpoints removed after the final save

    import truthprune_structured.lora as lora

    real = lora.train_lora
    monkeypatch.setattr(lora, "train_lora", lambda *a, **k: real(*a, **k, on_step=_ctrl_c_at(3)))  # Ctrl-C after step 3
    code, _, err = cli(*_finetune_args(tiny_dir, text_file, tmp_path / "resumed"))
    assert code == 130 and not (tmp_path / "resumed").exists()
    monkeypatch.setattr(lora, "train_lora", real)
    code, _, err = cli(*_finetune_args(tiny_dir, text_file, tmp_path / "resumed"))
    assert code == 2 and "--resume" in err  # a leftover checkpoint is never silently ignored
    code, _, err = cli(*_finetune_args(tiny_dir, text_file, tmp_path / "resumed", "--resume"))
    assert code == 0, err[-2000:]
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    meta = json.loads((tmp_path / "resumed" / "truthprune.json").read_text())["finetune"]
    assert meta["resumed_from"] == 2


def test_cli_plan_time_errors(tiny_dir, text_file, tmp_path, cli):
    code, _, err = cli("finetune", "--model", str(tiny_dir), "--calibration", "text", "--calibration-opt", f"path={text_file}")
    assert code == 2 and "--save" in err
    code, _, err = cli(*_finetune_args(tiny_dir, tmp_path / "missing.txt", tmp_path / "x"))
    assert code == 2 and "missing.txt" in err and not (tmp_path / "x").exists()
    code, _, err = cli(*_finetune_args(tiny_dir, text_file, tmp_path / "x", "--eval-data", str(tmp_path / "nope.txt")))
    assert code == 2 and "--eval-data" in err
