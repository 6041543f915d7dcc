"""bench/truth_retention.py end to end on a tiny random Llama: prune seeds shared across methods,
resumable, a method scored later into the same store, the reserved family only with --final,
bad input refused before any work (a minute on 2 cores: six prunes of the tiny model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from retention_data import write_text, write_truth_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "truth_retention.py"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from truthprune.testing.fixtures import save_tiny_checkpoint

    root = tmp_path_factory.mktemp("retention_bench")
    model = save_tiny_checkpoint(root / "model", seed=0, layers=3)
    truth = write_truth_dir(root / "truth", n=24)
    text = write_text(root / "text.txt")
    common = ["--model", str(model), "--truth-data", str(truth), "--ppl-data", str(text), "--calibration-opt",
              f"path={text}", "--nsamples", "4", "--seqlen", "32", "--ppl-max-windows", "2", "--device", "cpu",
              "--sets", "animal_class,neg_animal_class,larger_than,smaller_than", "--seen-sets", "cities,neg_cities",
              "--prune-seeds", "2", "--ppl-prune-seeds", "2", "--seeds", "3", "--bootstrap", "200", "--references", "wanda", "--out", str(root / "out")]
    return root, common


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=900, cwd=REPO)


def test_bench_runs_resumes_and_scores_a_later_method(env):
    root, common = env
    first = _bench(*common, "--methods", "wanda")
    assert first.returncode == 0, first.stderr[-2000:]
    out = root / "out"
    points = sorted(p.name for p in (out / "points").glob("*.json"))
    assert points == ["wanda@0.5@p0.json", "wanda@0.5@p1.json"]
    assert (out / "points" / "wanda@0.5@p0.reserved.safetensors").is_file()  # extracted, not scored
    assert not list((out / "points").glob("*.final.json"))
    doc = json.loads((out / "dense.json").read_text())
    assert "values" not in doc["sets"]["counterfact_true_false"] and "values" in doc["sets"]["animal_class"]
    assert all(k not in first.stdout for k in ("Reserved", "counterfact (")), "the reserved family was reported"
    # wanda's two prune seeds are two calibration draws: different masks, different perplexity
    p0, p1 = (json.loads((out / "points" / f"wanda@0.5@p{k}.json").read_text()) for k in (0, 1))
    assert p0["ppl"]["ppl"] != p1["ppl"]["ppl"] and p0["identity"]["prune_seed"] == 0
    res = json.loads((out / "retention.json").read_text())["results"]["0.5"]
    assert set(res) == {"retrained", "transfer", "auroc", "recentred"}
    stamp = {p: (out / "points" / p).stat().st_mtime_ns for p in points}

    # a method scored later: dense and wanda reused, paired with wanda over the same prune seeds
    later = _bench(*common, "--methods", "wanda,mag", "--method", "mag=--pruner magnitude")
    assert later.returncode == 0, later.stderr[-2000:]
    assert "dense: reusing" in later.stdout and "wanda@0.5@p1: reusing" in later.stdout
    assert {p: (out / "points" / p).stat().st_mtime_ns for p in points} == stamp
    res = json.loads((out / "retention.json").read_text())["results"]["0.5"]
    for measure in res.values():
        fam = measure["families"]["animal_class"]["methods"]
        assert "wanda" in fam["mag"]["diff"] and set(fam) == {"wanda", "mag"}
    assert "pruned in" not in _bench(*common, "--methods", "wanda,mag", "--method", "mag=--pruner magnitude").stdout
    # bench/recovery_table.py reads the same store (any method as the "recovered" one): paired rows per setting
    table = subprocess.run([sys.executable, str(REPO / "bench" / "recovery_table.py"), "--out", str(out), "--recovered", "mag",
                            "--bootstrap", "200"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert table.returncode == 0, table.stderr[-2000:]
    rows = [line for line in table.stdout.splitlines() if line.startswith("| 0.5 |")]
    assert [r.split("|")[2].strip() for r in rows] == ["wanda", "mag"] and "[" in rows[1].split("|")[5]

    final = _bench(*common, "--methods", "wanda,mag", "--method", "mag=--pruner magnitude", "--final", "--report-only")
    assert final.returncode == 0, final.stderr[-2000:]
    assert "Reserved final-test family" in final.stdout and "counterfact" in final.stdout
    assert len(list((out / "points").glob("*.final.json"))) == 4
    assert json.loads((out / "retention.json").read_text())["final"]["0.5"]["transfer"]["families"]["counterfact"]

    # one grid shared by two workers: each computes its own prune seeds and reads the other's
    half = _bench(*common, "--methods", "wanda,mag2", "--method", "mag2=--pruner magnitude", "--only-prune-seeds", "1")
    assert half.returncode == 0, half.stderr[-2000:]
    assert (out / "points" / "mag2@0.5@p1.json").is_file() and not (out / "points" / "mag2@0.5@p0.json").exists()
    assert "left out (not every prune seed finished): mag2" in half.stdout
    p1_stamp = (out / "points" / "mag2@0.5@p1.json").stat().st_mtime_ns
    other = _bench(*common, "--methods", "wanda,mag2", "--method", "mag2=--pruner magnitude", "--only-prune-seeds", "0")
    assert other.returncode == 0, other.stderr[-2000:]
    assert (out / "points" / "mag2@0.5@p1.json").stat().st_mtime_ns == p1_stamp  # read, not recomputed
    assert (out / "points" / "mag2@0.5@p0.json").is_file() and "left out" not in other.stdout
    fam = json.loads((out / "retention.json").read_text())["results"]["0.5"]["transfer"]["families"]["animal_class"]
    assert "mag2" in fam["methods"]


@pytest.mark.parametrize("flags, words", [
    (["--seeds", "1"], "--seeds 1"),
    (["--prune-seeds", "0"], "--prune-seeds 0"),
    (["--only-prune-seeds", "2"], "--only-prune-seeds 2"),
    (["--only-prune-seeds", "one"], "--only-prune-seeds 'one'"),
    (["--sets", "cities_conj"], "share topics with the build sets"),
    (["--cap", "numbers"], "--cap 'numbers'"),
    (["--nm", "4:2"], "--nm '4:2'"),
    (["--methods", "nope"], "unknown method"),
])
def test_bad_input_is_one_line_and_exit_2(env, tmp_path, flags, words):
    _, common = env
    res = _bench(*common[:-1], str(tmp_path / "out"), *flags)
    assert res.returncode == 2, res.stdout[-500:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()  # nothing written
