"""Fixtures for the SparseGPT plugin's engine tests: a tiny random-weight Llama (as the core
tests build it), calibration windows, the same model saved with a character-level tokenizer for
the CLI, and a tiny true/false statement pair for the tplo allocator's truth profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from truthprune.testing.pytest_fixtures import one_thread, tiny_calibration, tiny_dir, tiny_llama  # noqa: F401


@pytest.fixture
def tiny_truth_dir(tmp_path) -> Path:
    """A cities pair small enough for the tiny model (the truth profile needs true/false sets)."""
    d = tmp_path / "truth"
    d.mkdir()
    rows_aff, rows_neg = ["statement,label"], ["statement,label"]
    for i in range(24):
        city, a, b = f"Town{i}", f"Land{i}", f"Land{(i + 7) % 24}"
        rows_aff += [f"The city of {city} is in {a}.,1", f"The city of {city} is in {b}.,0"]
        rows_neg += [f"The city of {city} is not in {a}.,0", f"The city of {city} is not in {b}.,1"]
    (d / "cities.csv").write_text("\n".join(rows_aff) + "\n")
    (d / "neg_cities.csv").write_text("\n".join(rows_neg) + "\n")
    return d
