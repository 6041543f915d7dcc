"""bench/retention plumbing on synthetic data: selection, clusters, splits, the four item scores,
method specs and the JSON/safetensors store."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from retention import methods, protocol, store  # noqa: E402
from retention_data import write_truth_dir  # noqa: E402

import truthprune  # noqa: E402
from truthprune import StatementSet, UserError  # noqa: E402


def test_balanced_rows_caps_and_balances():
    rng = np.random.default_rng(0)
    labels = np.array([1] * 30 + [0] * 70)
    rows = protocol.balanced_rows(labels, 40, rng)
    assert len(rows) == 40 and labels[rows].sum() == 20 and np.all(np.diff(rows) > 0)
    rows = protocol.balanced_rows(np.array([1] * 5 + [0] * 95), 40, rng)
    assert len(rows) == 40 and np.array([1] * 5 + [0] * 95)[rows].sum() == 5  # the small class whole
    np.testing.assert_array_equal(protocol.balanced_rows(labels, None, rng), np.arange(100))


@pytest.fixture(scope="module")
def truth_dir(tmp_path_factory):
    return write_truth_dir(tmp_path_factory.mktemp("truth"))


def test_load_sets_cleans_caps_and_keeps_twins_aligned(truth_dir):
    names = ["animal_class", "neg_animal_class", "larger_than", "counterfact_true_false"]
    sets = {s.name: s for s in protocol.load_sets(str(truth_dir), names, {"animal_class": 20, "numbers": None})}
    a, n = sets["animal_class"], sets["neg_animal_class"]
    assert len(a) == len(n) == 20 and a.labels.sum() == 10
    assert [s.replace(" is a ", " is not a ") for s in a.statements] == n.statements  # same rows
    assert len(sets["larger_than"]) == 60  # no cap for its family
    cf = sets["counterfact_true_false"]
    assert not any("located" in s for s in cf.statements)  # place relations filtered out
    assert "The mother tongue of P1 is L0." not in cf.statements  # labelled both ways: dropped
    assert len(set(cf.statements)) == len(cf.statements) and len(cf) == 95
    assert cf.entities()[0] == "p1" or cf.entities()[0].startswith("p")  # grouped by the subject column


def test_family_clusters_join_twins_and_shared_entities():
    def make(name, subjects, labels):
        return StatementSet(name, [f"{s} is item{i}." for i, s in enumerate(subjects)], np.array(labels))

    sets = [make("larger_than", ["one", "one", "two", "two"], [1, 0, 1, 0]),
            make("smaller_than", ["two", "three", "three", "one"], [1, 0, 1, 0]),
            make("animal_class", ["cat", "dog", "cat", "dog"], [1, 0, 1, 0]),
            make("neg_animal_class", ["cat", "dog", "cat", "dog"], [0, 1, 0, 1])]
    topics = truthprune.build_topics(sets)
    cl = protocol.family_clusters(topics)
    lt, st = cl["larger_than"], cl["smaller_than"]
    assert lt[0] == lt[1] == st[3] and lt[2] == lt[3] == st[0]  # "one" and "two" shared across sets
    assert st[1] == st[2] and len({*lt, *st}) == 3
    np.testing.assert_array_equal(cl["animal_class"], cl["neg_animal_class"])
    assert cl["animal_class"].tolist() == [0, 1, 0, 1]  # numbered within its own family


def test_splits_are_disjoint_grouped_and_deterministic(truth_dir):
    sets = protocol.load_sets(str(truth_dir), ["animal_class", "neg_animal_class"], {})
    topic = truthprune.build_topics(sets)[0]
    for r in range(3):
        fit, val, test = protocol.splits(topic, r)
        assert sorted([*fit, *val, *test]) == list(range(len(topic)))
        for a, b in ((fit, val), (fit, test), (val, test)):
            assert not set(topic.groups[a]) & set(topic.groups[b])
        assert 0.15 <= len(test) / len(topic) <= 0.3 and 0.1 <= len(val) / len(topic) <= 0.3
        again = protocol.splits(topic, r)
        assert all(np.array_equal(x, y) for x, y in zip((fit, val, test), again))
    assert not np.array_equal(protocol.splits(topic, 0)[2], protocol.splits(topic, 1)[2])
    protocol.check_classes(topic, 3)


def _acts(s, n_layers, d, signal, rng):
    a = rng.normal(size=(n_layers, len(s), d))
    for k in range(n_layers):
        a[k] += signal[k] * (2 * s.labels - 1)[:, None]
    return a


def test_item_scores_four_measures(truth_dir):
    sets = protocol.load_sets(str(truth_dir), ["animal_class", "neg_animal_class"], {})
    topic = truthprune.build_topics(sets)[0]
    m = topic.members[0]
    rng = np.random.default_rng(0)
    make = truthprune.probe_factory("logreg", {})
    full = {s.name: _acts(s, 5, 8, [0, 0, 1.5, 1.5, 0.1], rng) for s in topic.members}
    choice = protocol.choose_layers(topic, full, make, seeds=2, fraction=0.4)
    assert all(c["layers"] == [2, 3] for c in choice)  # the informative layers, chosen on validation rows
    layers = [c["layers"] for c in choice]
    dense = {k: full[m.name][k] for k in range(5)}
    cache = {}

    def probe(r, k):
        if (r, k) not in cache:
            fit, val, _ = protocol.splits(topic, r)
            cache[(r, k)] = protocol.fit_probe(make, m, dense[k], np.sort(np.concatenate([fit, val])), r)
        return cache[(r, k)]

    own = protocol.item_scores(m, topic, dense, layers, make, probe)
    same = protocol.item_scores(m, topic, dense, layers, make, probe, pruned=dense)
    assert same["transfer"] == own["retrained"] == same["recentred"] and same["auroc"] == own["auroc"]
    # an affine change of the activations: the offset and scale move, the direction does not
    moved = {k: 3.0 * x + 5.0 for k, x in dense.items()}
    shifted = protocol.item_scores(m, topic, dense, layers, make, probe, pruned=moved)
    assert shifted["recentred"] == own["retrained"]  # re-centring undoes it exactly
    assert shifted["auroc"] == own["auroc"]  # ranking unchanged by a positive scale and shift
    assert np.mean(shifted["transfer"]) < np.mean(own["retrained"])  # the plain transfer suffers
    dm = protocol.dense_measures(own)
    assert dm["transfer"] == dm["recentred"] == own["retrained"]
    assert all(len(v) == 2 and len(v[0]) == len(protocol.splits(topic, 0)[2]) for v in own.values())


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


def test_store_atomic_identity_and_tensors(tmp_path):
    p = tmp_path / "a" / "x.json"
    store.write_json(p, {"identity_hash": store.identity_hash({"k": 1}), "v": 2})
    assert store.load_matching(p, {"k": 1})["v"] == 2
    assert store.load_matching(p, {"k": 2}) is None
    assert [f.name for f in p.parent.iterdir()] == ["x.json"]  # no temporary left behind
    t = tmp_path / "t.safetensors"
    store.write_tensors(t, {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}, {"identity_hash": "h"})
    np.testing.assert_array_equal(store.read_tensors(t)["a"], np.arange(6).reshape(2, 3))
    assert store.tensor_meta(t) == {"identity_hash": "h"}
    assert store.read_tensors(tmp_path / "missing") is None and store.tensor_meta(tmp_path / "missing") == {}
    assert store.point_name("ours+tplo", {"nm": "2:4"}, 2) == "ours+tplo@2-4@p2"
    assert store.point_name("wanda", {"sparsity": 0.5, "nm": None}) == "wanda@0.5"


def test_bench_uses_public_names_and_no_pickles():
    """bench/ reaches core through ``truthprune``'s public names (and the CLI) only, and stores no
    pickles (a pickle of a core object stops loading when core's modules move)."""
    import re

    bench = Path(__file__).resolve().parents[1] / "bench"
    for path in bench.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"\bimport pickle|pickle\.(dump|load)", text), path
        for name in re.findall(r"truthprune\.(?:run|pruning|truth)\.\w+", text):
            pytest.fail(f"{path.relative_to(bench)} reaches into core internals: {name}")
        if path.parent.name == "retention" or path.name == "truth_retention.py":
            assert not re.findall(r"truthprune\.\w+\.\w+", text), path
