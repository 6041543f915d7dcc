"""Report rendering, plots, ``truthprune report`` and ``truthprune compare`` on synthetic reports
(no model: every number here is written by hand, so the expected output is known)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from truthprune import UserError
from truthprune.reporting.compare import Run, check_comparable, load_runs, summary
from truthprune.reporting.plots import COMPARE_PNG, DIAGNOSTICS_PNG, PROBE_PNG, SEPARATION_PNG, SPARSITY_PNG, as_series, layer_curve, mean_series
from truthprune.reporting.report import load_report, render_markdown, render_report, rerender_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic_report(pruner="tplo", allocator="tplo", sparsity=0.5, allocation=(0.4, 0.5, 0.6), ppl=(20.0, 25.0)) -> dict:
    layers = [
        {"index": i, "target": s, "achieved": s, "linears": {"q_proj": s}, "params": 100} for i, s in enumerate(allocation)
    ]
    ppl_entry = lambda v: {"ppl": v, "windows": 10, "tokens": 5120, "seqlen": 512, "protocol": "windows"}  # noqa: E731
    def probe(acc, sep):
        known = [a for a in acc if a is not None]
        return {
        "layer_accuracy": acc, "best_layer": 1, "best_accuracy": max(known), "mean_accuracy": sum(known) / len(known),
        "cross_topic_accuracy": 0.7, "layer_separation": sep,
        }

    return {
        "truthprune_report": 1,
        "config": {"model": "tiny", "sparsity": sparsity, "pruner": pruner, "eval": ["ppl", "probe", "truthfulqa"],
                   "ppl_data": "pydoc", "seqlen": 512, "ppl_max_windows": None, "probe": "logreg", "probe_options": {},
                   "truth_data": None, "truth_datasets": None, "chat_template": False, "truthfulqa_data": None,
                   "truthfulqa_limit": 50, "seed": 0, "out": "runs/x"},
        "model": {"spec": "tiny", "path": "/models/tiny", "kind": "local", "layers": 3, "dtype": "float32"},
        "versions": {"truthprune": "0.1.0"},
        "seed": 0,
        "calibration": {"sources": ["pydoc"], "nsamples": 32, "seqlen": 512, "description": "pydoc"},
        "pruning": {"pruner": pruner, "allocator": allocator, "target": sparsity, "nm": None, "allocation": list(allocation),
                    "layers": layers, "overall": sum(allocation) / 3, "diagnostics": {"outlier_ratio_percent": [1.0, 2.5, 0.5]},
                    "dense_pass_s": 0.1, "prune_pass_s": 0.2},
        "allocations": {"uniform": [0.5, 0.5, 0.5], "owl": [0.45, 0.5, 0.55], "tplo": list(allocation)},
        "truth_profile": [0.2, 0.5, 0.3],
        "dense": {"ppl": ppl_entry(ppl[0]), "truthfulqa": {"mc1": 0.25, "mc2": 0.4},
                  "probe": probe([0.6, 0.8, 0.7], [0.5, 2.0, 1.0])},
        "pruned": {"ppl": ppl_entry(ppl[1]), "truthfulqa": {"mc1": 0.2, "mc2": 0.35},
                   "probe": {**probe([0.55, 0.7, None], [0.4, 1.5, 0.9]), "transfer_accuracy": 0.65,
                                 "layer_transfer_accuracy": [0.58, 0.72, 0.66]}},
        "stages": [{"stage": "load", "seconds": 1.0}],
        "timings": {"load": 1.0},
    }


def _write_run(path: Path, report: dict) -> Path:
    path.mkdir(parents=True)
    (path / "report.json").write_text(json.dumps(report))
    return path


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "truthprune", *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def _error_lines(stderr: str) -> list[str]:
    """stderr without other plugins' load warnings (a half-installed plugin elsewhere must not fail these tests)."""
    return [line for line in stderr.strip().splitlines() if not line.startswith("warning: plugin")]


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


