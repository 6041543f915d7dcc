"""The plugin author kit (truthprune.testing) run against enriched-truthfulqa and truth-statements
on small CSVs written here (the real data lives in ../shared and is never needed)."""

import csv

from truthprune.testing import check_calibration_source, check_torch_free_import


def test_enriched_truthfulqa_meets_the_source_contract(tmp_path):
    path = tmp_path / "TruthfulQA.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers", "Source"])
        for i in range(40):
            w.writerow(["Adversarial", "Test", f"What is question {i}?", f"Answer {i}", f"Answer {i}; Also {i}", f"Wrong {i}", "x"])
    assert check_calibration_source("enriched-truthfulqa", {"path": str(path)})


def test_truth_statements_meets_the_source_contract(tmp_path):
    for name in ("cities", "neg_cities"):
        with (tmp_path / f"{name}.csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["statement", "label"])
            for i in range(30):
                w.writerow([f"The city of Town{i} is {'not ' if name.startswith('neg') else ''}in Land{i % 5}.", i % 2])
    assert check_calibration_source("truth-statements", {"path": str(tmp_path)})


def test_registration_is_torch_free():
    assert check_torch_free_import("truthprune_truthfulqa.plugin")
