"""Fixtures for the TPLO plugin tests: REFERENCE.md's appendix profiles (skipped when absent); the
reference vectors and the CLI come from the core's plugin author kit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from truthprune.testing.pytest_fixtures import cli, reference_vectors  # noqa: F401

REPO = next(p for p in Path(__file__).resolve().parents if (p / "core" / "truthprune").is_dir())
REFERENCE_MD = REPO.parent / "shared" / "spec" / "REFERENCE.md"


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
