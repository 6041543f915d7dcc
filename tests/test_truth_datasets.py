"""Statement CSV loading/validation, topic pairs, entity keys, and the offline generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from truthprune import UserError
from truthprune.truth.datasets import (
    StatementSet,
    TopicPair,
    check_topic_pairs,
    default_topic_pairs,
    load_statement_csv,
    load_statement_dir,
    parse_topic_pairs,
    subject_of,
)
from truthprune.truth.generate import (
    country_phrase,
    generate_statement_sets,
    generated_topic_pairs,
    number_to_words,
    write_generated_sets,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "truth_statements"


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / f"{name}.csv"
    p.write_text(text)
    return p


def test_load_csv_keeps_extra_columns_and_polarity(tmp_path):
    p = write(tmp_path, "neg_towns", "statement,label,town\nA is not in B.,0,A\nC is not in D.,1,C\n")
    s = load_statement_csv(p)
    assert s.name == "neg_towns" and s.polarity == -1
    assert s.statements == ["A is not in B.", "C is not in D."]
    assert s.labels.tolist() == [0, 1] and s.labels.dtype == np.int64
    assert s.extra == {"town": ["A", "C"]}


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("sentence,label\nA.,1\nB.,0\n", "missing column(s) statement"),
        ("statement,truth\nA.,1\nB.,0\n", "missing column(s) label"),
        ("statement,label\nA.,1\nB.,2\n", "row 3: label 2 is not 0 or 1"),
        ("statement,label\nA.,1\nB.,yes\n", "row 3: label 'yes'"),
        ("statement,label\nA.,1\nB.,1\n", "every statement is true"),
        ("statement,label\nA.,1\nB.,0\nA.,0\n", "rows 2 and 4"),
    ],
)
def test_validation_errors_name_file_and_row(tmp_path, text, fragment):
    p = write(tmp_path, "bad", text)
    with pytest.raises(UserError) as err:
        load_statement_csv(p)
    msg = str(err.value)
    assert fragment in msg and "bad.csv" in msg and "\n" not in msg


def test_duplicate_policies(tmp_path):
    p = write(tmp_path, "dups", "statement,label\nA.,1\nB.,0\nA.,1\n")
    assert len(load_statement_csv(p)) == 3  # same label: allowed by default
    with pytest.raises(UserError, match="rows 2 and 4 repeat"):
        load_statement_csv(p, duplicates="error")
    q = write(tmp_path, "conflict", "statement,label\nA.,1\nB.,0\nA.,0\n")
    assert len(load_statement_csv(q, duplicates="keep")) == 3


def test_load_dir_missing_file_lists_available(tmp_path):
    write(tmp_path, "a", "statement,label\nX.,1\nY.,0\n")
    with pytest.raises(UserError, match="no statement file.*b.csv.*available: a"):
        load_statement_dir(tmp_path, ["a", "b"])
    assert [s.name for s in load_statement_dir(tmp_path)] == ["a"]


def test_topic_pairs_by_prefix_and_override():
    pairs = default_topic_pairs(["neg_cities", "cities", "facts", "neg_orphan"])
    assert pairs == [TopicPair("cities", "neg_cities"), TopicPair("facts"), TopicPair("neg_orphan")]
    assert parse_topic_pairs("a:not_a, b:b_neg") == [TopicPair("a", "not_a"), TopicPair("b", "b_neg")]
    with pytest.raises(UserError, match="affirmative:negated"):
        parse_topic_pairs("a")
    a = StatementSet("a", ["x.", "y."], [1, 0])
    b = StatementSet("not_a", ["x no.", "y no.", "z no."], [0, 1, 1], polarity=-1)
    with pytest.raises(UserError, match="row-aligned"):
        check_topic_pairs([a, b], [TopicPair("a", "not_a")])


@pytest.mark.parametrize(
    "statement, subject",
    [
        ("The city of Krasnodar is in Russia.", "the city of krasnodar"),
        ("The city of Krasnodar is not in South Africa.", "the city of krasnodar"),
        ("Barium does not have the symbol Sb.", "barium"),
        ("The Spanish word 'con' means 'to speak'.", "the spanish word 'con'"),
        ("Fifty-one is larger than fifty-two.", "fifty-one"),
        ("It is the case both that the city of Lodz is in Poland and that X is in Y.", "the city of lodz"),
        ("No verb here", "no verb here"),
    ],
)
def test_subject_heuristic(statement, subject):
    assert subject_of(statement) == subject


def test_number_words_and_country_phrase():
    assert [number_to_words(n) for n in (0, 13, 40, 51, 99, 105)] == [
        "zero", "thirteen", "forty", "fifty-one", "ninety-nine", "one hundred and five"
    ]
    assert country_phrase("United States") == "the United States"
    assert country_phrase("The Netherlands") == "the Netherlands"
    assert country_phrase("France") == "France"
    assert country_phrase("Philippines") == "the Philippines"


def test_generator_is_deterministic_balanced_and_paired(tmp_path):
    sets = generate_statement_sets(seed=3)
    again = generate_statement_sets(seed=3)
    other = generate_statement_sets(seed=4)
    assert [s.statements for s in sets] == [s.statements for s in again]
    assert [s.statements for s in sets] != [s.statements for s in other]
    by_name = {s.name: s for s in sets}
    pairs = generated_topic_pairs()
    assert len(pairs) >= 4
    for pair in pairs:
        aff, neg = by_name[pair.affirmative], by_name[pair.negated]
        assert len(aff) >= 300 and len(aff) == len(neg)
        assert aff.labels.sum() * 2 == len(aff)  # balanced
        assert np.array_equal(neg.labels, 1 - aff.labels)  # negation flips truth
        assert aff.polarity == 1 and neg.polarity == -1
        assert len(set(aff.statements)) == len(aff)
        # row-aligned: the negated statement is the affirmative one with a negation inserted
        for a, n in zip(aff.statements[:20], neg.statements[:20]):
            assert set(a.rstrip(".").split()) - {"has"} <= set(n.rstrip(".").split())
            assert " not " in n
    cities = by_name["cities"]
    true_rows = [s for s, y in zip(cities.statements, cities.labels) if y == 1]
    assert all(s.startswith("The city of ") and " is in " in s for s in true_rows)
    paths = write_generated_sets(tmp_path, seed=3)
    assert sorted(p.stem for p in paths) == sorted(by_name)
    back = load_statement_csv(tmp_path / "neg_cities.csv", duplicates="error")
    assert back.statements == by_name["neg_cities"].statements
    assert back.extra["city"] == by_name["neg_cities"].extra["city"]


def test_generated_facts_are_true():
    import periodictable

    sets = {s.name: s for s in generate_statement_sets(seed=0)}
    el = sets["elements"]
    symbol = {e.name.capitalize(): e.symbol for e in periodictable.elements if e.number > 0}
    for st, y in zip(el.statements, el.labels):
        if " has the symbol " in st:
            name, sym = st.rstrip(".").split(" has the symbol ")
            assert (symbol[name] == sym) == bool(y)
    lt = sets["larger_than"]
    for a, b, y in zip(lt.extra["n1"], lt.extra["n2"], lt.labels):
        assert (int(a) > int(b)) == bool(y)


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared TiU data not present (../shared/data)")
def test_published_topic_pairs_load():
    sets = load_statement_dir(SHARED, ["cities", "neg_cities", "sp_en_trans", "neg_sp_en_trans"])
    assert [len(s) for s in sets] == [1496, 1496, 354, 354]
    check_topic_pairs(sets, default_topic_pairs([s.name for s in sets]))
    assert len(set(sets[0].entities())) == 748  # each city: one true and one false statement
