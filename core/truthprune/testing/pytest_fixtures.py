"""The kit's objects as pytest fixtures, so a plugin's conftest is one import line.

Why: every plugin's tests want the same tiny model, calibration windows and saved checkpoint;
importing these names into a ``conftest.py`` registers them for that test folder::

    from truthprune.testing.pytest_fixtures import tiny_calibration, tiny_dir, tiny_llama  # noqa: F401

``one_thread`` is autouse where imported: tiny matmuls on one thread avoid OpenMP spin-waits on
a busy machine. ``cli`` runs ``python -m truthprune ARGS`` in a subprocess; ``reference_vectors``
reads ``shared/spec/reference_vectors.json`` from the nearest folder above the test that has one
(a checkout next to the project's reference data), and skips the test when there is none. Seeds and sizes are those of the core tests (model seed 0, 3 layers; windows
8 x 64, seed 1).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ..threads import single_thread
from .fixtures import save_tiny_checkpoint


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
    return save_tiny_checkpoint(tmp_path / "tiny", seed=0, layers=3)


@pytest.fixture
def cli():
    """``cli(*args) -> CompletedProcess`` of ``python -m truthprune ARGS`` (text output, 120 s limit)."""
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "truthprune", *args], capture_output=True, text=True, timeout=120)

    return run


@pytest.fixture
def reference_vectors(request) -> dict:
    """{model: {"inputs": ..., "expected": ...}} from the nearest ``shared/spec/reference_vectors.json``
    above the test file, or skip."""
    for folder in Path(str(request.path)).resolve().parents:
        path = folder / "shared" / "spec" / "reference_vectors.json"
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            return {k: v for k, v in data.items() if not k.startswith("_")}
    pytest.skip("no shared/spec/reference_vectors.json above the tests (the project's reference data)")
