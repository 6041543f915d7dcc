"""Fixtures for the structured plugin: a tiny GQA Llama saved with a character tokenizer."""

from __future__ import annotations

import pytest
import torch
from truthprune.testing.pytest_fixtures import one_thread  # noqa: F401  (autouse: tiny matmuls on one thread)


def make_tiny(seed: int = 0, dtype=torch.float32):
    from truthprune.testing import tiny_llama

    return tiny_llama(seed=seed, layers=3).to(dtype)


@pytest.fixture
def tiny():
    return make_tiny()


@pytest.fixture
def calib():
    from truthprune import CalibrationSamples

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 128, (6, 24), generator=g)
    mask = torch.ones_like(ids)
    mask[5, 18:] = 0  # one padded window: padding must not count
    return CalibrationSamples(ids, mask)


@pytest.fixture
def tiny_dir(tmp_path):
    from truthprune.testing import save_tiny_checkpoint

    return save_tiny_checkpoint(tmp_path / "tiny", seed=0, layers=3)


@pytest.fixture
def text_file(tmp_path):
    """Local training/eval text: blank-line separated paragraphs of plain characters."""
    import random

    rng = random.Random(0)
    words = ["truth", "prune", "model", "layer", "the", "a", "of", "and", "heads", "channel", "entropy", "loss"]
    paras = [" ".join(rng.choice(words) for _ in range(60)) for _ in range(40)]
    path = tmp_path / "text.txt"
    path.write_text("\n\n".join(paras))
    return path


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    from truthprune.cli.main import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def make_model():
    """``make_model(seed=0, dtype=torch.float32)``: a fresh tiny model (same seed -> same weights)."""
    return make_tiny


@pytest.fixture
def cli(capsys):
    """``cli(*args) -> (exit code, stdout, stderr)``, the CLI run in this process."""
    return lambda *args: run_cli(capsys, *args)
