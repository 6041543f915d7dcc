"""Core's built-in defaults: the ``wanda`` pruner (and its alpha variant), the ``logreg`` probe and the
``pydoc`` calibration source (truthprune.builtins; docs/architecture.md, "Core runs on its own")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from truthprune import LinearStats, SparsityTarget, UserError, get_registry, pydoc_topics
from truthprune.builtins.wanda import variant_mask, variant_mask_for_alpha

# ---------------------------------------------------------------------------- wanda


def _wanda(**opts):
    return get_registry().create("pruner", "wanda", opts)


@pytest.mark.parametrize("kind, name", [("pruner", "wanda"), ("probe", "logreg"), ("calibration", "pydoc")])
def test_the_run_defaults_are_core_built_ins(kind, name):
    """Core alone runs `truthprune run`: its defaults are registered by core's own entry point."""
    from truthprune.run.config import RunConfig

    entry = get_registry().entry(kind, name)
    assert entry.distribution == "truthprune" and entry.cls.__module__.startswith("truthprune.builtins.")
    defaults = RunConfig()
    assert name in (defaults.pruner, defaults.probe, *defaults.calibration)


@pytest.mark.parametrize("name", ["wanda", "logreg", "pydoc"])
def test_the_defaults_meet_the_plugin_contracts(name):
    from truthprune.testing import check_plugin

    assert check_plugin(name)


def test_unstructured_uses_activation_norms():
    # |W| alone would prune column 0 in both rows; the activation norms flip that.
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    stats = LinearStats(n_tokens=10, sq_norm=torch.tensor([100.0, 1.0, 1.0, 1.0]))
    mask = _wanda().prune(w, stats, SparsityTarget(0.5)).mask
    # scores per row: 10, 2, 3, 4 -> prune columns 1 and 2
    assert mask.tolist() == [[False, True, True, False]] * 2


def test_two_four_pattern():
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0, 4.0, 3.0, 2.0, 1.0]])
    stats = LinearStats(n_tokens=1, sq_norm=torch.ones(8))
    mask = _wanda().prune(w, stats, SparsityTarget(0.5, (2, 4))).mask
    assert mask.tolist() == [[True, True, False, False, False, False, True, True]]


def test_variant_hand_worked_alpha():
    scores = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # row sum 10, cumsum 1, 3, 6, 10
    assert variant_mask_for_alpha(scores, 0.3).tolist() == [[True, True, False, False]]
    assert variant_mask_for_alpha(scores, 0.05).tolist() == [[False, False, False, False]]


def test_variant_reaches_target_fraction():
    torch.manual_seed(0)
    scores = torch.rand(64, 256)
    mask = variant_mask(scores, 0.5)
    assert abs(mask.float().mean().item() - 0.5) <= 0.001 + 1e-9
    # rows get different counts (per-row thresholds)
    assert mask.sum(1).unique().numel() > 1


def test_variant_option_through_plugin():
    torch.manual_seed(0)
    w = torch.randn(32, 64)
    stats = LinearStats(n_tokens=5, sq_norm=torch.rand(64) + 0.1)
    mask = _wanda(variant=True).prune(w, stats, SparsityTarget(0.4)).mask
    assert abs(mask.float().mean().item() - 0.4) <= 0.0011


# ---------------------------------------------------------------------------- logreg


def planted(n=600, d=40, seed=0, signal=2.5):
    rng = np.random.default_rng(seed)
    t = rng.normal(size=d)
    t /= np.linalg.norm(t)
    y = rng.integers(0, 2, size=n)
    scales = np.exp(rng.normal(size=d))  # anisotropic nuisance variance, plus an offset
    x = rng.normal(size=(n, d)) * 0.5 + 5.0 + signal * (2 * y - 1)[:, None] * t
    x[:, :5] += rng.normal(size=(n, 5)) * scales[:5]
    return x.astype(np.float32), y, t


def cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize(
    "options, min_cos",
    [
        ({}, 0.8),
        ({"C": None, "standardize": False, "max_iter": 100}, 0.8),
        ({"standardize": False}, 0.8),
        ({"C": 1.0, "l1_ratio": 1.0}, 0.7),  # L1 sparsifies a dense planted direction
    ],
)
def test_recovers_planted_direction(options, min_cos):
    x, y, t = planted()
    probe = get_registry().create("probe", "logreg", options)
    probe.fit(x[:400], y[:400])
    assert probe.score(x[400:], y[400:]) > 0.95
    assert cos(probe.direction, t) > min_cos
    assert set(np.unique(probe.predict(x[400:]))) <= {0, 1}


def test_is_deterministic_and_standardisation_folds_into_direction():
    x, y, _ = planted(seed=1)
    a = get_registry().create("probe", "logreg", {}).fit(x, y)
    b = get_registry().create("probe", "logreg", {}).fit(x, y)
    assert np.array_equal(a.direction, b.direction)
    # decision = w_raw . x + const: the raw-space direction reproduces the decision function
    dec = a.decision_function(x)
    proj = x.astype(np.float64) @ a.direction
    assert np.allclose(dec - proj, (dec - proj)[0], atol=1e-6)


def test_bad_options_are_user_errors():
    with pytest.raises(UserError, match="C"):
        get_registry().create("probe", "logreg", {"C": -1})
    with pytest.raises(UserError, match="unknown option 'penalty'"):
        get_registry().create("probe", "logreg", {"penalty": "l2"})


# ---------------------------------------------------------------------------- pydoc


def source(name, **options):
    return get_registry().create("calibration", name, options)


def test_pydoc_halves_are_disjoint_and_cover_all_topics():
    from pydoc_data.topics import topics

    calib, held = pydoc_topics("calibration"), pydoc_topics("heldout")
    assert calib and held and not set(calib) & set(held)
    assert sorted(calib + held) == sorted(topics.values())
    assert abs(len(calib) - len(held)) <= len(topics) // 4  # a hash split: roughly half each


def test_pydoc_source_windows_come_from_the_calibration_half():
    from truthprune.testing import TinyTokenizer

    tok = TinyTokenizer()
    src = source("pydoc")
    a = src.samples(tok, 4, 200, 0)
    assert a.input_ids.shape == (4, 200) and a.attention_mask.all()
    assert torch.equal(a.input_ids, src.samples(tok, 4, 200, 0).input_ids)

    def as_seen(texts):  # the text as the tokenizer maps it (its ids wrap a few characters)
        return tok.decode(tok("\n".join(texts), add_special_tokens=False)["input_ids"])

    calib, held = as_seen(pydoc_topics("calibration")), as_seen(pydoc_topics("heldout"))
    for row in a.input_ids.tolist():
        piece = tok.decode(row)[:60]
        assert len(piece) == 60 and piece in calib
        assert piece not in held or piece in calib
    single = source("pydoc", format="single", padding_side="right").samples(tok, 3, 20000, 0)
    assert (single.attention_mask.sum(1) < 20000).all()
