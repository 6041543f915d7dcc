"""SmolLM2-135M checks of extraction and probing (slow: run under the heavy-job lock).

    flock /tmp/truthprune-heavy.lock pytest -m integration tests/test_probe_integration.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration

TIU = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "truth_statements"


@pytest.fixture(scope="module")
def smollm2():
    import truthprune
    from truthprune import UserError

    try:
        return truthprune.load_model("smollm2-135m", device="cpu", dtype="float32")
    except UserError as err:
        pytest.skip(f"embedded SmolLM2 unavailable: {err}")


def test_batched_extraction_equals_batch_size_one(smollm2):
    from truthprune import extract_last_token

    statements = [
        "The city of Lodz is in Poland.",
        "Fifty-one is larger than fifty-two.",
        "The Spanish word 'uno' means 'one'.",
        "Thallium has the symbol Tl.",
        "The capital of the United Arab Emirates is not Abu Dhabi.",
        "Carbon does not have the atomic number 6.",
        "The city of Krasnodar is in South Africa.",
        "Salmon.",
    ]
    one = extract_last_token(smollm2.model, smollm2.tokenizer, statements, batch_size=1)
    many = extract_last_token(smollm2.model, smollm2.tokenizer, statements, batch_size=8)
    assert one.shape == (30, len(statements), 576)
    rel = np.abs(many - one).max(axis=-1) / np.abs(one).max(axis=-1)
    assert rel.max() < 1e-4


def _cities_best(smollm2, sets):
    from truthprune import extract_last_token, run_probe_protocol

    acts = {
        s.name: extract_last_token(smollm2.model, smollm2.tokenizer, s.statements, fingerprint=smollm2.fingerprint)
        for s in sets
    }
    res = run_probe_protocol(sets, acts, list(range(30)), probe="logreg", generalization_repeats=0, seed=0)
    return res["best_layer"]


def test_dense_logreg_on_heldout_cities(smollm2):
    if not TIU.is_dir():
        pytest.skip(f"{TIU} is absent (third-party data lives in ../shared)")
    from truthprune import load_statement_dir

    best = _cities_best(smollm2, load_statement_dir(TIU, ["cities"]))
    assert best["accuracy"] > 0.75, best


def test_dense_logreg_on_generated_cities(smollm2):
    from truthprune import generate_statement_sets

    best = _cities_best(smollm2, generate_statement_sets(seed=0, topics=["cities"]))
    assert best["accuracy"] > 0.70, best
