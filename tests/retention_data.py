"""A miniature of the shared data for end-to-end tests of bench/truth_retention.py: TiU-format
statement CSVs (with entities, negated twins, a counterfact file with relation/subject columns
and one contradictory duplicate), a text file for calibration and perplexity, and the tiny model."""

from __future__ import annotations

import csv
import random
from pathlib import Path


def _write(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _pair_sets(d: Path, name: str, n: int, true_fmt: str, neg_fmt: str | None, rng: random.Random) -> None:
    rows, neg = [], []
    for i in range(n):
        for label in (1, 0):
            obj = f"k{i}" if label else f"k{(i + 1 + rng.randrange(n - 1)) % n}"
            rows.append({"statement": true_fmt.format(i=i, o=obj), "label": label})
            if neg_fmt:
                neg.append({"statement": neg_fmt.format(i=i, o=obj), "label": 1 - label})
    _write(d / f"{name}.csv", rows)
    if neg_fmt:
        _write(d / f"neg_{name}.csv", neg)


def write_truth_dir(d: Path, n: int = 30, seed: int = 0) -> Path:
    rng = random.Random(seed)
    d.mkdir(parents=True, exist_ok=True)
    _pair_sets(d, "animal_class", n, "The animal{i} is a {o}.", "The animal{i} is not a {o}.", rng)
    _pair_sets(d, "cities", n, "The city of c{i} is in {o}.", "The city of c{i} is not in {o}.", rng)
    _pair_sets(d, "sp_en_trans", n, "The Spanish word 'w{i}' means '{o}'.", "The Spanish word 'w{i}' does not mean '{o}'.", rng)
    _pair_sets(d, "larger_than", n, "N{i} is larger than {o}.", None, rng)
    _pair_sets(d, "smaller_than", n, "N{i} is smaller than {o}.", None, rng)
    _pair_sets(d, "common_claim_true_false", 2 * n, "Claim{i} is about {o}.", None, rng)
    cf = []
    for i in range(2 * n):
        rel = "The mother tongue of {} is" if i % 5 else "{} is located in"
        for label in (1, 0):
            target = "L0" if label else f"L{1 + i % 7}"
            cf.append({"statement": rel.format(f"P{i}") + f" {target}.", "label": label, "relation": rel,
                       "subject": f"P{i}", "target": target, "true_target": "L0"})
    cf.append({**cf[2], "label": 1 - cf[2]["label"]})  # labelled both ways: dropped by the bench
    _write(d / "counterfact_true_false.csv", cf)
    return d


def write_text(path: Path, n_words: int = 6000, seed: int = 0) -> Path:
    rng = random.Random(seed)
    words = "the a of in is was and to river city water north south old new big small one two three".split()
    path.write_text(" ".join(rng.choice(words) for _ in range(n_words)) + "\n")
    return path