# ----------------------------------------------------------------------------- pure helpers


def test_series_helpers():
    assert as_series([1, None, 2.5]) == [1.0, pytest.approx(float("nan"), nan_ok=True), 2.5]
    assert as_series([None, None]) is None and as_series("abc") is None and as_series([1, "x"]) is None
    assert mean_series({"a": [1.0, 2.0], "b": [3.0, None]}) == [2.0, 2.0]
    assert mean_series({"a": [1.0], "b": [1.0, 2.0]}) is None  # lengths disagree
    # a probe that measured only some layers names them
    assert layer_curve({"layers": [2, 4], "layer_accuracy": [0.6, 0.7]}, "layer_accuracy") == ([2.0, 4.0], [0.6, 0.7])
    assert layer_curve({"layer_accuracy": {"a": [0.5, 1.0], "b": [0.7, 0.8]}}, "layer_accuracy") == ([0.0, 1.0], [0.6, 0.9])
    assert layer_curve({}, "layer_accuracy") is None and layer_curve(None, "layer_accuracy") is None


# ----------------------------------------------------------------------------- rendering


def _retention(value=0.8, ci=(0.7, 0.95), transfer=(0.4, (0.3, 0.5))):
    est = lambda v, c=None: {"value": v, "ci": list(c) if c else None}  # noqa: E731
    return {"layer": 1, "seeds": 5, "dense_accuracy": est(0.8, (0.75, 0.85)), "pruned_accuracy": est(0.74, (0.7, 0.78)),
            "transfer_accuracy": est(0.62, (0.58, 0.66)), "accuracy_change": est(-0.06, (-0.09, -0.03)),
            "retention": est(value, ci), "transfer_retention": est(transfer[0], transfer[1])}


def test_markdown_starts_with_a_verdict_and_names_every_layer():
    report = synthetic_report()
    report["config"]["nm"] = "2:4"
    report["pruned"]["probe"]["retention"] = _retention()
    md = render_markdown(report)
    lines = md.splitlines()
    # the title names pruner, allocator, sparsity and the N:M pattern; the verdict comes next
    assert lines[0] == "# tplo pruner, tplo allocator: 50 % sparsity as a 2:4 pattern (2 of every 4 weights), on tiny"
    assert lines[2] == "**Verdict: too few statements to tell whether the truth features survived.**"
    assert lines[4].startswith("Perplexity rose from 20.00 to 25.00 (+25 %). At the dense model's best probe layer (1)")
    assert "keeps 0.80 [0.70, 0.95] of the dense model's above-chance accuracy" in lines[4]
    assert "--truth-max-per-set 0" not in lines[4]  # this config has no budget key: it asks for more statement sets
    assert "| perplexity (pydoc, 10 windows) | 20.000 | 25.000 |" in md
    assert "| TruthfulQA MC1 | 0.250 | 0.200 |" in md
    assert "| truth probe at the dense model's best layer (1; mean of 5 splits) | 0.800 [0.750, 0.850] | 0.740 [0.700, 0.780] |" in md
    assert "| truth probe at each model's own best layer (one split) | 0.800 (layer 1) | 0.700 (layer 1) |" in md
    assert "| dense probe read on the pruned model (transfer, layer 1) | - | 0.620 [0.580, 0.660] |" in md
    # two per-layer tables with words for headers; raw keys and other allocators stay in report.json
    headers = [line for line in lines if line.startswith("| layer |")]
    assert headers[0] == ("| layer | target sparsity | achieved sparsity | outlier ratio (%) | truth profile |")
    assert headers[1] == ("| layer | dense probe | pruned probe | dense probe on pruned | truth separation, dense | "
                          "truth separation, pruned |")
    assert "outlier_ratio_percent" not in md and "owl alloc" not in md
    cells = lambda line: [c.strip() for c in line.strip("|").split("|")]  # noqa: E731
    probe_rows = [cells(line) for line in lines[lines.index(headers[1]) + 2:] if line.startswith("| ")]
    assert probe_rows[2][:3] == ["2", "0.7000", "-"]  # the pruned probe has no value for layer 2: a dash
    assert md.rstrip().splitlines()[-3].startswith("**Glossary.** A *truth probe* is")


