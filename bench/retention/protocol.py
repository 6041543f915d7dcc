"""Statement selection, splits and per-item scores of the retention benchmark.

Everything here is a pure function of the data and the seeds, so every model sees the same
statements, the same entity-grouped splits and therefore the same held-out items: that is what
makes differences between methods paired.

Splits. Per topic (a set with its row-aligned negated twin) and split seed, an entity-grouped
20 % *test* split; inside the remaining rows an entity-grouped 25 % *validation* split (20 % of
all rows). The layers a set is scored at are chosen from the dense model's validation accuracy
(probe fitted on the other 60 %), so the test items never choose a layer. Scores use probes
fitted on all 80 % training rows.

The four item scores (each in [0, 1], chance 0.5, mean over the chosen layers):

* ``retrained``: a probe fitted on the pruned model's training rows is right on the item;
* ``transfer``: the dense model's probe (same split, same layer) is right on the pruned item;
* ``auroc``: the placement value of the dense probe's score on the pruned item (for a true item
  the share of false items it outscores, ties half; for a false item the reverse), whose mean
  over the held-out items is the AUROC: threshold-free transfer;
* ``recentred``: the dense probe is right after the pruned activations are mapped, per set and
  dimension, from their own mean and spread on the (unlabelled) training rows to the dense
  model's: what transfer would be if only the offset and scale had moved.

For the dense model the three transfer scores equal ``retrained`` except ``auroc``, its own
placement value.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from truthprune import (
    GENERATED_PREFIX,
    NEGATED_PREFIX,
    ProbeMeta,
    StatementSet,
    Topic,
    UserError,
    balanced_rows,
    build_topics,
    grouped_split,
    topic_of,
)

TEST_FRACTION = 0.2
VAL_FRACTION = 0.25  # of the training rows
MEASURES = ("retrained", "transfer", "auroc", "recentred")

# The reserved final-test family: counterfact statements about anything but places (the build
# topic ``cities`` is about where places are), grouped by their subject.
RESERVED_SETS = ("counterfact_true_false",)
_PLACE_RELATION = re.compile(
    r"locat|city|capital|countr|contin|\{\} is in\b|found in|part of|belongs to|work|employ|born|died|"
    r"headquarter|based in|citizen|twin|in \{\}|passed away|life|expired|succumbed|from|native to|within|"
    r"originat|created in|founded in|formed in|started in|developed in|formulated in",
    re.IGNORECASE,
)


def _subset(s: StatementSet, rows: np.ndarray, entity: list[str] | None = None) -> StatementSet:
    extra = {k: [v[i] for i in rows] for k, v in s.extra.items()}
    if entity is not None:
        extra["entity"] = [entity[i] for i in rows]
    return StatementSet(s.name, [s.statements[i] for i in rows], s.labels[rows], s.polarity, extra, s.source)


def clean_rows(s: StatementSet) -> np.ndarray:
    """Rows kept: the first of each repeated statement, none of a statement labelled both ways,
    and for a reserved counterfact set none whose relation is about a place."""
    labels_of: dict[str, set[int]] = {}
    for text, y in zip(s.statements, s.labels):
        labels_of.setdefault(text, set()).add(int(y))
    seen: set[str] = set()
    keep = []
    relations = s.extra.get("relation") if s.name in RESERVED_SETS else None
    for i, text in enumerate(s.statements):
        if text in seen or len(labels_of[text]) > 1:
            continue
        if relations is not None and _PLACE_RELATION.search(relations[i]):
            continue
        seen.add(text)
        keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def _generated(names: Sequence[str], seed: int) -> dict[str, StatementSet]:
    """The offline generated sets named ``gen_X`` / ``neg_gen_X`` (plain names collide with the CSVs)."""
    from truthprune import generate_statement_sets

    topics = sorted({n.replace(NEGATED_PREFIX, "", 1).replace(GENERATED_PREFIX, "", 1) for n in names})
    out = {}
    for s in generate_statement_sets(seed, topics=topics):
        neg = s.name.startswith(NEGATED_PREFIX)
        base = s.name[len(NEGATED_PREFIX):] if neg else s.name
        name = (NEGATED_PREFIX if neg else "") + GENERATED_PREFIX + base
        out[name] = StatementSet(name, s.statements, s.labels, s.polarity, s.extra, s.source)
    return out


def load_sets(truth_dir: str, names: Sequence[str], caps: Mapping[str, int | None], seed: int = 0) -> list[StatementSet]:
    """The named sets (CSV stems in ``truth_dir`` or ``gen_``-prefixed generated sets), cleaned
    (``clean_rows``; a twin loses the rows its partner loses) and capped per topic at
    ``caps[family]`` class-balanced rows (seeded by the topic name; a twin keeps the same rows)."""
    from truthprune import load_statement_csv

    gen_names = [n for n in names if n.startswith(GENERATED_PREFIX) or n.startswith(NEGATED_PREFIX + GENERATED_PREFIX)]
    loaded: dict[str, StatementSet] = {}
    for n in names:
        if n in gen_names:
            continue
        try:
            loaded[n] = load_statement_csv(f"{truth_dir}/{n}.csv", duplicates="keep")
        except UserError as err:
            raise UserError(f"{err} (set {n!r} of the retention benchmark)") from None
    if gen_names:
        generated = _generated(gen_names, seed)
        missing = [n for n in gen_names if n not in generated]
        if missing:
            raise UserError(f"no generated set(s) {', '.join(missing)}; generated topics: {', '.join(generated)}")
        loaded.update({n: generated[n] for n in gen_names})
    sets = [loaded[n] for n in names]
    out: dict[str, StatementSet] = {}
    for topic in build_topics(sets):
        keep = set(clean_rows(topic.members[0]).tolist())
        for m in topic.members[1:]:
            keep &= set(clean_rows(m).tolist())
        keep_rows = np.asarray(sorted(keep), dtype=np.int64)
        first = topic.members[0]
        rng = np.random.default_rng([seed, zlib.crc32(topic.name.encode())])
        rows = keep_rows[balanced_rows(first.labels[keep_rows], caps.get(topic_of(first.name)), rng)]
        for m in topic.members:
            subject = m.extra.get("subject") if m.name in RESERVED_SETS else None
            out[m.name] = _subset(m, rows, entity=subject)
    return [out[n] for n in names]


def family_clusters(topics: Sequence[Topic]) -> dict[str, np.ndarray]:
    """Set name -> the entity cluster of each row, numbered within the set's topic family: rows of
    a set and its twin, and rows of any sets of one family that name the same entity, share a
    cluster (the bootstrap draws clusters, so they move together)."""
    parent: dict[tuple, tuple] = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a, b):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for t in topics:
        fam = topic_of(t.name)
        for m in t.members:
            for g, key in zip(t.groups, m.entities()):
                union((fam, "topic", t.name, int(g)), (fam, "entity", key))
    out: dict[str, np.ndarray] = {}
    numbering: dict[str, dict] = {}
    for t in topics:
        fam = topic_of(t.name)
        ids = numbering.setdefault(fam, {})
        rows = np.array([ids.setdefault(find((fam, "topic", t.name, int(g))), len(ids)) for g in t.groups], dtype=np.int64)
        for m in t.members:
            out[m.name] = rows
    return out


def splits(topic: Topic, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fit, validation, test) rows of split ``seed``: entity-grouped, a statement and its twin on one side."""
    key = zlib.crc32(topic.name.encode())
    train, test = grouped_split(topic.groups, TEST_FRACTION, [0, seed, key])
    fit, val = grouped_split(topic.groups[train], VAL_FRACTION, [1, seed, key])
    return train[fit], train[val], test


