"""enriched-truthfulqa (calibration half only) and truth-statements calibration sources."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from truthprune import TruthfulQAItem, UserError, get_registry, truthfulqa_split
from truthprune_truthfulqa import enriched_record, enriched_records, labelled_statement

SHARED_DATA = Path(__file__).resolve().parents[4].parent / "shared" / "data"  # repo/../shared/data


class CharTokenizer:
    pad_token_id = 0
    eos_token_id = 2

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": ([1] if add_special_tokens else []) + [ord(c) for c in text]}


def source(name, **options):
    return get_registry().create("calibration", name, options)


def write_tqa_csv(path: Path, n: int) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers", "Source"])
        for i in range(n):
            w.writerow(["Adversarial", "Test", f"Question number {i}?", f"Best {i}", f"Best {i}; Also right {i}", f"Wrong {i}; Bad {i}.", "x"])
    return path


def test_enriched_record_template():
    assert enriched_record("Where is Paris?", "In Italy.", False, "In France.") == (
        "Q: Where is Paris? A: In Italy, which is false and the correct answer is indeed In France."
    )
    item = TruthfulQAItem("Q1?", "Yes", ("Yes", "Sure"), ("No",))
    assert enriched_records([item]) == [
        "Q: Q1? A: Yes, which is true and the correct answer is indeed Yes.",
        "Q: Q1? A: Sure, which is true and the correct answer is indeed Yes.",
        "Q: Q1? A: No, which is false and the correct answer is indeed Yes.",
    ]


def test_labelled_statement_template():
    assert labelled_statement("The city of Krasnodar is in Russia.", True) == "The city of Krasnodar is in Russia, which is true."
    assert labelled_statement("The city of Krasnodar is not in Russia.", False, "Russia") == (
        "The city of Krasnodar is not in Russia, which is false and the correct answer is indeed Russia."
    )


def test_enriched_source_uses_only_the_calibration_half(tmp_path):
    path = write_tqa_csv(tmp_path / "TruthfulQA.csv", 20)
    src = source("enriched-truthfulqa", path=str(path))
    calib, held_out = truthfulqa_split(20, 0)
    questions = {r.split(" A: ")[0] for r in src.records()}
    assert questions == {f"Q: Question number {i}?" for i in calib}
    assert not questions & {f"Q: Question number {i}?" for i in held_out}
    assert len(src.records()) == 4 * len(calib)  # Best (also in Correct), Also right, Wrong, Bad
    a = src.samples(CharTokenizer(), 5, 64, 0)
    assert a.input_ids.shape == (5, 64) and a.attention_mask.all()
    assert torch.equal(a.input_ids, src.samples(CharTokenizer(), 5, 64, 0).input_ids)
    other = source("enriched-truthfulqa", path=str(path), split_seed=1).records()
    assert other != src.records()


def test_enriched_source_shared_csv():
    csv_path = SHARED_DATA / "truthfulqa" / "TruthfulQA.csv"
    if not csv_path.is_file():
        pytest.skip(f"{csv_path} is absent (third-party data lives in ../shared)")
    records = source("enriched-truthfulqa", path=str(csv_path)).records()
    with csv_path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    calib, _ = truthfulqa_split(len(rows), 0)
    assert len(rows) == 817 and len(calib) == 408
    expected = 0
    for i in calib:
        r = rows[i]
        answers = [r["Best Answer"]] + (r["Correct Answers"] + ";" + r["Incorrect Answers"]).split(";")
        expected += len({a.strip() for a in answers if a.strip()})
    assert len(records) == expected
    assert len({r.split(" A: ")[0] for r in records}) == 408
    assert all(", which is true and" in r or ", which is false and" in r for r in records)
    assert records[0].startswith("Q: ")


def test_enriched_hub_fails_offline():
    script = (
        "from truthprune import UserError, get_registry\n"
        "try:\n    get_registry().create('calibration', 'enriched-truthfulqa', {}).records()\n"
        "except UserError as e:\n    print('ERR', e)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    line = next(l for l in out.stdout.splitlines() if l.startswith("ERR"))
    assert "hub is unreachable" in line and "--calibration-opt path=FILE" in line


def write_statements(d: Path) -> Path:
    d.mkdir()
    (d / "cities.csv").write_text(
        "statement,label,city,country,correct_country\n"
        "The city of Oslo is in Norway.,1,Oslo,Norway,Norway\nThe city of Oslo is in Peru.,0,Oslo,Peru,Norway\n"
    )
    (d / "facts.csv").write_text("statement,label\nTwo is even.,1\nThree is even.,0\n")
    return d


def test_truth_statements_records_and_options(tmp_path):
    d = write_statements(tmp_path / "tiu")
    assert source("truth-statements", path=str(d)).records() == [
        "The city of Oslo is in Norway, which is true.",
        "The city of Oslo is in Peru, which is false.",
        "Two is even, which is true.",
        "Three is even, which is false.",
    ]
    only = source("truth-statements", path=str(d), datasets="facts", with_answer=True).records()
    assert only == ["Two is even, which is true.", "Three is even, which is false."]
    answered = source("truth-statements", path=str(d), datasets=["cities"], with_answer=True).records()
    assert answered[1] == "The city of Oslo is in Peru, which is false and the correct answer is indeed Norway."
    s = source("truth-statements", path=str(d)).samples(CharTokenizer(), 3, 40, 0)
    assert s.input_ids.shape == (3, 40)


def test_truth_statements_errors(tmp_path):
    with pytest.raises(UserError, match="path=DIR"):
        source("truth-statements").records()
    d = write_statements(tmp_path / "tiu")
    with pytest.raises(UserError, match="nope not found.*available: cities, facts"):
        source("truth-statements", path=str(d), datasets="nope").records()
    (d / "bad.csv").write_text("statement,label\nX.,maybe\n")
    with pytest.raises(UserError, match="bad.csv:2: label 'maybe'"):
        source("truth-statements", path=str(d), datasets="bad").records()


def test_truth_statements_shared_dir():
    d = SHARED_DATA / "truth_statements"
    if not d.is_dir():
        pytest.skip(f"{d} is absent (third-party data lives in ../shared)")
    records = source("truth-statements", path=str(d), datasets="cities,neg_cities").records()
    assert records[0] == "The city of Krasnodar is in Russia, which is true."
    assert "The city of Krasnodar is not in Russia, which is false." in records
