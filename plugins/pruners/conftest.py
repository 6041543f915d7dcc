"""Fixtures shared by this repository's pruner-plugin tests (owl, tplo, ...): the reference vectors
of ../shared/spec (the project's reference data, skipped when absent) and the CLI in a subprocess.

Why here and not in each plugin: the owl and tplo test folders repeated both fixtures word for
word; pytest loads this conftest for every test below plugins/pruners/.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO.parent / "shared" / "spec"


@pytest.fixture(scope="session")
def reference_vectors() -> dict:
    """{model: {"inputs": ..., "expected": ...}} from ../shared/spec, or skip."""
    path = SPEC / "reference_vectors.json"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    data = json.loads(path.read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


@pytest.fixture
def cli():
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "truthprune", *args], capture_output=True, text=True, timeout=120)

    return run
