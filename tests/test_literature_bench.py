"""bench/literature_ppl.py end to end on a tiny random Llama: every method planned first, pruned
in one process from the same loaded model, perplexities paired against the first method, the JSON
written after each method. It reads the run's state through the public API only, so a change of
that API that breaks the bench fails here rather than hours into a measurement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from retention_data import write_text, write_truth_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_literature_bench_on_a_tiny_model(tmp_path):
    from truthprune.testing.fixtures import save_tiny_checkpoint

    model = save_tiny_checkpoint(tmp_path / "model", seed=0, layers=2)
    text = write_text(tmp_path / "text.txt")
    truth = write_truth_dir(tmp_path / "truth", n=12)
    out = tmp_path / "lit.json"
    cmd = [sys.executable, str(REPO / "bench" / "literature_ppl.py"), "--model", str(model), "--sparsity", "0.5",
           "--nsamples", "4", "--seqlen", "32", "--ppl-windows", "3", "--calibration-text", str(text),
           "--ppl-text", str(text), "--truth-data", str(truth), "--batch-size", "2", "--json", str(out),
           "--method", "wanda=--pruner wanda", "--method", "mag=--pruner magnitude", "--check-cli"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert p.returncode == 0, p.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert list(doc["methods"]) == ["wanda", "mag"]
    wanda, mag = doc["methods"]["wanda"], doc["methods"]["mag"]
    assert len(wanda["window_nll"]) == len(mag["window_nll"]) == 3
    assert wanda["ppl_ratio"]["ratio"] == 1.0 and wanda["time_ratio"] == 1.0
    r = mag["ppl_ratio"]
    assert r["lo"] <= r["ratio"] <= r["hi"] and abs(r["ratio"] - mag["ppl"] / wanda["ppl"]) < 1e-9 * r["ratio"]
    assert abs(mag["overall"] - 0.5) < 0.02  # the sparsity asked for
    assert mag["prune_wall_s"] > 0  # recorded (no bound: speed lives in the bench's ratios)
