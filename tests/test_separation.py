"""Separation ratio (B/W) and the normalised truth profile, on hand-worked examples."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import truthprune
from truthprune import UserError, separation_ratio, truth_profile


def _spec_vectors() -> Path | None:
    root = next((p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists()), None)
    path = root.parent / "shared" / "spec" / "reference_vectors.json" if root else None
    return path if path is not None and path.exists() else None


def test_one_dimension_hand_worked():
    # false {0, 2}: mean 1, unbiased var 2; true {4, 6}: mean 5, var 2; overall mean 3
    # W = (2 + 2) / 2 = 2; B = ((1-3)^2 + (5-3)^2) / 2 = 4; ratio 2
    acts = np.array([[0.0], [2.0], [4.0], [6.0]])
    assert separation_ratio(acts, [0, 0, 1, 1]) == pytest.approx(2.0)


def test_non_separating_dimension_halves_between_variance():
    # dim 2 has identical class distributions: W stays 2 (both dims have var 2), B = mean(8, 0)/2 = 2
    acts = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 1.0], [6.0, 3.0]])
    assert separation_ratio(acts, np.array([0, 0, 1, 1])) == pytest.approx(1.0)


def test_unequal_class_sizes_use_the_overall_mean():
    # false {0, 2}: mean 1, var 2; true {4, 6, 8}: mean 6, var 4; overall mean 20/5 = 4
    # W = (2 + 4)/2 = 3; B = ((1-4)^2 + (6-4)^2)/2 = 6.5; ratio 6.5/3
    acts = np.array([[0.0], [2.0], [4.0], [6.0], [8.0]])
    assert separation_ratio(acts, [0, 0, 1, 1, 1]) == pytest.approx(6.5 / 3.0)


def test_ratio_is_scale_and_shift_invariant_and_label_order_free():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(40, 8))
    labels = rng.integers(0, 2, size=40)
    acts[labels == 1] += 0.7
    base = separation_ratio(acts, labels)
    assert separation_ratio(acts * 1000.0 + 5.0, labels) == pytest.approx(base)
    perm = rng.permutation(40)
    assert separation_ratio(acts[perm], labels[perm]) == pytest.approx(base)
    assert separation_ratio(acts, 1 - labels) == pytest.approx(base)
    assert separation_ratio(acts.astype(np.float32), labels) == pytest.approx(base, rel=1e-5)


@pytest.mark.parametrize(
    "acts, labels, fragment",
    [
        (np.zeros((4,)), [0, 0, 1, 1], "[n, d]"),
        (np.ones((4, 2)), [0, 1, 1], "labels"),
        (np.ones((4, 2)), [0, 2, 1, 1], "0 (false) or 1"),
        (np.arange(6.0).reshape(3, 2), [0, 1, 1], "at least 2"),
        (np.ones((4, 2)), [0, 0, 1, 1], "zero within-class"),
        (np.array([[np.nan], [1.0], [2.0], [3.0]]), [0, 0, 1, 1], "NaN"),
    ],
)
def test_separation_ratio_rejects_bad_input(acts, labels, fragment):
    with pytest.raises(UserError, match=re.escape(fragment)):
        separation_ratio(acts, labels)


def test_truth_profile_hand_worked():
    # a: [1, 3] -> [0.25, 0.75]; b: [2, 2] -> [0.5, 0.5]; average [0.375, 0.625]
    assert truth_profile({"a": [1.0, 3.0], "b": [2.0, 2.0]}) == pytest.approx([0.375, 0.625])
    # scaling one dataset does not change its weight
    assert truth_profile({"a": [100.0, 300.0], "b": [2.0, 2.0]}) == pytest.approx([0.375, 0.625])


@pytest.mark.parametrize(
    "ratios, fragment",
    [
        ({}, "at least one dataset"),
        ({"a": [1.0, 2.0], "b": [1.0]}, "different layer counts"),
        ({"a": []}, "no per-layer"),
        ({"a": [1.0, -1.0]}, "negative"),
        ({"a": [0.0, 0.0]}, "all-zero"),
    ],
)
def test_truth_profile_rejects_bad_input(ratios, fragment):
    with pytest.raises(UserError, match=fragment):
        truth_profile(ratios)


def test_public_api_stays_torch_free():
    assert truthprune.separation_ratio is separation_ratio
    code = (
        "import sys, numpy, truthprune\n"
        "truthprune.truth_profile({'a': [1.0, 2.0]})\n"
        "truthprune.separation_ratio(numpy.arange(8.0).reshape(4, 2), [0, 0, 1, 1])\n"
        "print('TORCH', 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "TORCH False" in out.stdout, out.stdout + out.stderr


@pytest.mark.skipif(_spec_vectors() is None, reason="../shared/spec/reference_vectors.json is absent")
def test_truth_profile_reproduces_reference_vectors():
    vectors = json.loads(_spec_vectors().read_text())
    models = [k for k in vectors if not k.startswith("_")]
    assert models
    for model in models:
        got = truth_profile(vectors[model]["inputs"]["separation_ratio"])
        assert got == pytest.approx(vectors[model]["expected"]["truth_profile"], abs=1e-6), model
        assert sum(got) == pytest.approx(1.0)