def _meta(m: StatementSet, n: int, seed: int) -> ProbeMeta:
    return ProbeMeta(polarity=np.full(n, m.polarity), group=np.zeros(n, dtype=np.int64), pair=np.full(n, -1), seed=seed)


def fit_probe(make_probe: Callable[[], Any], m: StatementSet, x: np.ndarray, rows: np.ndarray, seed: int):
    if len(np.unique(m.labels[rows])) < 2:
        raise UserError(f"a training split of {m.name!r} has one class only; raise its statement cap")
    return make_probe().fit(x[rows], m.labels[rows], _meta(m, len(rows), seed))


def correct(probe, m: StatementSet, x: np.ndarray, rows: np.ndarray, seed: int) -> np.ndarray:
    return np.asarray(probe.predict(x[rows], _meta(m, len(rows), seed))).astype(int) == m.labels[rows]


def placement(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-item placement values (ties half); their mean is the AUROC of ``scores`` for ``labels``."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    pos, neg = s[y], s[~y]
    out = np.full(len(s), 0.5)
    if len(pos) and len(neg):
        neg_sorted, pos_sorted = np.sort(neg), np.sort(pos)
        below = np.searchsorted(neg_sorted, pos, "left")
        ties = np.searchsorted(neg_sorted, pos, "right") - below
        out[y] = (below + 0.5 * ties) / len(neg)
        above = len(pos) - np.searchsorted(pos_sorted, neg, "right")
        ties = np.searchsorted(pos_sorted, neg, "right") - np.searchsorted(pos_sorted, neg, "left")
        out[~y] = (above + 0.5 * ties) / len(pos)
    return out


def aligned(x_pruned: np.ndarray, x_dense: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``x_pruned`` mapped per dimension from its own mean/spread on ``rows`` to the dense model's
    (unsupervised: labels are not used)."""
    mp, sp = x_pruned[rows].mean(0), x_pruned[rows].std(0)
    md, sd = x_dense[rows].mean(0), x_dense[rows].std(0)
    sp = np.where(sp > 0, sp, 1.0)
    return (x_pruned - mp) / sp * sd + md


def direction_scores(probe, x: np.ndarray) -> np.ndarray | None:
    d = probe.direction
    return None if d is None else np.asarray(x, dtype=np.float64) @ np.asarray(d, dtype=np.float64)


def choose_layers(topic: Topic, acts: Mapping[str, np.ndarray], make_probe, seeds: int, fraction: float):
    """Per split seed: the validation accuracy of every layer (mean over the topic's sets) and the
    top ``fraction`` of layers by it. ``acts[name]``: dense [all layers, n, d]."""
    from .stats import top_layers

    out = []
    for r in range(seeds):
        fit, val, _ = splits(topic, r)
        n_layers = acts[topic.members[0].name].shape[0]
        acc = [float(np.mean([correct(fit_probe(make_probe, m, acts[m.name][k], fit, r), m, acts[m.name][k], val, r).mean()
                              for m in topic.members])) for k in range(n_layers)]
        out.append({"val_accuracy": acc, "layers": top_layers(acc, fraction)})
    return out


def item_scores(m: StatementSet, topic: Topic, dense: Mapping[int, np.ndarray], layers_per_seed: Sequence[Sequence[int]],
                make_probe, dense_probe: Callable[[int, int], Any], pruned: Mapping[int, np.ndarray] | None = None) -> dict:
    """Per measure, per split seed, the layer-mean item scores on the test rows.

    ``dense[k]`` / ``pruned[k]``: the set's [n, d] activations at layer k; ``dense_probe(r, k)``
    returns the dense probe of split r at layer k (fitted once, reused by every pruned model).
    Without ``pruned``, the dense model's own scores (``retrained`` and ``auroc``)."""
    out: dict[str, list[list[float]]] = {}
    for r, layers in enumerate(layers_per_seed):
        fit, val, test = splits(topic, r)
        train = np.sort(np.concatenate([fit, val]))
        acc: dict[str, list[np.ndarray]] = {}
        for k in layers:
            probe, xd = dense_probe(r, k), dense[k]
            if pruned is None:
                acc.setdefault("retrained", []).append(correct(probe, m, xd, test, r))
                ds = direction_scores(probe, xd[test])
            else:
                xp = pruned[k]
                acc.setdefault("retrained", []).append(correct(fit_probe(make_probe, m, xp, train, r), m, xp, test, r))
                acc.setdefault("transfer", []).append(correct(probe, m, xp, test, r))
                acc.setdefault("recentred", []).append(correct(probe, m, aligned(xp, xd, train), test, r))
                ds = direction_scores(probe, xp[test])
            if ds is not None:
                acc.setdefault("auroc", []).append(placement(ds, m.labels[test]))
        for name, per_layer in acc.items():
            out.setdefault(name, []).append([round(float(v), 5) for v in np.mean(per_layer, axis=0)])
    return out


def dense_measures(scores: Mapping[str, list]) -> dict[str, list]:
    """The dense unit's value of every measure: its own probe on its own activations."""
    return {"retrained": scores["retrained"], "transfer": scores["retrained"], "recentred": scores["retrained"],
            **({"auroc": scores["auroc"]} if "auroc" in scores else {})}


def check_classes(topic: Topic, seeds: int) -> None:
    """Every split must leave both classes in fit, validation and test rows (before any model runs)."""
    for r in range(seeds):
        for part, rows in zip(("fit", "validation", "test"), splits(topic, r)):
            for m in topic.members:
                if len(rows) == 0 or len(np.unique(m.labels[rows])) < 2:
                    raise UserError(f"split seed {r} leaves the {part} rows of {m.name!r} with one class; "
                                    f"raise its statement cap or score another set")


__all__ = [
    "TEST_FRACTION",
    "VAL_FRACTION",
    "MEASURES",
    "RESERVED_SETS",
    "balanced_rows",
    "clean_rows",
    "load_sets",
    "family_clusters",
    "splits",
    "fit_probe",
    "correct",
    "placement",
    "aligned",
    "choose_layers",
    "item_scores",
    "dense_measures",
    "check_classes",
]
