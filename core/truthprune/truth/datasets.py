"""True/false statement sets in the Truth-is-Universal (TiU) CSV format, and their topic pairs.

A set is one CSV with at least the columns ``statement`` and ``label`` (1 = true, 0 = false);
other columns (``city``, ``n1``, ...) are kept as ``extra``. A *topic pair* is an affirmative set
and its negated twin (``cities`` / ``neg_cities``), row-aligned: row i of the negated file negates
row i of the affirmative one. Probes that separate truth from polarity (TTPD, CCS) need those
pairs, and the probing protocol needs them to keep a statement and its negation on the same side
of every train/test split.

Validation is strict because a silently broken file gives plausible but meaningless accuracies:
missing columns, labels other than 0/1, a single class, and one statement labelled both true and
false are one-line :class:`UserError`\\ s naming the file and the row. Repeated statements follow
the ``duplicates`` policy: ``"consistent"`` (default) allows a repeat with the *same* label (the
published ``sp_en_trans`` repeats three rows) and rejects one labelled both true and false (the
published ``*_disj`` and ``counterfact`` files have such rows); ``"error"`` rejects every repeat;
``"keep"`` keeps all of them with a warning. Repeats always land on the same side of a split (see
:func:`entity_keys`), so they cannot leak from train to test.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..textio import csv_dict_rows, describe, finite_label, require_file

log = logging.getLogger(__name__)

NEGATED_PREFIX = "neg_"
REQUIRED_COLUMNS = ("statement", "label")
DUPLICATE_POLICIES = ("consistent", "error", "keep")


def default_polarity(name: str) -> int:
    """+1 for an affirmative set, -1 for a negated one (the TiU ``neg_`` naming rule)."""
    return -1 if name.startswith(NEGATED_PREFIX) else 1


@dataclass
class StatementSet:
    """One labelled statement set.

    ``labels`` is an int array of 0/1; ``polarity`` is +1 (affirmative) or -1 (negated);
    ``extra`` maps every other CSV column to its per-row string values.
    """

    name: str
    statements: list[str]
    labels: np.ndarray
    polarity: int = 0
    extra: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if self.polarity == 0:
            self.polarity = default_polarity(self.name)
        if self.polarity not in (1, -1):
            raise UserError(f"statement set {self.name!r}: polarity must be +1 or -1, got {self.polarity}")
        validate_statements(self.name, self.statements, self.labels, where=self.source or self.name)

    def __len__(self) -> int:
        return len(self.statements)

    @property
    def content_hash(self) -> str:
        """sha256 over statements and labels: the activation cache key part for this set."""
        return statements_hash(self.statements, self.labels)

    def subset(self, rows: Sequence[int] | np.ndarray) -> StatementSet:
        """The rows ``rows`` of this set (statements, labels and extra columns), same name and polarity."""
        rows = [int(i) for i in rows]
        return StatementSet(
            name=self.name,
            statements=[self.statements[i] for i in rows],
            labels=self.labels[rows],
            polarity=self.polarity,
            extra={k: [v[i] for i in rows] for k, v in self.extra.items()},
            source=self.source,
        )

    def entities(self) -> list[str]:
        """The subject entity of each row, for grouped train/test splits (see :func:`entity_keys`)."""
        return entity_keys(self.statements, self.extra.get("entity"))


def statements_hash(statements: Sequence[str], labels: Iterable[int] | None = None) -> str:
    h = hashlib.sha256()
    for s in statements:
        h.update(s.encode("utf-8"))
        h.update(b"\x00")
    if labels is not None:
        h.update(b"\x01" + ",".join(str(int(v)) for v in labels).encode())
    return h.hexdigest()


def validate_statements(
    name: str, statements: Sequence[str], labels: np.ndarray, where: str, duplicates: str = "keep"
) -> int:
    """Raise a one-line UserError for labels outside {0,1}, one class only, empty or repeated rows
    (per the ``duplicates`` policy); return the number of repeated rows that were allowed.

    Row numbers in messages are CSV line numbers (header = line 1) when ``where`` is a file.
    """
    if len(statements) != len(labels):
        raise UserError(f"{where}: {len(statements)} statements but {len(labels)} labels")
    if not statements:
        raise UserError(f"{where}: no statements; a statement set needs rows under the header 'statement,label'")
    bad = np.flatnonzero((labels != 0) & (labels != 1))
    if bad.size:
        i = int(bad[0])
        raise UserError(f"{where}: row {i + 2}: label {labels[i]} is not 0 or 1 (1 = true, 0 = false)")
    if len(np.unique(labels)) < 2:
        only = "true" if labels[0] == 1 else "false"
        raise UserError(f"{where}: every statement is {only}; a probe needs both true and false statements")
    if duplicates not in DUPLICATE_POLICIES:
        raise UserError(f"duplicates policy {duplicates!r} is not one of {', '.join(DUPLICATE_POLICIES)}")
    seen: dict[str, int] = {}
    repeats = 0
    for i, s in enumerate(statements):
        if not s.strip():
            raise UserError(f"{where}: row {i + 2}: empty statement")
        j = seen.setdefault(s, i)
        if j == i:
            continue
        repeats += 1
        if duplicates == "error":
            raise UserError(f"{where}: rows {j + 2} and {i + 2} repeat the statement {s!r}; remove one")
        if duplicates == "consistent" and labels[j] != labels[i]:
            raise UserError(
                f"{where}: rows {j + 2} and {i + 2}: the same statement is labelled both true and false "
                f"({s!r}); fix the file or keep both with --allow-duplicates"
            )
    return repeats


def load_statement_csv(
    path: str | Path, name: str | None = None, polarity: int | None = None, duplicates: str = "consistent"
) -> StatementSet:
    """Read one TiU-format CSV (``statement,label[,...]``) into a validated :class:`StatementSet`."""
    p = Path(path)

    require_file(p, "statement file", "pass a UTF-8 CSV with the header 'statement,label'")
    columns, reader = csv_dict_rows(p, "statement file", "pass a UTF-8 CSV with the header 'statement,label'")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise UserError(
            f"{p}: missing column(s) {', '.join(missing)}; the header must contain 'statement,label' "
            f"(found: {', '.join(columns) or 'no header'})"
        )
    statements: list[str] = []
    labels: list[int] = []
    extra: dict[str, list[str]] = {c: [] for c in columns if c not in REQUIRED_COLUMNS}
    for i, row in enumerate(reader):
        raw = (row.get("label") or "").strip()
        value = finite_label(raw, f"{p}: row {i + 2}")
        statements.append((row.get("statement") or "").strip())
        labels.append(int(value))
        for c in extra:
            extra[c].append(row.get(c) or "")
    set_name = name or p.stem
    labels_arr = np.asarray(labels, dtype=np.int64)
    repeats = validate_statements(set_name, statements, labels_arr, where=str(p), duplicates=duplicates)
    if repeats:
        log.info("%s: %d repeated statement(s) kept; repeats share one entity group in splits", p, repeats)
    return StatementSet(
        name=set_name,
        statements=statements,
        labels=labels_arr,
        polarity=polarity or default_polarity(set_name),
        extra=extra,
        source=str(p),
    )


def load_statement_dir(
    directory: str | Path, names: Sequence[str] | None = None, duplicates: str = "consistent"
) -> list[StatementSet]:
    """Load ``names`` (file stems) from ``directory``, or every ``*.csv`` there when None, in order."""
    d = Path(directory)
    if not d.is_dir():
        raise UserError(f"truth data directory {str(d)!r} {describe(d)}; pass --truth-data DIR with TiU CSV files")
    available = sorted(p.stem for p in d.glob("*.csv"))
    if names is None:
        names = available
    if not names or not available:
        raise UserError(f"{d} contains no .csv statement files; pass --truth-data DIR with TiU CSV files (statement,label)")
    missing = [n for n in names if n not in available]
    if missing:
        raise UserError(
            f"{d}: no statement file(s) {', '.join(n + '.csv' for n in missing)}; available: {', '.join(available) or 'none'}"
        )
    return [load_statement_csv(d / f"{n}.csv", duplicates=duplicates) for n in names]


@dataclass(frozen=True)
class TopicPair:
    """An affirmative set and its row-aligned negated twin (``negated`` may be None: no twin)."""

    affirmative: str
    negated: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return (self.affirmative,) if self.negated is None else (self.affirmative, self.negated)


def default_topic_pairs(names: Sequence[str]) -> list[TopicPair]:
    """Pair ``X`` with ``neg_X`` when both are present; everything else is a topic of its own.

    Order follows the first appearance of each topic in ``names``.
    """
    present = set(names)
    pairs: list[TopicPair] = []
    done: set[str] = set()
    for n in names:
        if n in done:
            continue
        if n.startswith(NEGATED_PREFIX) and n[len(NEGATED_PREFIX) :] in present:
            base = n[len(NEGATED_PREFIX) :]
            pairs.append(TopicPair(base, n))
            done.update((base, n))
        elif NEGATED_PREFIX + n in present:
            pairs.append(TopicPair(n, NEGATED_PREFIX + n))
            done.update((n, NEGATED_PREFIX + n))
        else:
            pairs.append(TopicPair(n))
            done.add(n)
    return pairs


def parse_topic_pairs(spec: str) -> list[TopicPair]:
    """Parse ``"cities:neg_cities,facts:not_facts"`` (affirmative:negated, comma separated)."""
    pairs = []
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        a, sep, b = item.partition(":")
        if not sep or not a.strip() or not b.strip():
            raise UserError(f"topic pair {item!r} is not 'affirmative:negated', e.g. 'cities:neg_cities'")
        pairs.append(TopicPair(a.strip(), b.strip()))
    return pairs


def check_topic_pairs(sets: Sequence[StatementSet], pairs: Sequence[TopicPair]) -> None:
    """Both members exist, each set is in at most one pair, twins have equal length."""
    by_name = {s.name: s for s in sets}
    used: dict[str, TopicPair] = {}
    for pair in pairs:
        for n in pair.names:
            if n not in by_name:
                raise UserError(f"topic pair {pair.affirmative}:{pair.negated} names {n!r}, which is not loaded")
            if n in used:
                raise UserError(f"statement set {n!r} appears in two topic pairs; each set belongs to one pair")
            used[n] = pair
        if pair.negated is not None:
            a, b = by_name[pair.affirmative], by_name[pair.negated]
            if len(a) != len(b):
                raise UserError(
                    f"topic pair {a.name}:{b.name}: {len(a)} vs {len(b)} rows; negated twins must be row-aligned"
                )


# Verbs that end the subject of the templated TiU sentences ("The city of X is in Y.",
# "X has the symbol Y.", "The Spanish word 'x' means 'y'.", "Fifty-one is larger than ...").
_SUBJECT_END = re.compile(
    r"\s(?:is|are|was|were|has|have|had|does|do|did|means|mean|can|contains|lives|eats|belongs)\s",
    flags=re.IGNORECASE,
)


_PRONOUNS = frozenset({"it", "there", "this", "that", "they", "he", "she", "we", "you", "i"})


def subject_of(statement: str) -> str:
    """The words before the first main verb, lower-cased; the whole statement when none is found.

    Why a verb heuristic: most TiU files have no entity column, yet every statement about the
    same subject (a city, a word, an element, a number) must stay on one side of a split.
    Over-merging is harmless (coarser groups); under-merging would leak pairs. A bare pronoun
    subject ("It is the case both that the city of X is ...") is skipped in favour of the
    subject of the next clause (text after the last "that" before the next verb).
    """
    for m in _SUBJECT_END.finditer(statement):
        head = statement[: m.start()]
        cut = head.lower().rfind(" that ")
        if cut >= 0:
            head = head[cut + len(" that ") :]
        key = " ".join(head.lower().split())
        if key and key not in _PRONOUNS:
            return key
    return " ".join(statement.lower().split())


def entity_keys(statements: Sequence[str], explicit: Sequence[str] | None = None) -> list[str]:
    """Per-row entity key: the explicit column when given, else :func:`subject_of`."""
    if explicit is not None:
        return [str(e).strip().lower() or subject_of(s) for e, s in zip(explicit, statements)]
    return [subject_of(s) for s in statements]


__all__ = [
    "StatementSet",
    "TopicPair",
    "load_statement_csv",
    "load_statement_dir",
    "default_topic_pairs",
    "parse_topic_pairs",
    "check_topic_pairs",
    "default_polarity",
    "entity_keys",
    "subject_of",
    "statements_hash",
]
