"""Fixtures for the SparseGPT plugin's engine tests: a tiny random-weight Llama (as the core
tests build it), calibration windows, the same model saved with a character-level tokenizer for
the CLI, and a tiny true/false statement pair for the tplo allocator's truth profile."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matmuls: one thread avoids OpenMP spin-waits on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_llama():
    from truthprune.testing import tiny_llama

    return tiny_llama(seed=0, layers=3)


@pytest.fixture
def tiny_calibration():
    from truthprune.testing import tiny_calibration

    return tiny_calibration(nsamples=8, seqlen=64, seed=1)


@pytest.fixture
def tiny_dir(tmp_path) -> Path:
    """The seed-0 tiny model saved with a character-level tokenizer (for the CLI)."""
    from truthprune.testing import save_tiny_checkpoint

    return save_tiny_checkpoint(tmp_path / "tiny", seed=0, layers=3)


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
