"""Leak-free by construction: nothing a truth-aware component builds from shares a topic with a
set the retention benchmark scores (issue 10, acceptance 4), and topic_of itself."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import truthprune
from truthprune import DEFAULT_BUILD_SETS, DEFAULT_BUILD_TOPICS, DEFAULT_SCORED_GROUPS, DEFAULT_SEEN_GROUPS, shared_topics, topic_of

REPO = Path(__file__).resolve().parents[1]
SCORED = [s for names in DEFAULT_SCORED_GROUPS.values() for s in names]


@pytest.mark.parametrize(
    "name, topic",
    [
        ("cities", "cities"),
        ("neg_cities", "cities"),
        ("cities_conj", "cities"),
        ("cities_disj", "cities"),
        ("gen_capitals", "cities"),
        ("neg_gen_cities", "cities"),
        ("capitals", "cities"),
        ("sp_en_trans", "sp_en_trans"),
        ("neg_sp_en_trans", "sp_en_trans"),
        ("common_claim_true_false", "common_claim"),
        ("counterfact_true_false", "counterfact"),
        ("larger_than", "numbers"),
        ("smaller_than", "numbers"),
        ("neg_gen_larger_than", "numbers"),
        ("element_symb", "element_symb"),
        ("gen_elements", "element_symb"),
        ("Neg_Animal_Class ", "animal_class"),
        ("animal_class_disj", "animal_class"),
    ],
)
def test_topic_of(name, topic):
    assert topic_of(name) == topic


def test_topic_of_keeps_unknown_names_and_bare_prefixes():
    assert topic_of("my_facts") == "my_facts"
    assert topic_of("neg_") == "neg_"  # nothing left to strip: the name is its own topic
    assert topic_of("gen_neg_elements") == "element_symb"  # prefix order does not matter


def test_shared_topics_reports_each_collision():
    assert shared_topics(["cities", "neg_cities"], ["animal_class", "gen_capitals", "cities_conj"]) == {
        "cities": ["cities", "neg_cities", "gen_capitals", "cities_conj"]
    }
    assert shared_topics(["cities"], ["animal_class"]) == {}


def test_default_build_and_scored_sets_share_no_topic():
    assert {topic_of(s) for s in DEFAULT_BUILD_SETS} == set(DEFAULT_BUILD_TOPICS)
    assert shared_topics(DEFAULT_BUILD_SETS, SCORED) == {}
    # the seen groups are exactly the build topics (reported apart, never in the unseen average)
    assert {topic_of(s) for names in DEFAULT_SEEN_GROUPS.values() for s in names} == set(DEFAULT_BUILD_TOPICS)


def test_tplo_truth_profile_default_sets_are_build_sets():
    from truthprune.run.truth_stages import PROFILE_SETS

    assert shared_topics(PROFILE_SETS, SCORED) == {}
    assert set(PROFILE_SETS) <= set(DEFAULT_BUILD_SETS)


def test_retention_bench_builds_only_from_the_build_sets():
    """The bench passes --truth-datasets = DEFAULT_BUILD_SETS to every prune, scores SCORED (one entry
    per topic family), and its reserved final-test family shares no topic with the build sets."""
    sys.path.insert(0, str(REPO / "bench"))
    import truth_retention

    args = truth_retention.parse_args(["--truth-data", str(REPO), "--ppl-data", str(REPO)])
    unseen, seen, reserved, common, _, _, _ = truth_retention.plan(args)
    built = common[common.index("--truth-datasets") + 1].split(",")
    assert built == list(DEFAULT_BUILD_SETS)
    scored = [s for fams in (unseen, reserved) for names in fams.values() for s in names]
    assert shared_topics(built, scored) == {}
    assert unseen == DEFAULT_SCORED_GROUPS and seen == DEFAULT_SEEN_GROUPS
    assert all(topic_of(s) == family for family, names in unseen.items() for s in names)  # each family once
    assert list(reserved) == ["counterfact"]


def test_bench_refuses_scored_sets_that_overlap_the_build_topics():
    sys.path.insert(0, str(REPO / "bench"))
    import truth_retention

    args = truth_retention.parse_args(
        ["--truth-data", str(REPO), "--ppl-data", str(REPO), "--sets", "animal_class,cities_conj"]
    )
    with pytest.raises(truthprune.UserError, match="share topics"):
        truth_retention.plan(args)


def _pruners_with_build_sets():
    registry = truthprune.get_registry()
    out = []
    for name in registry.names("pruner"):
        cls = registry.get("pruner", name)
        fields = getattr(getattr(cls, "Config", None), "model_fields", {})
        if "build_sets" in fields:
            out.append((name, cls))
    return out


def test_truthaware_default_build_sets_are_leak_free():
    registry = truthprune.get_registry()
    try:
        cls = registry.get("pruner", "truthaware")
    except truthprune.UserError:
        pytest.skip("truthprune-truthaware is not installed")
    build = list(cls.make_config({}).build_sets)
    assert build, "truthaware builds from no statement set?"
    assert shared_topics(build, SCORED) == {}


def test_every_installed_pruner_with_build_sets_is_leak_free():
    for name, cls in _pruners_with_build_sets():
        build = list(cls.make_config({}).build_sets)
        assert shared_topics(build, SCORED) == {}, name
