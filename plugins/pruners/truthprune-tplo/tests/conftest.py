"""Fixtures for the TPLO plugin tests: reference vectors and REFERENCE.md profiles (skipped when
absent) and the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = next(p for p in Path(__file__).resolve().parents if (p / "core" / "truthprune").is_dir())
VECTORS = REPO.parent / "shared" / "spec" / "reference_vectors.json"
REFERENCE_MD = REPO.parent / "shared" / "spec" / "REFERENCE.md"


@pytest.fixture(scope="session")
def reference_vectors() -> dict:
    """{model: {"inputs": ..., "expected": ...}} from ../shared/spec, or skip."""
    if not VECTORS.exists():
        pytest.skip(f"{VECTORS} is absent")
    data = json.loads(VECTORS.read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


@pytest.fixture(scope="session")
def appendix_ratios() -> dict[str, dict[str, list[float]]]:
    """Per-model separation ratios {model: {dataset: [...]}} parsed from REFERENCE.md Appendix A.

    Llama-2-13b-chat's arrays exist only there (not in the vectors file).
    """
    if not REFERENCE_MD.exists():
        pytest.skip(f"{REFERENCE_MD} is absent")
    text = REFERENCE_MD.read_text()
    appendix = text[text.index("## Appendix A") :]
    models: dict[str, dict[str, list[float]]] = {}
    for section in re.split(r"\n### ", appendix)[1:]:
        name = section.split(" ", 1)[0]
        rows = re.findall(r"^- (\w+): ([^\n]+)$", section, flags=re.M)
        models[name] = {ds: [float(x) for x in values.split(",")] for ds, values in rows}
    return models


@pytest.fixture
def cli():
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "truthprune", *args], capture_output=True, text=True, timeout=120)

    return run
