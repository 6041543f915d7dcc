"""Ctrl-C safety: an interrupted ``run`` or ``sweep`` leaves no half-written output and can be rerun
into the same path. Real subprocesses get a real SIGINT while they evaluate, on a tiny random
Llama saved to disk with the SmolLM2 tokenizer (so the whole pipeline runs, in seconds).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# the child restores Python's SIGINT handler: a parent that ignores SIGINT (nohup, CI) must not
# turn the test into a no-op
CHILD = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler);"
    "from truthprune.cli.main import main; main(sys.argv[1:])"
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny Llama + the SmolLM2 tokenizer saved with save_pretrained, and two small texts."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from truthprune import UserError
    from truthprune.models.loading import resolve_model_path

    try:
        tok_path, _ = resolve_model_path("smollm2-135m")
    except UserError as err:
        pytest.skip(f"needs the SmolLM2 tokenizer from the embedded model: {err}")
    root = tmp_path_factory.mktemp("interrupt")
    tokenizer = AutoTokenizer.from_pretrained(tok_path)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    LlamaForCausalLM(cfg).save_pretrained(root / "tiny")
    tokenizer.save_pretrained(root / "tiny")
    from pydoc_data.topics import topics

    texts = [topics[k] for k in sorted(topics)]
    (root / "calib.txt").write_text("\n\n".join(texts[:40]))
    (root / "eval.txt").write_text("\n\n".join(texts[40:])[:12000])  # ~3k tokens: a few seconds per evaluation
    return root


def _args(root: Path, out: str, *extra: str) -> list[str]:
    return ["--model", str(root / "tiny"), "--calibration", "text", "--calibration-opt", f"path={root / 'calib.txt'}",
            "--nsamples", "8", "--seqlen", "64", "--eval", "ppl", "--ppl-data", str(root / "eval.txt"),
            "--device", "cpu", "--quiet", "--out", str(root / out), *extra]


def _start(root: Path, command: str, args: list[str], cache: Path) -> subprocess.Popen:
    env = {**os.environ, "TRUTHPRUNE_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    # -v: the stage log the markers below wait for (the runs are --quiet: no stage lines)
    return subprocess.Popen([sys.executable, "-c", CHILD, "-v", command, *args], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proc: subprocess.Popen, markers: list[str], timeout: float = 300) -> str:
    """Read stderr until each marker has appeared in order; return what was read."""
    seen, deadline, pending = [], time.monotonic() + timeout, list(markers)
    while pending:
        ready, _, _ = select.select([proc.stderr], [], [], max(0.0, deadline - time.monotonic()))
        line = proc.stderr.readline() if ready else ""
        if not line:
            proc.kill()
            raise AssertionError(f"child ended or stalled before {pending[0]!r}:\n{''.join(seen)[-3000:]}")
        seen.append(line)
        if pending[0] in line:
            pending.pop(0)
    return "".join(seen)


def _interrupt(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted; no output was left half-written" in err
    return err


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return err


def _entries(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def test_interrupted_run_leaves_nothing_and_reruns(workdir, tmp_path):
    runs = workdir / "runs"
    runs.mkdir(exist_ok=True)
    args = _args(workdir, "runs/a")
    proc = _start(workdir, "run", args, tmp_path / "cache")
    _wait_for(proc, ["stage pruned-eval:"])  # everything computed, nothing written yet
    _interrupt(proc)
    assert _entries(runs) == []  # no report directory, no temp directory

    _finish(_start(workdir, "run", args, tmp_path / "cache"))
    assert _entries(runs) == ["a"]
    report = json.loads((runs / "a" / "report.json").read_text())
    assert report["pruning"]["pruner"] == "wanda" and (runs / "a" / "report.md").is_file()
    old = (runs / "a" / "report.json").read_bytes()

    # an interrupted --overwrite keeps the previous report intact (another sparsity: nothing cached)
    proc = _start(workdir, "run", _args(workdir, "runs/a", "--sparsity", "0.7", "--overwrite"), tmp_path / "cache")
    _wait_for(proc, ["stage pruned-eval:"])
    _interrupt(proc)
    assert _entries(runs) == ["a"] and (runs / "a" / "report.json").read_bytes() == old


def test_interrupted_sweep_keeps_finished_runs_and_resumes(workdir, tmp_path):
    args = _args(workdir, "sweep", "--pruner", "wanda,magnitude", "--sparsity", "0.5")
    proc = _start(workdir, "sweep", args, tmp_path / "cache")
    _wait_for(proc, ["[2/2] magnitude-0.5", "stage pruned-eval:"])
    _interrupt(proc)
    assert _entries(workdir / "sweep") == ["wanda-0.5"]  # the finished run only: no compare/, no temp dir
    first = (workdir / "sweep" / "wanda-0.5" / "report.json").read_bytes()

    err = _finish(_start(workdir, "sweep", args, tmp_path / "cache"))
    assert "wanda-0.5: reusing the finished run" in err
    assert _entries(workdir / "sweep") == ["compare", "magnitude-0.5", "wanda-0.5"]
    assert (workdir / "sweep" / "wanda-0.5" / "report.json").read_bytes() == first
    rows = json.loads((workdir / "sweep" / "compare" / "compare.json").read_text())["rows"]
    assert [r["run"] for r in rows] == ["dense", "wanda-0.5", "magnitude-0.5"]
    assert all(isinstance(r["ppl"], float) for r in rows)


def test_shared_model_restores_the_dense_weights(workdir):
    """The sweep's model reuse: after pruning, the next run gets the exact dense weights back."""
    from truthprune.run.config import RunConfig
    from truthprune.run.sweep import SharedModel

    cfg = RunConfig(model=str(workdir / "tiny"), device="cpu", seqlen=64)
    shared = SharedModel()
    loaded = shared(cfg)
    dense_fp = loaded.fingerprint
    for p in loaded.model.parameters():
        p.data.zero_()
    assert loaded.fingerprint == dense_fp  # cached until invalidated, as the pipeline does after pruning
    loaded.invalidate_fingerprint()
    assert loaded.fingerprint != dense_fp
    again = shared(cfg)
    assert again is loaded and again.fingerprint == dense_fp
    with pytest.raises(RuntimeError, match="shares one model"):
        shared(cfg.model_copy(update={"dtype": "bfloat16"}))