@pytest.mark.parametrize("ci, word", [((0.92, 1.01), "kept its truth features"), ((0.6, 0.85), "lost part of its truth"),
                                      ((0.1, 0.45), "lost most of its truth"), ((0.7, 0.95), "too few statements")])
def test_verdict_follows_the_written_rule(ci, word):
    report = synthetic_report()
    report["pruned"]["probe"]["retention"] = _retention(sum(ci) / 2, ci)
    assert word in render_markdown(report).splitlines()[2]


def test_verdict_without_probes_or_retention_says_what_it_has():
    report = synthetic_report()
    for role in ("dense", "pruned"):
        del report[role]["probe"]
    assert render_markdown(report).splitlines()[2].startswith("Verdict: perplexity only")
    old = synthetic_report()  # written before retention intervals existed
    assert "no retention interval" in render_markdown(old).splitlines()[2]


def test_human_labels_for_raw_keys():
    from truthprune.reporting.verdict import human_label

    assert human_label("outlier_ratio_percent") == "outlier ratio (%)"
    assert human_label("mean_abs_score_percent") == "mean abs score (%)" and human_label("layer_separation") == "truth separation"


def test_render_writes_pngs_for_what_exists(tmp_path):
    report = synthetic_report()
    render_report(report, tmp_path)
    assert report["plots"] == [SPARSITY_PNG, PROBE_PNG, SEPARATION_PNG, DIAGNOSTICS_PNG]
    for name in report["plots"]:
        assert _is_png(tmp_path / name), name
        assert f"![{name}]({name})" in (tmp_path / "report.md").read_text()


def test_only_existing_data_is_plotted(tmp_path):
    report = synthetic_report()
    for role in ("dense", "pruned"):
        del report[role]["probe"]
    report["truth_profile"] = None
    report["pruning"]["diagnostics"] = {}
    del report["allocations"]
    render_report(report, tmp_path)
    assert report["plots"] == [SPARSITY_PNG]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [SPARSITY_PNG]


# ----------------------------------------------------------------------------- truthprune report


def test_report_command_rerenders_a_copy(tmp_path):
    run = _write_run(tmp_path / "run", synthetic_report())
    (run / "notes.txt").write_text("kept")
    (run / DIAGNOSTICS_PNG).write_text("stale")  # dropped: this report has no diagnostics any more
    report = synthetic_report()
    report["pruning"]["diagnostics"] = {}
    (run / "report.json").write_text(json.dumps(report))
    before = (run / "report.json").read_bytes()
    out = _cli("report", str(run))
    assert out.returncode == 0, out.stderr
    assert "report written to" in out.stdout
    assert (run / "report.json").read_bytes() == before and (run / "notes.txt").read_text() == "kept"
    assert "# tplo pruner, tplo allocator: 50 % sparsity, unstructured, on tiny" in (run / "report.md").read_text()
    assert sorted(p.name for p in run.glob("*.png")) == sorted([SPARSITY_PNG, PROBE_PNG, SEPARATION_PNG])
    assert all(_is_png(p) for p in run.glob("*.png"))
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temp or backup directory left


def test_interrupted_rerender_leaves_the_old_report(tmp_path, monkeypatch):
    import truthprune.reporting.plots as plots

    run = _write_run(tmp_path / "run", synthetic_report())
    (run / "report.md").write_text("old report")

    def interrupted(report, out_dir):
        (Path(out_dir) / "half.png").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "report_plots", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rerender_report(run)
    assert (run / "report.md").read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and not (run / "half.png").exists()


