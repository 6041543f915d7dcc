"""What a new user meets in the first hour: the statement budget, the retention interval, progress
output in a log, --dry-run, help text, saved-file modes, `config show`, `plugins` at 80 columns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from truthprune import StatementSet


def _cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "truthprune", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env=env)


# ----------------------------------------------------------------------------- statement budget


def _pair(n: int = 60) -> list[StatementSet]:
    labels = np.array([i % 2 for i in range(n)])
    aff = StatementSet("things", [f"Thing {i} is blue." for i in range(n)], labels)
    neg = StatementSet("neg_things", [f"Thing {i} is not blue." for i in range(n)], 1 - labels)
    return [aff, neg]


def test_budget_keeps_twins_aligned_balanced_and_seeded():
    from truthprune.truth.probing.runner import cap_statement_sets

    sets = _pair(60)
    capped, rows = cap_statement_sets(sets, 40, seed=3)
    assert [len(s) for s in capped] == [40, 40]
    np.testing.assert_array_equal(rows["things"], rows["neg_things"])  # a statement and its negation stay together
    assert capped[1].statements == [sets[1].statements[i] for i in rows["things"]]
    assert capped[0].labels.sum() == 20  # class-balanced
    again, _ = cap_statement_sets(sets, 40, seed=3)
    assert again[0].statements == capped[0].statements  # same seed, same sample
    assert cap_statement_sets(sets, 40, seed=4)[0][0].statements != capped[0].statements
    whole, _ = cap_statement_sets(sets, 0, seed=3)
    assert whole[0] is sets[0]  # 0 = every statement


def test_budget_below_the_minimum_is_refused_at_plan_time():
    from truthprune import UserError
    from truthprune.run.config import build_config

    with pytest.raises(UserError, match="use 40 or more"):
        build_config(None, {"truth_max_per_set": 10})
    assert build_config(None, {}).truth_max_per_set == 100
    assert build_config(None, {"truth_max_per_set": 0}).truth_max_per_set == 0


# ----------------------------------------------------------------------------- retention interval


def _outcomes(dense_acc: float, pruned_acc: float, n: int = 50, seeds: int = 5, sets: int = 4) -> dict:
    rng = np.random.default_rng(0)
    out = {k: np.empty((seeds, sets), dtype=object) for k in ("dense", "pruned", "transfer")}
    for r in range(seeds):
        for j in range(sets):
            out["dense"][r, j] = rng.random(n) < dense_acc
            out["pruned"][r, j] = rng.random(n) < pruned_acc
            out["transfer"][r, j] = rng.random(n) < 0.5
    return out


def test_retention_point_and_interval():
    from truthprune.truth.probing.retention import bootstrap_retention, retention

    assert retention(0.7, 0.9) == pytest.approx(0.5) and np.isnan(retention(0.7, 0.5))
    res = bootstrap_retention(_outcomes(0.9, 0.7), n_boot=400)
    r = res["retention"]
    d, p = res["dense_accuracy"]["value"], res["pruned_accuracy"]["value"]
    assert r["value"] == pytest.approx((p - 0.5) / (d - 0.5))
    assert r["ci"][0] < r["value"] < r["ci"][1] and r["ci"][1] - r["ci"][0] < 0.4
    assert res["transfer_retention"]["ci"][0] < 0.2  # chance-level transfer: retention near 0
    assert res["accuracy_change"]["ci"][1] < 0  # the drop is measured, paired
    same = {k: _outcomes(0.9, 0.9)["dense"] for k in ("dense", "pruned", "transfer")}
    assert bootstrap_retention(same, n_boot=200)["retention"]["ci"] == [1.0, 1.0]  # identical outcomes: no spread


def test_retention_is_undefined_when_the_dense_probe_is_at_chance():
    from truthprune.truth.probing.retention import bootstrap_retention

    res = bootstrap_retention(_outcomes(0.5, 0.5, n=30), n_boot=200)
    assert res["retention"]["ci"] is None  # no interval is claimed for a ratio over noise


# ----------------------------------------------------------------------------- progress


def test_stage_lines_and_time_left(capsys, monkeypatch):
    from truthprune.progress import StageLine, bar, format_seconds

    monkeypatch.setenv("TRUTHPRUNE_PROGRESS", "0")
    assert [format_seconds(s) for s in (4.25, 42, 185, 3725)] == ["4.2 s", "42 s", "3 min 5 s", "1 h 2 min"]
    lines = StageLine(["load", "prune", "save"], {"load": 2.0, "prune": 10.0, "save": 2.0})
    lines.done("load", 4.0, "tiny")  # twice as slow as estimated: the rest is scaled
    assert lines.left("load") == pytest.approx(24.0)
    with bar("work", 3) as advance:  # not a terminal: no bar at all
        advance(3)
    lines.done("prune", 20.0)
    err = capsys.readouterr().err.splitlines()
    assert err == ["[1/3] load               4.0 s  (tiny; about 24 s left)", "[2/3] prune               20 s  (about 4.0 s left)"]
    StageLine(["load"], quiet=True).done("load", 1.0)
    assert capsys.readouterr().err == ""


def test_a_piped_run_prints_one_clean_line_per_stage(tiny_dir_factory, tmp_path):
    model = tiny_dir_factory(tmp_path)
    common = ["run", "--model", str(model), "--seqlen", "64", "--nsamples", "8", "--truth-max-per-set", "40",
              "--ppl-max-windows", "4", "--calibration", "pydoc"]
    proc = _cli(*common, "--out", str(tmp_path / "r1"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = proc.stderr
    assert "\r" not in err and "\x1b" not in err  # no carriage-return or terminal debris in a log
    lines = err.splitlines()
    assert "" not in lines, err  # no blank lines
    stages = [line for line in lines if line.startswith("[")]
    assert [s.split()[1] for s in stages] == ["load", "dense-eval", "dense-truth", "calibrate", "prune", "pruned-eval",
                                              "truth-compare"]
    assert stages[0].startswith("[1/7] load") and "left" in stages[0]
    assert not [line for line in lines if not line.startswith("[") and not line.startswith("WARNING")], err
    assert proc.stdout.splitlines()[0].startswith("# wanda pruner, uniform allocator: 50 % sparsity")
    assert proc.stdout.rstrip().splitlines()[-1] == f"full report: {tmp_path / 'r1'}/report.md"
    quiet = _cli(*common, "--out", str(tmp_path / "r2"), "-q", cwd=tmp_path)
    assert quiet.returncode == 0 and not [line for line in quiet.stderr.splitlines() if line.startswith("[")]
    report = json.loads((tmp_path / "r1" / "report.json").read_text())
    ret = report["pruned"]["probe"]["retention"]
    assert ret["layer"] == report["dense"]["probe"]["best_layer"] and ret["seeds"] == 5
    assert report["pruned"]["probe"]["statements_per_set"]["cities"] == 40
    assert "transfer_accuracy" not in report["dense"]["probe"]  # the dense column no longer repeats the best layer


@pytest.fixture
def tiny_dir_factory(tiny_llama):
    def make(root: Path) -> Path:
        sys.path.insert(0, str(Path(__file__).parent))
        from tiny_models import word_tokenizer

        path = root / "tiny"
        tiny_llama.config.vocab_size = 128
        tiny_llama.save_pretrained(path)
        word_tokenizer("smollm2").save_pretrained(path)
        return path

    return make


# ----------------------------------------------------------------------------- plan time


def test_dry_run_loads_nothing_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from truthprune.cli.main import main
    from truthprune.models import loading

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("a dry run loaded a model"))
    with pytest.raises(SystemExit) as exc:
        main(["run", "--pruner", "wanda", "--nm", "2:4", "--out", "runs/x", "--save", "pruned/x", "--dry-run"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    assert "wanda with the uniform allocator, sparsity 0.50, 2:4 pattern" in out
    assert "stages       " in out and "dense-truth" in out and "time         about" in out
    assert "runs/x/: report.md" in out and "pruned/x/: the pruned model" in out
    assert list(tmp_path.iterdir()) == []


def test_eval_truthfulness_checks_both_models_before_any_work(tmp_path):
    proc = _cli("eval", "truthfulness", "--model", "pruned/", "--baseline", "smollm2-135m", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: --model 'pruned/' does not exist; pass an existing model directory "
                                   "(e.g. one written by --save), a .gguf file, or smollm2-135m")
    proc = _cli("eval", "truthfulness", "--baseline", "gone/", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --baseline 'gone/'")


def test_help_shows_defaults_and_keeps_brackets():
    env = {**os.environ, "COLUMNS": "200"}
    run = _cli("run", "--help", env=env, timeout=60).stdout
    assert "[default: smollm2-135m]" in run and "[default: 100]" in run
    assert "pip install 'lm-eval>=0.4.2'" in run  # rich markup used to eat "[lmeval]"-style text
    ppl = _cli("eval", "ppl", "--help", env=env, timeout=60).stdout
    assert "REFERENCE" not in ppl and "[default: smollm2-135m]" in ppl
    probe = _cli("probe", "--help", env=env, timeout=60).stdout
    assert "--truth-datasets" in probe and "--datasets" not in probe.replace("--truth-datasets", "")  # old name hidden


def test_config_show_prints_resolved_values():
    pytest.importorskip("truthprune_tplo")
    cfg = json.loads(_cli("config", "show", "--pruner", "tplo", timeout=60).stdout)
    assert cfg["allocator"] == "tplo" and cfg["ppl_max_windows"] == 16
    assert json.loads(_cli("config", "show", timeout=60).stdout)["allocator"] == "uniform"


def test_plugins_fit_80_columns_without_breaking_names():
    proc = _cli("plugins", env={**os.environ, "COLUMNS": "80"}, timeout=60)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and all(len(line) <= 80 for line in lines)
    names = [r["name"] for r in json.loads(_cli("plugins", "--json", timeout=60).stdout)]
    firsts = {line.split()[0] for line in lines if line and not line.startswith(" ")}
    assert set(names) <= firsts  # every name whole at the start of its row


def test_saved_checkpoints_get_the_umask_mode(tmp_path, tiny_dir_factory):
    model = tiny_dir_factory(tmp_path)
    proc = _cli("prune", "--model", str(model), "--nsamples", "8", "--seqlen", "64", "--save", str(tmp_path / "p"), "-q",
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    mask = os.umask(0)
    os.umask(mask)
    modes = {f.name: f.stat().st_mode & 0o777 for f in (tmp_path / "p").iterdir()}
    assert set(modes.values()) == {0o666 & ~mask}, modes
