"""The kit's objects as pytest fixtures, so a plugin's conftest is one import line.

Why: every plugin's tests want the same tiny model, calibration windows and saved checkpoint;
importing these names into a ``conftest.py`` registers them for that test folder::

    from truthprune.testing.pytest_fixtures import tiny_calibration, tiny_dir, tiny_llama  # noqa: F401

``one_thread`` is autouse where imported: tiny matmuls on one thread avoid OpenMP spin-waits on
a busy machine. Seeds and sizes are those of the core tests (model seed 0, 3 layers; windows
8 x 64, seed 1).
"""

from __future__ import annotations

import pytest

from ..threads import single_thread


@pytest.fixture(autouse=True)
def one_thread():
    with single_thread():
        yield


@pytest.fixture
def tiny_llama():
    from .fixtures import tiny_llama as build

    return build(seed=0, layers=3)


@pytest.fixture
def tiny_calibration():
    from .fixtures import tiny_calibration as build

    return build(nsamples=8, seqlen=64, seed=1)


@pytest.fixture
def tiny_dir(tmp_path):
    """The seed-0 tiny model saved with a character-level tokenizer (for CLI tests)."""
    from .fixtures import save_tiny_checkpoint

    return save_tiny_checkpoint(tmp_path / "tiny", seed=0, layers=3)
