"""TruthfulQA MC1/MC2: the held-out split, the metrics, batched scoring, `truthprune eval truthfulqa`."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from truthprune import UserError, evaluate_truthfulqa, load_truthfulqa, truthfulqa_split
from truthprune.eval.truthfulqa import (
    QA_PRIMER,
    common_prefix_len,
    continuation_logliks,
    encode_pair,
    mc1_score,
    mc2_score,
    qa_context,
    split_answers,
)

CLI = [sys.executable, "-c", "from truthprune.cli.main import main; main()"]


def write_csv(path: Path, n: int = 12) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers", "Source"])
        for i in range(n):
            w.writerow(["A", "C", f"What is {i}?", f"It is {i}", f"It is {i}; Maybe {i}", f"It is {i + 1}; No {i}", "s"])
    return path


# ---------------------------------------------------------------------------- split


def test_split_is_disjoint_complete_and_deterministic():
    calib, held = truthfulqa_split(817)
    assert len(calib) == 408 and len(held) == 409
    assert not set(calib) & set(held) and sorted(calib + held) == list(range(817))
    assert (calib, held) == truthfulqa_split(817, seed=0)
    assert calib == sorted(calib) and held == sorted(held)
    assert truthfulqa_split(817, seed=1)[0] != calib
    with pytest.raises(UserError):
        truthfulqa_split(1)


# ---------------------------------------------------------------------------- metrics


def test_mc1_needs_the_best_answer_strictly_on_top():
    assert mc1_score(-1.0, [-2.0, -3.0]) == 1.0
    assert mc1_score(-2.0, [-1.0, -3.0]) == 0.0
    assert mc1_score(-2.0, [-2.0]) == 0.0  # a tie is not a win


def test_mc2_is_the_normalised_mass_on_correct_answers():
    assert mc2_score([math.log(0.3)], [math.log(0.1)]) == pytest.approx(0.75)
    assert mc2_score([math.log(0.2), math.log(0.1)], [math.log(0.1)]) == pytest.approx(0.75)
    assert mc2_score([-1000.0], [-1.0]) == pytest.approx(0.0, abs=1e-300)  # no overflow
    assert mc2_score([-1.0], [-1000.0]) == pytest.approx(1.0)


def test_split_answers_strips_and_dedupes():
    assert split_answers("a; b;; a ; c") == ("a", "b", "c")


def test_prompt_and_encoding(char_tokenizer):
    assert qa_context("Why?").endswith("\n\nQ: Why?\nA:") and qa_context("Why?").startswith(QA_PRIMER)
    assert QA_PRIMER.count("Q: ") == 6 and QA_PRIMER.count("\nA: ") == 6
    ctx, cont = encode_pair(char_tokenizer, "Q: x\nA:", " yes")
    assert ctx == [1] + [ord(c) for c in "Q: x\nA:"] and cont == [ord(c) for c in " yes"]
    assert common_prefix_len([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2


def test_csv_reading_and_errors(tmp_path):
    items, desc = load_truthfulqa(str(write_csv(tmp_path / "t.csv", 3)))
    assert items[0].question == "What is 0?" and items[0].correct == ("It is 0", "Maybe 0")
    assert items[0].incorrect == ("It is 1", "No 0") and "CSV" in desc
    bad = tmp_path / "bad.csv"
    bad.write_text("Question,Answer\nq,a\n")
    with pytest.raises(UserError, match="missing column"):
        load_truthfulqa(str(bad))
    with pytest.raises(UserError, match="does not exist"):
        load_truthfulqa(str(tmp_path / "none.csv"))


# ---------------------------------------------------------------------------- scoring


def _unbatched_loglik(model, ctx, cont):
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        lp = torch.log_softmax(model(ids).logits[0].float(), -1)
    return sum(float(lp[len(ctx) - 1 + k, t]) for k, t in enumerate(cont))


def test_batched_prefix_cached_scoring_matches_one_by_one(tiny_llama, char_tokenizer):
    tok = char_tokenizer
    pairs = [encode_pair(tok, qa_context(q), " " + a) for q, a in [("Why?", "Because"), ("Who?", "Me"), ("Why?", "No idea at all")]]
    expected = [_unbatched_loglik(tiny_llama, c, a) for c, a in pairs]
    cached = continuation_logliks(tiny_llama, pairs, batch_size=2)
    full = continuation_logliks(tiny_llama, pairs, batch_size=3, share_prefix=False)
    assert cached == pytest.approx(expected, abs=1e-4)
    assert full == pytest.approx(expected, abs=1e-4)


def test_evaluation_is_deterministic_on_the_held_out_half(tiny_llama, tmp_path, char_tokenizer):
    path = str(write_csv(tmp_path / "TruthfulQA.csv", 12))
    a = evaluate_truthfulqa(tiny_llama, char_tokenizer, data=path, batch_size=4)
    b = evaluate_truthfulqa(tiny_llama, char_tokenizer, data=path, batch_size=4)
    c = evaluate_truthfulqa(tiny_llama, char_tokenizer, data=path, batch_size=1)
    assert a == b
    assert c["mc2"] == pytest.approx(a["mc2"], abs=1e-5) and c["mc1"] == a["mc1"]
    assert a["n_questions"] == 6 and 0.0 <= a["mc1"] <= 1.0 and 0.0 < a["mc2"] < 1.0
    assert a["split"] == {"seed": 0, "part": "evaluation (held-out half)", "n_total": 12,
                          "n_calibration": 6, "n_evaluation": 6, "limit": None}
    limited = evaluate_truthfulqa(tiny_llama, char_tokenizer, data=path, limit=2)
    assert limited["n_questions"] == 2 and limited["split"]["limit"] == 2


def test_hub_offline_is_a_one_line_user_error():
    script = (
        "from truthprune import UserError, evaluate_truthfulqa\n"
        "try:\n    evaluate_truthfulqa(None, None, data='hub')\n"
        "except UserError as e:\n    print('ERR', e)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    line = next(l for l in out.stdout.splitlines() if l.startswith("ERR"))
    assert "hub is unreachable" in line and "--data PATH/TO/TruthfulQA.csv" in line


@pytest.mark.integration
def test_smollm2_truthfulqa_cli_limit_is_deterministic(shared):
    csv_path = shared("data", "truthfulqa", "TruthfulQA.csv")
    runs = []
    for batch in ("8", "3"):
        out = subprocess.run(
            CLI + ["eval", "truthfulqa", "--data", str(csv_path), "--limit", "5", "--batch-size", batch, "--device", "cpu", "--json"],
            capture_output=True, text=True, timeout=600,
        )
        assert out.returncode == 0, out.stderr
        runs.append(json.loads(out.stdout))
    a, b = runs
    assert a["n_questions"] == 5 and a["split"]["n_evaluation"] == 409
    assert 0.0 <= a["mc1"] <= 1.0 and 0.0 < a["mc2"] < 1.0
    assert a["mc1"] == b["mc1"] and a["mc2"] == pytest.approx(b["mc2"], abs=1e-4)
