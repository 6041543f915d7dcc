"""Shared fixtures: paths to ../shared data, a character tokenizer, an isolated result cache; the tiny
random-weight Llama and its calibration windows are the author kit's (truthprune.testing)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from truthprune.testing.pytest_fixtures import tiny_calibration, tiny_llama  # noqa: F401  (the kit's, as plugins use)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the test when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is absent (third-party data lives in ../shared)")
    return p


@pytest.fixture
def shared():
    """``shared("data", "wikitext-2", "test.txt")``: a path under ../shared, or skip the test."""
    return shared_path


class CharTokenizer:
    """BOS=1 then one id per character, clipped to the tiny model's 128-token vocabulary."""

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": ([1] if add_special_tokens else []) + [min(ord(c), 127) for c in text]}


@pytest.fixture
def char_tokenizer():
    return CharTokenizer()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep result caches per test session, but share the converted SmolLM2 model cache."""
    if "TRUTHPRUNE_CACHE" not in os.environ:
        monkeypatch.setenv("TRUTHPRUNE_CACHE", str(Path.home() / ".cache" / "truthprune"))


def pytest_terminal_summary(terminalreporter):
    """The bad-input suite's tally (tests/test_bad_inputs.py), when any of its cases ran."""
    import sys

    lib = sys.modules.get("bad_inputs_lib")
    if lib is not None and lib.TALLY.total and terminalreporter.verbosity > 0:  # -v only: no stray line under -q
        terminalreporter.write_line(lib.TALLY.summary())
