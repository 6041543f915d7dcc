"""bench/retention plumbing on synthetic activations: selection, per-item correctness, report."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from retention import methods, protocol, report, store  # noqa: E402

from truthprune import StatementSet, UserError  # noqa: E402


def _sets(n=40):
    labels = np.array([i % 2 for i in range(n)])
    aff = StatementSet("animal_class", [f"The animal{i} is a thing{i % 2}." for i in range(n)], labels)
    neg = StatementSet("neg_animal_class", [f"The animal{i} is not a thing{i % 2}." for i in range(n)], 1 - labels)
    other = StatementSet("larger_than", [f"Number{i} is larger than x{i}." for i in range(n)], labels)
    return [aff, neg, other]


def _acts(sets, n_layers, d, signal, rng):
    """Layer k carries a label signal of strength signal[k] in every coordinate (the default
    logreg is strongly L2-penalised: one informative coordinate alone would be shrunk away)."""
    out = {}
    for s in sets:
        a = rng.normal(size=(n_layers, len(s), d)).astype(np.float32)
        for k in range(n_layers):
            a[k] += signal[k] * (2 * s.labels - 1)[:, None]
        out[s.name] = a
    return out


def test_balanced_rows_caps_and_balances():
    rng = np.random.default_rng(0)
    labels = np.array([1] * 30 + [0] * 70)
    rows = protocol.balanced_rows(labels, 40, rng)
    assert len(rows) == 40 and labels[rows].sum() == 20 and np.all(np.diff(rows) > 0)
    rows = protocol.balanced_rows(np.array([1] * 5 + [0] * 95), 40, rng)
    assert len(rows) == 40 and np.array([1] * 5 + [0] * 95)[rows].sum() == 5  # the small class whole
    np.testing.assert_array_equal(protocol.balanced_rows(labels, None, rng), np.arange(100))


def test_dense_then_pruned_correctness_and_report(tmp_path):
    from truthprune.truth.probing.protocol import probe_factory

    sets = _sets()
    topics = protocol.topics_of(sets)
    rng = np.random.default_rng(0)
    make = probe_factory("logreg", {})
    dense_acts = _acts(sets, 6, 8, [0, 0, 2, 2, 0.1, 0.05], rng)
    dense, probes = protocol.evaluate_dense(topics, dense_acts, make, seeds=2, top_fraction=1 / 3)
    for s in sets:
        assert dense[s.name]["top_layers"] == [2, 3]  # the two informative layers
        assert len(dense[s.name]["correct"]) == 2 and len(dense[s.name]["correct"][0]) == 2
    # twins share rows: identical test rows for a set and its negation
    assert dense["animal_class"]["test_rows"] == dense["neg_animal_class"]["test_rows"]
    layers = [2, 3]
    weak = {n: _acts([s], 6, 8, [0, 0, 0.15, 0.15, 0, 0], rng)[n][layers] for n, s in ((s.name, s) for s in sets)}
    pruned = protocol.evaluate_pruned(topics, weak, layers, dense, probes, make, seeds=2)
    same = protocol.evaluate_pruned(topics, {n: a[layers] for n, a in dense_acts.items()}, layers, dense, probes, make, 2)
    assert same["animal_class"]["transfer"] == dense["animal_class"]["correct"]  # dense probes on dense acts
    dense_doc = {"sets": dense, "ppl": {"ppl": 20.0}, "truthfulqa": None}

    def point(label, sets_result):
        return {"label": label, "setting": {"sparsity": 0.5, "nm": None}, "setting_tag": "0.5", "flags": [],
                "sets": sets_result, "ppl": {"ppl": 30.0}, "prune_seconds": 1.0}

    pts = [point("wanda", pruned), point("same", same)]
    unseen = {"animal_class": ("animal_class", "neg_animal_class"), "numbers": ("larger_than",)}
    summary = report.summarize_points(dense_doc, pts, unseen, {"seen": ("larger_than",)}, n_boot=200)
    r_weak = summary["rows"][0]["R"]["unseen"]["point"]
    r_same = summary["rows"][1]["R"]["unseen"]["point"]
    assert r_same == pytest.approx(1.0)
    assert r_weak < 1.0
    d = summary["rows"][1]["diff"]["wanda"]["unseen"]
    assert d["point"] == pytest.approx(r_same - r_weak) and d["ci"][0] <= d["point"] <= d["ci"][1]
    md = report.markdown(summary, dense_doc, list(unseen), ["seen"], "## test")
    assert "| same | 0.5 | 1.000" in md and "ΔR vs wanda" in md
    assert report.plot(summary, dense_doc, str(tmp_path / "r.png"))
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_method_specs():
    ms = methods.select_methods("wanda,x", ["x=--pruner truthaware --allocator tplo --pruner-opt gamma=2"])
    assert [m.label for m in ms] == ["wanda", "x"]
    assert ms[1].pruner == "truthaware" and ms[1].allocator == "tplo"
    assert methods.nm_conflict(ms[1], "2:4") and methods.nm_conflict(methods.parse_method("t", "--pruner tplo"), "2:4")
    assert methods.nm_conflict(ms[0], "2:4") is None and methods.nm_conflict(ms[1], None) is None
    assert methods.missing_plugin(ms[1], {"pruner": {"truthaware"}, "allocator": {"uniform"}}) == "allocator 'tplo' is not installed"
    cmd = methods.prune_command(ms[0], "m", {"sparsity": 0.5, "nm": None}, "/tmp/x", ["--seed", "0"])
    assert cmd[3:] == ["prune", "--model", "m", "--pruner", "wanda", "--sparsity", "0.5", "--save", "/tmp/x",
                       "--overwrite", "--seed", "0", "--quiet"]
    for bad in (["y=--allocator tplo"], ["y=--pruner wanda --seed 3"], ["nolabel"]):
        with pytest.raises(UserError):
            methods.select_methods(None, bad)
    with pytest.raises(UserError, match="unknown method"):
        methods.select_methods("nope", [])


def test_store_atomic_and_identity(tmp_path):
    p = tmp_path / "a" / "x.json"
    store.write_json(p, {"identity_hash": store.identity_hash({"k": 1}), "v": 2})
    assert store.load_matching(p, {"k": 1})["v"] == 2
    assert store.load_matching(p, {"k": 2}) is None
    assert [f.name for f in p.parent.iterdir()] == ["x.json"]  # no temporary left behind
    assert store.point_name("ours+tplo", {"nm": "2:4"}) == "ours+tplo@2-4"
    assert store.point_name("wanda", {"sparsity": 0.5, "nm": None}) == "wanda@0.5"
