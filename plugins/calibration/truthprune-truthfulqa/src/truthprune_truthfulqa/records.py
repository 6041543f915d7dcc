"""Building the calibration records: pure text functions, no torch.

Both record styles follow the one visible example in the reference code (REFERENCE.md 3.3):
"The city of Krasnodar is not in Russia, which is false and the correct answer is indeed
Russia." -- a claim, then a clarification of whether it is true. The paper's own prompting rule
for "enriching" TruthfulQA is not published; :func:`enriched_records` is a reconstruction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from truthprune import UserError

# columns of the Truth-is-Universal CSVs that name the right answer of a (possibly false) statement
ANSWER_COLUMNS = ("correct_country", "true_target")


def _clause(text: str) -> str:
    """A sentence made into a clause: surrounding space and final full stops removed."""
    return text.strip().rstrip(".").rstrip()


def enriched_record(question: str, answer: str, is_true: bool, best: str) -> str:
    """'Q: <question> A: <answer>, which is <true|false> and the correct answer is indeed <best>.'"""
    verdict = "true" if is_true else "false"
    return f"Q: {question.strip()} A: {_clause(answer)}, which is {verdict} and the correct answer is indeed {_clause(best)}."


def enriched_records(items: Iterable[Any]) -> list[str]:
    """Reconstructed enrichment: one record per (question, answer) of every item.

    Answers are the Best Answer, the Correct Answers and the Incorrect Answers (each once, in
    that order); an answer is "true" when it is the best or a correct answer. Items are
    ``truthprune.TruthfulQAItem``-like (question, best, correct, incorrect).
    """
    out = []
    for item in items:
        correct = {item.best, *item.correct}
        for answer in dict.fromkeys((item.best, *item.correct, *item.incorrect)):
            out.append(enriched_record(item.question, answer, answer in correct, item.best))
    return out


def labelled_statement(statement: str, label: bool, answer: str | None = None) -> str:
    """'<statement without period>, which is <true|false>[ and the correct answer is indeed <answer>].'"""
    verdict = "true" if label else "false"
    tail = f" and the correct answer is indeed {_clause(answer)}" if answer else ""
    return f"{_clause(statement)}, which is {verdict}{tail}."


def _parse_label(value: str, where: str) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if number not in (0.0, 1.0):  # nan and inf are not in it either
        raise UserError(f"{where}: label {value!r} is not 0 or 1; the CSV needs statement,label with 1 = true")
    return number == 1.0


def statement_files(directory: str | Path, datasets: Sequence[str] | None) -> list[Path]:
    """The CSVs to read: the named data sets (file stems) or every *.csv in the directory, sorted."""
    d = Path(directory).expanduser()
    if not d.is_dir():
        state = "is not a directory" if d.exists() else "does not exist"
        raise UserError(f"truth-statement directory {str(d)!r} {state}; pass --calibration-opt path=DIR with the CSVs")
    available = sorted(p.stem for p in d.glob("*.csv"))
    if not available:
        raise UserError(f"{d} contains no .csv files; pass a directory of statement,label CSVs")
    if not datasets:
        return [d / f"{name}.csv" for name in available]
    missing = [n for n in datasets if n not in available]
    if missing:
        raise UserError(f"data set(s) {', '.join(missing)} not found in {d}; available: {', '.join(available)}")
    return [d / f"{name}.csv" for name in datasets]


def statement_records(files: Sequence[Path], with_answer: bool = False) -> list[str]:
    """Labelled-statement records from statement,label CSVs (in file order, then row order)."""
    records = []
    from truthprune import csv_dict_rows  # encodings, binary files and long fields handled in one place

    for path in files:
        cols, reader = csv_dict_rows(path, "statement file", "pass a UTF-8 CSV with the header 'statement,label'")
        if "statement" not in cols or "label" not in cols:
            raise UserError(f"{path}: needs columns 'statement' and 'label' (has: {', '.join(cols)})")
        answer_col = next((c for c in ANSWER_COLUMNS if c in cols), None) if with_answer else None
        for lineno, row in enumerate(reader, 2):
            if not (row.get("statement") or "").strip():
                continue
            label = _parse_label(row.get("label"), f"{path.name}:{lineno}")
            answer = row.get(answer_col) if answer_col else None
            records.append(labelled_statement(row["statement"], label, answer))
    if not records:
        raise UserError("the truth-statement CSVs contain no statements")
    return records
