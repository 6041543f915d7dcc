"""Fixtures: a tiny random-weight Llama (hidden 32, so group sizes 8/16 make several groups),
random calibration windows, and the same model saved with a character tokenizer for the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matmuls: one thread avoids OpenMP spin-waits on a shared machine."""
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