@pytest.mark.parametrize(
    "content, fragment",
    [(None, "no report.json in"), ("{broken", "is not valid JSON"), ('{"a": 1}', "is not a truthprune report"),
     ('{"truthprune_report": 1, "config": {"model": "m", "sparsity": 0.5}}', "lacks pruning.pruner")],
)
def test_unreadable_report_is_one_line_exit_2(tmp_path, content, fragment):
    run = tmp_path / "run"
    run.mkdir()
    if content is not None:
        (run / "report.json").write_text(content)
    for args in (("report", str(run)), ("compare", str(run), str(run))):
        out = _cli(*args)
        assert out.returncode == 2, out.stderr
        lines = _error_lines(out.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    with pytest.raises(UserError):
        load_report(run)


def test_missing_directory_exits_2(tmp_path):
    out = _cli("report", str(tmp_path / "nope"))
    assert out.returncode == 2 and len(_error_lines(out.stderr)) == 1 and "no report.json" in out.stderr


# ----------------------------------------------------------------------------- truthprune compare


def test_compare_two_runs(tmp_path):
    a = _write_run(tmp_path / "tplo-0.5", synthetic_report())
    b = _write_run(tmp_path / "wanda-0.5", synthetic_report("wanda", "uniform", allocation=(0.5, 0.5, 0.5), ppl=(20.0, 30.0)))
    out = _cli("compare", str(a), str(b), "--out", str(tmp_path / "cmp"))
    assert out.returncode == 0, out.stderr
    assert "tplo-0.5" in out.stdout and "wanda-0.5" in out.stdout and "30.00" in out.stdout
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| run | pruner | allocator | target | sparsity | ppl | probe best |" in md
    assert "| dense | - | - | 0 | 0 | 20.00 | 0.800 |" in md
    assert "| tplo-0.5 | tplo | tplo | 0.50 | 0.5000 | 25.00 | 0.700 |" in md
    assert "| wanda-0.5 | wanda | uniform | 0.50 | 0.5000 | 30.00 | 0.700 |" in md
    assert _is_png(tmp_path / "cmp" / COMPARE_PNG) and f"![{COMPARE_PNG}]" in md
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [r["run"] for r in data["rows"]] == ["dense", "tplo-0.5", "wanda-0.5"]
    assert data["rows"][2]["ppl"] == 30.0 and data["rows"][1]["MC2"] == 0.35
    # an existing --out needs --overwrite
    again = _cli("compare", str(a), str(b), "--out", str(tmp_path / "cmp"))
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_dense_row_says_varies_when_baselines_differ(tmp_path):
    a = _write_run(tmp_path / "a", synthetic_report())
    b = _write_run(tmp_path / "b", synthetic_report(ppl=(21.0, 30.0)))
    header, rows, _ = summary(load_runs([a, b]))
    assert rows[0][header.index("ppl")] == "varies"
    assert rows[0][header.index("MC1")] == "0.250"


def _mismatch(change) -> list:
    a, b = synthetic_report(), synthetic_report("wanda", "uniform")
    change(b)
    return [Run("a", Path("a"), a), Run("b", Path("b"), b)]


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda r: r["model"].update(path="/models/other"), "model differs (a: /models/tiny; b: /models/other)"),
        (lambda r: r["dense"]["ppl"].update(seqlen=256), "perplexity seqlen (--seqlen) differs (a: 512; b: 256)"),
        (lambda r: r["config"].update(ppl_data="wikitext2"), "perplexity data (--ppl-data) differs"),
        (lambda r: r["config"].update(probe="ttpd"), "probe (--probe) differs"),
        (lambda r: r["config"].update(truthfulqa_limit=10), "TruthfulQA questions (--truthfulqa-limit) differs"),
    ],
)
def test_incompatible_runs_are_refused(change, fragment):
    with pytest.raises(UserError, match="runs are not comparable") as err:
        check_comparable(_mismatch(change))
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_settings_of_an_eval_only_one_run_ran_are_not_compared():
    def change(r):
        r["config"].update(eval=["ppl"], probe="ttpd")  # b ran no probe: its probe setting is irrelevant

    check_comparable(_mismatch(change))


