"""The items of the truthfulness evaluation, one list per dimension, capped and balanced.

* ``logical`` (logical reasoning): the conjunction/disjunction statement sets (``*_conj.csv``,
  ``*_disj.csv`` of ``--truth-data``). Offline (no such files): conjunctions and disjunctions
  built in the same sentence form ("It is the case both that X and that Y.") from pairs of the
  generated statements (:func:`truthprune.generate_statement_sets`), labelled by logic.
* ``common_sense``: ``common_claim_true_false.csv`` plus the generated statement sets (half of the
  cap from each when both are there; offline only the generated sets).
* ``imitative`` (imitative falsehoods): TruthfulQA questions of the *held-out* half only
  (:func:`truthprune.truthfulqa_split`, split seed 0 as the calibration source uses), each as an
  A/B pair of its best answer and one incorrect answer, the correct option's position balanced
  and shuffled by the seed. Without ``--truthfulqa-data`` this dimension is skipped (offline).

Each dimension draws at most ``limit`` items, balanced between labels (half true/half false,
or half "A is correct"), seeded per dimension, so a larger cap never changes which sets are
read and the same seed always gives the same items. A statement labelled both true and false in
a file (the published ``*_disj`` files have a few) is dropped: it has no right answer.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .truthfulqa import load_truthfulqa, truthfulqa_split
from ..textio import describe, require_file

log = logging.getLogger(__name__)

DIMENSIONS = ("logical", "common_sense", "imitative")
DEFAULT_LIMIT = 200
TRUTHFULQA_SPLIT_SEED = 0  # the split the truthfulqa calibration source and `eval truthfulqa` use


@dataclass(frozen=True)
class Item:
    """One question to the model. ``label`` 1 = the statement is true / option A is correct."""

    dimension: str
    kind: str  # "statement" or "choice"
    fields: tuple[tuple[str, str], ...]  # format fields: (("statement", s),) or question/a/b
    label: int
    group: str  # entity key: items sharing it stay on one side of every probe split

    @property
    def text(self) -> str:
        return " | ".join(v for _, v in self.fields)


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def balanced_choice(labels: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most ``limit`` rows, ceil/floor half from each label (fewer if a label runs out)."""
    labels = np.asarray(labels)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    k_pos = min(len(pos), (limit + 1) // 2)
    k_neg = min(len(neg), limit - k_pos)
    k_pos = min(len(pos), limit - k_neg)
    chosen = np.concatenate([rng.choice(pos, k_pos, replace=False), rng.choice(neg, k_neg, replace=False)])
    return np.sort(chosen.astype(np.int64))


def _consistent(statements: list[str], labels: list[int]) -> tuple[list[str], list[int]]:
    """Drop statements labelled both ways; keep the first of consistent repeats."""
    seen: dict[str, set[int]] = {}
    for s, lab in zip(statements, labels):
        seen.setdefault(s, set()).add(int(lab))
    out_s, out_l, done = [], [], set()
    for s, lab in zip(statements, labels):
        if len(seen[s]) == 1 and s not in done:
            out_s.append(s)
            out_l.append(int(lab))
            done.add(s)
    return out_s, out_l


def _statement_items(dimension: str, statements: list[str], labels: list[int], limit: int, rng) -> list[Item]:
    from ..truth.datasets import subject_of

    statements, labels = _consistent(statements, labels)
    idx = balanced_choice(np.asarray(labels), limit, rng)
    return [Item(dimension, "statement", (("statement", statements[i]),), labels[i], subject_of(statements[i])) for i in idx]


def _csv_rows(paths: list[Path]) -> tuple[list[str], list[int]]:
    from ..truth.datasets import load_statement_csv

    statements: list[str] = []
    labels: list[int] = []
    for p in paths:
        s = load_statement_csv(p, duplicates="keep")
        statements += s.statements
        labels += [int(x) for x in s.labels]
    return statements, labels


def _clause(statement: str) -> str:
    """'The city of X is in Y.' -> 'the city of X is in Y' (mid-sentence form, as in the TiU files)."""
    s = statement.strip().rstrip(".")
    return "the " + s[4:] if s.startswith("The ") else s


def generated_compounds(seed: int, n_pairs: int = 400) -> tuple[list[str], list[int]]:
    """Conjunctions and disjunctions of two generated affirmative statements of one topic."""
    from ..truth.generate import generate_statement_sets

    rng = _rng(seed, "compounds")
    statements, labels = [], []
    for s in generate_statement_sets(seed):
        if s.polarity < 0:
            continue
        for _ in range(n_pairs // 4):
            i, j = rng.choice(len(s), 2, replace=False)
            a, b = _clause(s.statements[i]), _clause(s.statements[j])
            la, lb = int(s.labels[i]), int(s.labels[j])
            statements.append(f"It is the case both that {a} and that {b}.")
            labels.append(la & lb)
            statements.append(f"It is the case either that {a} or that {b}.")
            labels.append(la | lb)
    return statements, labels


def _generated_rows(seed: int) -> tuple[list[str], list[int]]:
    from ..truth.generate import generate_statement_sets

    statements: list[str] = []
    labels: list[int] = []
    for s in generate_statement_sets(seed):
        statements += s.statements
        labels += [int(x) for x in s.labels]
    return statements, labels


def logical_items(truth_data: str | None, limit: int, seed: int) -> tuple[list[Item], str]:
    files = sorted(Path(truth_data).glob("*_conj.csv")) + sorted(Path(truth_data).glob("*_disj.csv")) if truth_data else []
    rng = _rng(seed, "logical")
    if files:
        items = _statement_items("logical", *_csv_rows(files), limit, rng)
        return items, f"{', '.join(p.stem for p in files)} from {truth_data}"
    items = _statement_items("logical", *generated_compounds(seed), limit, rng)
    where = f"no *_conj/*_disj files in {truth_data}" if truth_data else "no --truth-data"
    return items, f"conjunctions/disjunctions of the generated statement sets (seed {seed}; {where})"


def common_sense_items(truth_data: str | None, limit: int, seed: int) -> tuple[list[Item], str]:
    rng = _rng(seed, "common_sense")
    claim = Path(truth_data) / "common_claim_true_false.csv" if truth_data else None
    if claim is not None and claim.is_file():
        half = (limit + 1) // 2
        items = _statement_items("common_sense", *_csv_rows([claim]), half, rng)
        items += _statement_items("common_sense", *_generated_rows(seed), limit - half, rng)
        return items, f"common_claim_true_false from {truth_data} + the generated statement sets (seed {seed})"
    items = _statement_items("common_sense", *_generated_rows(seed), limit, rng)
    where = f"no common_claim_true_false.csv in {truth_data}" if truth_data else "no --truth-data"
    return items, f"the generated statement sets only (seed {seed}; {where})"


def imitative_items(truthfulqa_data: str | None, limit: int, seed: int) -> tuple[list[Item], str]:
    questions, description = load_truthfulqa(truthfulqa_data, fix="pass --truthfulqa-data PATH/TO/TruthfulQA.csv")
    _, held_out = truthfulqa_split(len(questions), TRUTHFULQA_SPLIT_SEED)
    rng = _rng(seed, "imitative")
    chosen = np.sort(rng.choice(np.asarray(held_out), min(limit, len(held_out)), replace=False))
    a_correct = np.zeros(len(chosen), dtype=np.int64)
    a_correct[: (len(chosen) + 1) // 2] = 1
    rng.shuffle(a_correct)
    items = []
    for q_idx, first in zip(chosen, a_correct):
        q = questions[int(q_idx)]
        wrong = q.incorrect[int(rng.integers(len(q.incorrect)))]
        a, b = (q.best, wrong) if first else (wrong, q.best)
        items.append(Item("imitative", "choice", (("question", q.question), ("a", a), ("b", b)), int(first), f"q{int(q_idx)}"))
    return items, f"TruthfulQA held-out half ({description}; split seed {TRUTHFULQA_SPLIT_SEED}), best vs one incorrect answer"


def check_sources(truth_data: str | None, truthfulqa_data: str | None, limit: int) -> None:
    """Plan-time checks (before any model is loaded)."""
    if limit < 2:
        raise UserError(f"--limit {limit} must be at least 2 (one true and one false item per dimension)")

    if truth_data is not None and not Path(truth_data).is_dir():
        raise UserError(f"--truth-data {truth_data!r} {describe(truth_data)}; pass a directory of true/false statement CSVs")
    if truthfulqa_data not in (None, "hub"):
        require_file(truthfulqa_data, "--truthfulqa-data", "pass the original TruthfulQA.csv or 'hub'")


def load_items(truth_data: str | None, truthfulqa_data: str | None, limit: int = DEFAULT_LIMIT,
               seed: int = 0) -> tuple[dict[str, list[Item]], dict[str, str]]:
    """(dimension -> items, dimension -> description or why it was skipped)."""
    check_sources(truth_data, truthfulqa_data, limit)
    items: dict[str, list[Item]] = {}
    notes: dict[str, str] = {}
    items["logical"], notes["logical"] = logical_items(truth_data, limit, seed)
    items["common_sense"], notes["common_sense"] = common_sense_items(truth_data, limit, seed)
    if truthfulqa_data is None:
        notes["imitative"] = "skipped: no TruthfulQA data (pass --truthfulqa-data PATH/TO/TruthfulQA.csv or hub)"
    else:
        items["imitative"], notes["imitative"] = imitative_items(truthfulqa_data, limit, seed)
    if truth_data is None:
        log.warning("no --truth-data given: logical and common-sense items come from the generated statement sets")
    return items, notes


__all__ = ["DIMENSIONS", "DEFAULT_LIMIT", "Item", "balanced_choice", "generated_compounds", "load_items", "check_sources"]
