"""The optional lm-eval harness bridge (``--lm-eval-tasks``).

Without lm-eval (CI): the flags and configuration parse, and a run that asks for tasks stops at
plan time with exit 2 and the install command (nothing is loaded or written).

With lm-eval importable: the real bridge runs a tiny local task (a YAML + jsonl written here,
no hub) on the tiny random Llama before and after pruning.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from truthprune import UserError
from truthprune.run.config import build_config
from truthprune.eval.lm_eval_bridge import summarize, summary_entries
from truthprune.reporting.report import lm_eval_rows, render_markdown


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "truthprune", *args], capture_output=True, text=True, timeout=120)


# ----------------------------------------------------------------------------- configuration


def test_flags_parse_into_the_config(tmp_path):
    out = _cli("config", "show", "--lm-eval-tasks", "arc_easy, hellaswag", "--lm-eval-tasks", "piqa",
               "--lm-eval-limit", "20", "--lm-eval-fewshot", "0", "--lm-eval-include", str(tmp_path),
               "--out", str(tmp_path / "out"))
    assert out.returncode == 0, out.stderr
    cfg = json.loads(out.stdout)
    assert cfg["lm_eval_tasks"] == ["arc_easy", "hellaswag", "piqa"]
    assert cfg["lm_eval_limit"] == 20 and cfg["lm_eval_fewshot"] == 0
    assert cfg["lm_eval_include"] == [str(tmp_path)]


def test_defaults_toml_and_validation(tmp_path):
    cfg = build_config(None, {})
    assert cfg.lm_eval_tasks == [] and cfg.lm_eval_limit is None and cfg.lm_eval_fewshot is None and cfg.lm_eval_include == []
    toml = tmp_path / "run.toml"
    toml.write_text('lm_eval_tasks = ["arc_easy"]\nlm_eval_limit = 5\n')
    cfg = build_config(str(toml), {"lm_eval_limit": 7})
    assert cfg.lm_eval_tasks == ["arc_easy"] and cfg.lm_eval_limit == 7
    with pytest.raises(UserError, match="lm_eval_limit"):
        build_config(None, {"lm_eval_limit": 0})
    with pytest.raises(UserError, match="lm_eval_fewshot"):
        build_config(None, {"lm_eval_fewshot": -1})


# ----------------------------------------------------------------------------- report rendering


def _synthetic_report(dense_lm, pruned_lm, tasks):
    layers = [{"index": i, "target": 0.5, "achieved": 0.5, "linears": {}, "params": 10} for i in range(2)]
    return {
        "truthprune_report": 1,
        "config": {"model": "tiny", "sparsity": 0.5, "lm_eval_tasks": tasks},
        "seed": 0,
        "calibration": {"sources": ["text"], "nsamples": 4, "seqlen": 32, "description": "text"},
        "pruning": {"pruner": "wanda", "allocator": "uniform", "layers": layers, "overall": 0.5, "allocation": [0.5, 0.5]},
        "dense": {"lm_eval": dense_lm}, "pruned": {"lm_eval": pruned_lm},
    }


def test_summarize_and_rows_one_per_task_metric():
    raw = {
        "results": {"tiny_mc": {"alias": "tiny_mc", "acc,none": 0.5, "acc_stderr,none": 0.1, "acc_norm,none": 0.25,
                                "acc_norm_stderr,none": "N/A"},
                    "gsm": {"alias": "gsm", "exact_match,strict-match": 0.125, "exact_match_stderr,strict-match": 0.01}},
        "n-samples": {"tiny_mc": {"original": 12, "effective": 4}}, "n-shot": {"tiny_mc": 0}, "versions": {"tiny_mc": 1.0},
        "higher_is_better": {"tiny_mc": {"acc": True}},
    }
    s = summarize(raw)
    assert s["results"]["tiny_mc"] == {"acc": 0.5, "acc_norm": 0.25}
    assert s["stderr"]["tiny_mc"] == {"acc": 0.1, "acc_norm": None}
    assert s["results"]["gsm"] == {"exact_match (strict-match)": 0.125}
    assert s["n_samples"] == {"tiny_mc": 4} and s["versions"] == {"tiny_mc": "1.0"}
    json.dumps(s)  # JSON-safe

    section = {"tasks": {"tiny_mc": s}, "skipped": {"arc_easy": "lm-eval task 'arc_easy' needs ... unreachable; skipping"}}
    # a requested task with its own entry shows only that entry's metrics
    assert summary_entries(section) == [("tiny_mc", "acc"), ("tiny_mc", "acc_norm")]
    pruned = json.loads(json.dumps(section))
    pruned["tasks"]["tiny_mc"]["results"]["tiny_mc"]["acc"] = 0.375
    report = _synthetic_report(section, pruned, ["tiny_mc", "arc_easy"])
    assert lm_eval_rows(report) == [("lm-eval tiny_mc acc", "0.5000", "0.3750"), ("lm-eval tiny_mc acc_norm", "0.2500", "0.2500"),
                                    ("lm-eval arc_easy", "skipped", "skipped")]
    md = render_markdown(report)
    assert "| lm-eval tiny_mc acc | 0.5000 | 0.3750 |" in md and "| lm-eval arc_easy | skipped | skipped |" in md
    assert md.count("lm-eval: lm-eval task 'arc_easy' needs") == 1


# ----------------------------------------------------------------------------- a run on the tiny model


def char_tokenizer():
    """A character-level fast tokenizer (printable ASCII, BOS/EOS) that fits the tiny Llama's 128-token vocabulary."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "\n": 3}
    for i in range(32, 127):
        vocab[chr(i)] = len(vocab)
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Results are cached by weights and task: every test measures afresh."""
    monkeypatch.setenv("TRUTHPRUNE_CACHE", str(tmp_path / "cache"))


def _run(tiny_llama, tmp_path, **overrides):
    """plan_run + execute with the in-memory tiny Llama; returns (plan, report dict, report.md text)."""
    from truthprune.models.loading import LoadedModel
    from truthprune.run.pipeline import execute, plan_run

    text = tmp_path / "calib.txt"
    text.write_text("\n\n".join(f"Record {i}: the quick brown fox jumps over the lazy dog {i} times." for i in range(40)))
    cfg = build_config(None, {
        "model": "tiny", "device": "cpu", "calibration": ["text"], "calibration_options": {"path": str(text)},
        "nsamples": 4, "seqlen": 32, "batch_size": 4, "eval": [], "quiet": True, "out": str(tmp_path / "out"), **overrides,
    })
    plan = plan_run(cfg)
    tok = char_tokenizer()
    loaded = LoadedModel(model=tiny_llama, tokenizer=tok, spec="tiny", path=str(tmp_path), kind="local", device="cpu")
    out = execute(plan, load=lambda _cfg: loaded).out
    return plan, json.loads((out / "report.json").read_text()), (out / "report.md").read_text()


@pytest.fixture
def no_lm_eval(monkeypatch):
    """Make ``import lm_eval`` fail, as when the extra is not installed."""
    for name in [m for m in sys.modules if m == "lm_eval" or m.startswith("lm_eval.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "lm_eval", None)


def test_not_installed_stops_at_plan_time_with_the_install_command(no_lm_eval, tmp_path):
    from truthprune.eval.lm_eval_bridge import install_command
    from truthprune.run.pipeline import plan_run

    cfg = build_config(None, {"lm_eval_tasks": ["arc_easy", "hellaswag"], "out": str(tmp_path / "p")})
    with pytest.raises(UserError) as err:
        plan_run(cfg)
    assert str(err.value) == f"--lm-eval-tasks needs lm-eval, which is not installed; install it with: {install_command()}"
    assert install_command().startswith("pip install 'lm-eval") and "truthprune[" not in install_command()
    assert not (tmp_path / "p").exists()  # nothing claimed or created


def test_not_installed_exits_2_from_the_cli_before_loading(no_lm_eval, tmp_path, capsys):
    from truthprune.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["run", "--lm-eval-tasks", "arc_easy", "--out", str(tmp_path / "p")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'lm-eval" in err[0]


def test_no_tasks_means_no_lm_eval_section(no_lm_eval, tiny_llama, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="truthprune"):
        _, report, md = _run(tiny_llama, tmp_path)
    assert "lm_eval" not in report["dense"] and "lm-eval" not in md
    assert not [r for r in caplog.records if "lm-eval" in r.getMessage()]


def test_help_does_not_import_lm_eval():
    code = ("import sys\nfrom truthprune.cli.main import main\n"
            "try:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write('HEAVY=%s' % any(m in sys.modules for m in ('lm_eval', 'torch', 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "--lm-eval-tasks" in out.stdout and "HEAVY=False" in out.stderr


# ----------------------------------------------------------------------------- the real bridge (lm-eval installed)

TASK_YAML = """\
task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
output_type: multiple_choice
test_split: test
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{label}}}}"
doc_to_choice: "{{{{choices}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    """Two local multiple-choice tasks (jsonl data, no hub): tiny_sum and tiny_cmp."""
    pytest.importorskip("lm_eval")
    root = tmp_path_factory.mktemp("lm_eval_tasks")
    sums = [{"question": f"What is {i} plus {i}?", "choices": [str(2 * i), str(2 * i + 1), str(i)], "label": 0} for i in range(10)]
    cmps = [{"question": f"Is {i} larger than {i + 1}?", "choices": ["yes", "no"], "label": 1} for i in range(10)]
    for name, rows in (("tiny_sum", sums), ("tiny_cmp", cmps)):
        data = root / f"{name}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        (root / f"{name}.yaml").write_text(TASK_YAML.format(name=name, data=data))
    return root


def test_real_bridge_dense_and_pruned(task_dir, tiny_llama, tmp_path):
    _, report, md = _run(tiny_llama, tmp_path, lm_eval_tasks=["tiny_sum", "tiny_cmp"], lm_eval_limit=6,
                         lm_eval_include=[str(task_dir)])
    for role in ("dense", "pruned"):
        lm = report[role]["lm_eval"]
        assert lm["skipped"] == {} and set(lm["tasks"]) == {"tiny_sum", "tiny_cmp"}
        assert lm["limit"] == 6 and lm["lm_eval_version"]
        for task in ("tiny_sum", "tiny_cmp"):
            acc = lm["tasks"][task]["results"][task]["acc"]
            assert 0.0 <= acc <= 1.0 and acc * 6 == pytest.approx(round(acc * 6))
            assert lm["tasks"][task]["n_samples"][task] == 6
    assert "| lm-eval tiny_sum acc |" in md and "| lm-eval tiny_cmp acc |" in md
    assert "lm-eval: " not in md  # nothing skipped


def test_run_task_leaves_tokenizer_and_global_rng_alone(task_dir, tiny_llama):
    """lm-eval gives its tokenizer a pad token and reseeds random/numpy/torch; neither may leak into the run."""
    import torch

    from truthprune.eval.lm_eval_bridge import run_task

    tok = char_tokenizer()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    result = run_task(tiny_llama, tok, "tiny_cmp", limit=4, num_fewshot=None, batch_size=2, include=[str(task_dir)])
    assert torch.equal(torch.rand(3), expected)
    assert tok.pad_token is None
    assert result["n_samples"] == {"tiny_cmp": 4} and result["n_shot"] == {"tiny_cmp": 0}


def test_unknown_task_fails_at_plan_time(task_dir, tmp_path):
    from truthprune.run.pipeline import plan_run

    cfg = build_config(None, {"lm_eval_tasks": ["tiny_summ"], "lm_eval_include": [str(task_dir)], "out": str(tmp_path / "o")})
    with pytest.raises(UserError, match=r"unknown lm-eval task 'tiny_summ'; did you mean 'tiny_sum'"):
        plan_run(cfg)
    cfg = build_config(None, {"lm_eval_tasks": ["tiny_sum"], "lm_eval_include": [str(tmp_path / "missing")], "out": str(tmp_path / "o")})
    with pytest.raises(UserError, match="--lm-eval-include .* is not a directory"):
        plan_run(cfg)


def test_unreachable_hub_dataset_is_a_recorded_skip(task_dir, tiny_llama, tmp_path, monkeypatch, caplog):
    """A task whose data set is on the hub, without network: one warning line, a recorded skip,
    no retry for the pruned model, and the other task and the run go on."""
    import datasets

    real = datasets.load_dataset
    calls = []

    def offline(path, *args, **kwargs):
        if path != "json":
            calls.append(path)
            raise ConnectionError(f"Couldn't reach '{path}' on the Hub (OfflineModeIsEnabled)")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", offline)
    hub_dir = tmp_path / "hub_tasks"
    hub_dir.mkdir()
    (hub_dir / "hub_task.yaml").write_text(
        (task_dir / "tiny_sum.yaml").read_text().replace("task: tiny_sum", "task: hub_task")
        .replace("dataset_path: json", "dataset_path: truthprune-test/not-on-this-machine"))
    with caplog.at_level(logging.WARNING, logger="truthprune"):
        _, report, md = _run(tiny_llama, tmp_path, lm_eval_tasks=["hub_task", "tiny_sum"], lm_eval_limit=4,
                             lm_eval_include=[str(task_dir), str(hub_dir)])
    lines = [r.getMessage() for r in caplog.records if "hub_task" in r.getMessage()]
    assert len(lines) == 1 and "unreachable" in lines[0] and "\n" not in lines[0]
    assert calls == ["truthprune-test/not-on-this-machine"]  # not retried for the pruned model
    for role in ("dense", "pruned"):
        assert report[role]["lm_eval"]["skipped"] == {"hub_task": lines[0]}
        assert "tiny_sum" in report[role]["lm_eval"]["tasks"]
    assert "| lm-eval hub_task | skipped | skipped |" in md and "| lm-eval tiny_sum acc |" in md