def test_compare_mismatch_cli_exits_2(tmp_path):
    a = _write_run(tmp_path / "a", synthetic_report())
    other = synthetic_report()
    other["model"]["path"] = "/models/other"
    b = _write_run(tmp_path / "b", other)
    out = _cli("compare", str(a), str(b), "--out", str(tmp_path / "cmp"))
    assert out.returncode == 2
    assert _error_lines(out.stderr) == ["error: runs are not comparable: model differs (a: /models/tiny; b: /models/other); "
                                               "compare runs of one model evaluated with the same settings"]
    assert not (tmp_path / "cmp").exists()


def test_compare_needs_two_runs(tmp_path):
    a = _write_run(tmp_path / "a", synthetic_report())
    out = _cli("compare", str(a))
    assert out.returncode == 2 and "at least two" in out.stderr


def test_same_directory_names_get_full_paths(tmp_path):
    a = _write_run(tmp_path / "x" / "run", synthetic_report())
    b = _write_run(tmp_path / "y" / "run", copy.deepcopy(synthetic_report()))
    assert [r.label for r in load_runs([a, b])] == [str(a), str(b)]


# ----------------------------------------------------------------------------- truthprune sweep: validation before any run


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--pruner", "wanda,wandda"], "unknown pruner 'wandda'; did you mean 'wanda'?"),
        (["--sparsity", "0.5,abc"], "--sparsity 'abc' is not a number"),
        (["--sparsity", "0.5,1.5"], "sparsity: Input should be less than 1"),
        (["--pruner", "wanda,wanda"], "--pruner lists 'wanda' twice"),
        (["--sparsity", "0.3,0.30"], "share the directory 'wanda-0.3'"),
        (["--pruner", "wanda,"], "has an empty item"),
        (["--nm", "2:4"], "--nm fixes the sparsity"),
    ],
)
def test_sweep_validates_the_whole_grid_first(tmp_path, args, fragment):
    out = _cli("sweep", "--pruner", "wanda", "--sparsity", "0.5", *args, "--out", str(tmp_path / "sw"))
    assert out.returncode == 2
    lines = _error_lines(out.stderr)
    assert len(lines) == 1 and fragment in lines[0], lines
    assert not (tmp_path / "sw").exists()  # nothing ran, nothing was written


def test_sweep_refuses_to_replace_a_different_run(tmp_path):
    _write_run(tmp_path / "sw" / "wanda-0.5", synthetic_report("wanda", "uniform"))
    out = _cli("sweep", "--pruner", "wanda", "--sparsity", "0.5", "--out", str(tmp_path / "sw"))
    assert out.returncode == 2 and "holds a run with other settings; pass --overwrite" in out.stderr


def test_compare_gives_a_verdict_from_the_intervals():
    from truthprune.reporting.compare import Run, verdict_lines

    def run(label, value, ci, ppl):
        report = synthetic_report(ppl=(20.0, ppl))
        report["pruned"]["probe"]["retention"] = _retention(value, ci)
        return Run(label, Path(label), report)

    lines = verdict_lines([run("a", 0.9, (0.82, 0.97), 30.0), run("b", 0.5, (0.4, 0.6), 25.0)])
    assert lines[0] == "- a: perplexity 20.00 -> 30.00 (+50 %); retention 0.90 [0.82, 0.97] (unclear); transfer 0.40 [0.30, 0.50]"
    assert lines[2] == "Lowest perplexity: b (25.00; single runs, no interval)."
    assert lines[3] == "Keeps more truth signal (retention interval entirely above the other's): a over b."
    overlap = verdict_lines([run("a", 0.8, (0.6, 0.95), 30.0), run("b", 0.7, (0.5, 0.9), 25.0)])
    assert overlap[-1].startswith("No run's retention interval lies above another's: the highest point estimate (a, 0.80)")
