"""Topic families of statement sets, and the default leak-free build/score split.

Why: a truth-aware pruning objective, the TPLO truth profile or a truth-statement calibration
that is *built* from statements of one topic and then *scored* by probes on the same topic
measures memorised content, not preserved truth features. Every component that builds
something from statements takes its sets from :data:`DEFAULT_BUILD_SETS` by default, and the
retention benchmark scores :data:`DEFAULT_SCORED_GROUPS`; :func:`topic_of` maps any set name to
its topic family so a test can assert that the two never share a topic.

A topic family ignores polarity and composition: ``neg_cities``, ``cities_conj`` and
``cities_disj`` are all about cities; ``common_claim_true_false`` is ``common_claim``. Offline
generated sets (:mod:`truthprune.truth.generate`) are named with the ``gen_`` prefix when they
are loaded next to the TiU CSVs (their plain names collide with the CSVs); their topics map to
the TiU family they share content with: generated ``capitals`` are city/country facts
(``cities``), ``elements`` are element facts (``element_symb``), and number comparisons in
either direction are one family (``numbers``). Over-merging is the safe side: two sets wrongly
put in one family can only make the leak test stricter.

Pure Python, no numpy or torch: plugins import these names from the ``truthprune`` facade.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

NEGATED_PREFIX = "neg_"
GENERATED_PREFIX = "gen_"
# suffixes that change the form of a statement, not what it is about
_FORM_SUFFIXES = ("_true_false", "_conj", "_disj")
# base name -> topic family (names absent here are their own family)
TOPIC_FAMILIES: dict[str, str] = {
    "capitals": "cities",
    "elements": "element_symb",
    "larger_than": "numbers",
    "smaller_than": "numbers",
}

# What truth-aware objectives, the truth profile and truth calibration are built from.
DEFAULT_BUILD_TOPICS: tuple[str, ...] = ("cities", "sp_en_trans")
DEFAULT_BUILD_SETS: tuple[str, ...] = ("cities", "neg_cities", "sp_en_trans", "neg_sp_en_trans")

# What the retention benchmark scores: topics no default build component ever sees, one entry
# per topic family (the generated element and comparison sets belong to element_symb and numbers,
# so no family enters a pooled number twice) ...
DEFAULT_SCORED_GROUPS: dict[str, tuple[str, ...]] = {
    "animal_class": ("animal_class", "neg_animal_class"),
    "element_symb": ("element_symb", "neg_element_symb", "gen_elements", "neg_gen_elements"),
    "numbers": ("larger_than", "smaller_than", "gen_larger_than", "neg_gen_larger_than"),
    "common_claim": ("common_claim_true_false",),
}
# ... reported apart from the seen ones (the build topics themselves).
DEFAULT_SEEN_GROUPS: dict[str, tuple[str, ...]] = {
    "cities": ("cities", "neg_cities"),
    "sp_en_trans": ("sp_en_trans", "neg_sp_en_trans"),
}


def topic_of(set_name: str) -> str:
    """The topic family of a statement set name (a file stem, e.g. ``neg_cities`` -> ``cities``).

    Strips ``neg_`` and ``gen_`` prefixes and the ``_true_false``/``_conj``/``_disj`` suffixes,
    lower-cases, then maps through :data:`TOPIC_FAMILIES`.
    """
    name = set_name.strip().lower()
    changed = True
    while changed:
        changed = False
        for prefix in (NEGATED_PREFIX, GENERATED_PREFIX):
            if name.startswith(prefix) and len(name) > len(prefix):
                name, changed = name[len(prefix) :], True
        for suffix in _FORM_SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix):
                name, changed = name[: -len(suffix)], True
    return TOPIC_FAMILIES.get(name, name)


def shared_topics(build_sets: Iterable[str], scored_sets: Iterable[str]) -> dict[str, list[str]]:
    """Topic -> the build and scored set names that share it; empty when the split is leak-free."""
    build: dict[str, list[str]] = {}
    for n in build_sets:
        build.setdefault(topic_of(n), []).append(n)
    out: dict[str, list[str]] = {}
    for n in scored_sets:
        t = topic_of(n)
        if t in build:
            out.setdefault(t, list(build[t])).append(n)
    return out


def group_sets(groups: Mapping[str, Iterable[str]]) -> list[str]:
    """Every set name of a ``{group: sets}`` mapping, in order, once."""
    seen: dict[str, None] = {}
    for names in groups.values():
        for n in names:
            seen.setdefault(n, None)
    return list(seen)


__all__ = [
    "topic_of",
    "shared_topics",
    "group_sets",
    "TOPIC_FAMILIES",
    "GENERATED_PREFIX",
    "DEFAULT_BUILD_TOPICS",
    "DEFAULT_BUILD_SETS",
    "DEFAULT_SCORED_GROUPS",
    "DEFAULT_SEEN_GROUPS",
]
