"""Fixtures for the OWL plugin tests: the reference vectors (skipped when absent) and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = next(p for p in Path(__file__).resolve().parents if (p / "core" / "truthprune").is_dir())
VECTORS = REPO.parent / "shared" / "spec" / "reference_vectors.json"


@pytest.fixture(scope="session")
def reference_vectors() -> dict:
    """{model: {"inputs": ..., "expected": ...}} from ../shared/spec, or skip."""
    if not VECTORS.exists():
        pytest.skip(f"{VECTORS} is absent")
    data = json.loads(VECTORS.read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


@pytest.fixture
def cli():
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "truthprune", *args], capture_output=True, text=True, timeout=120)

    return run
