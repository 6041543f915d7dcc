"""Statement selection and per-item probe correctness for the retention benchmark.

The selection is a pure function of the data and the seeds, so every method sees the same
statements, the same entity-grouped splits and therefore the same held-out items; that is what
makes the bootstrap differences between methods paired.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from truthprune import StatementSet, UserError
from truthprune.truth.probing.protocol import Topic, assemble, build_topics
from truthprune.truth.probing.runner import cap_statement_sets
from truthprune.truth.probing.splits import balanced_rows, grouped_split  # noqa: F401 (balanced_rows re-exported)
from truthprune.truth.topics import GENERATED_PREFIX, NEGATED_PREFIX

TEST_FRACTION = 0.2


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


def load_scored_sets(
    truth_dir: str | Path, names: Sequence[str], max_per_set: int | None, seed: int = 0
) -> list[StatementSet]:
    """The named sets (CSV stems in ``truth_dir``, or ``gen_``-prefixed generated sets), each
    topic pair capped to the same ``max_per_set`` class-balanced rows (seeded by topic name)."""
    from truthprune import load_statement_dir

    gen_names = [n for n in names if n.startswith(GENERATED_PREFIX) or n.startswith(NEGATED_PREFIX + GENERATED_PREFIX)]
    csv_names = [n for n in names if n not in gen_names]
    loaded = {s.name: s for s in load_statement_dir(truth_dir, csv_names)} if csv_names else {}
    if gen_names:
        generated = _generated(gen_names, seed)
        missing = [n for n in gen_names if n not in generated]
        if missing:
            raise UserError(f"no generated set(s) {', '.join(missing)}; generated topics: {', '.join(generated)}")
        loaded.update({n: generated[n] for n in gen_names})
    return cap_statement_sets([loaded[n] for n in names], max_per_set, seed)[0]  # the same draw as `truthprune run`


def topics_of(sets: Sequence[StatementSet]) -> list[Topic]:
    """Topic pairs (X with neg_X) with their entity groups, as the core protocol builds them."""
    return build_topics(sets)


def split(topic: Topic, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) rows of split ``seed``: entity-grouped, a statement and its twin on one side."""
    return grouped_split(topic.groups, TEST_FRACTION, [0, seed, zlib.crc32(topic.name.encode())])


def bits(values: np.ndarray) -> str:
    return "".join("1" if v else "0" for v in np.asarray(values, dtype=bool))


def unbits(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8) == ord("1")


def evaluate_dense(
    topics: Sequence[Topic],
    acts: Mapping[str, np.ndarray],
    make_probe: Callable[[], Any],
    seeds: int,
    top_fraction: float,
    on_set: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], dict[tuple[str, int, int], Any]]:
    """Every layer, every seed: held-out accuracy; the per-item correctness and fitted probes of
    each set's top layers (ranked by the seed-mean accuracy). ``acts[name]``: [all layers, n, d]."""
    from .stats import top_layers

    result: dict[str, Any] = {}
    probes: dict[tuple[str, int, int], Any] = {}
    for topic in topics:
        splits = [split(topic, r) for r in range(seeds)]
        for m in topic.members:
            if on_set:
                on_set(m.name)
            a = acts[m.name]
            n_layers = a.shape[0]
            correct = np.zeros((seeds, n_layers), dtype=object)
            fitted: dict[tuple[int, int], Any] = {}
            for r, (train, test) in enumerate(splits):
                _check_classes(m, train, test)
                for k in range(n_layers):
                    probe, ok = _fit_score(make_probe, m, a[k], train, test, r)
                    correct[r, k] = ok
                    fitted[(r, k)] = probe
            layer_acc = [float(np.mean([correct[r, k].mean() for r in range(seeds)])) for k in range(n_layers)]
            top = top_layers(layer_acc, top_fraction)
            result[m.name] = {
                "n": len(m),
                "topic": topic.name,
                "layer_accuracy": layer_acc,
                "top_layers": top,
                "test_rows": [test.tolist() for _, test in splits],
                "correct": [[bits(correct[r, k]) for k in top] for r in range(seeds)],
            }
            probes.update({(m.name, r, k): fitted[(r, k)] for r in range(seeds) for k in top})
    return result, probes


def evaluate_pruned(
    topics: Sequence[Topic],
    acts: Mapping[str, np.ndarray],
    layers: Sequence[int],
    dense: Mapping[str, Any],
    dense_probes: Mapping[tuple[str, int, int], Any],
    make_probe: Callable[[], Any],
    seeds: int,
) -> dict[str, Any]:
    """Per set: correctness of a probe fitted on the pruned activations (``correct``) and of the
    dense probe applied to them (``transfer``), at the dense top layers. ``acts[name]`` holds the
    layers listed in ``layers`` (in that order)."""
    pos = {k: i for i, k in enumerate(layers)}
    result: dict[str, Any] = {}
    for topic in topics:
        splits = [split(topic, r) for r in range(seeds)]
        for m in topic.members:
            info = dense[m.name]
            if [t.tolist() for _, t in splits] != info["test_rows"]:
                raise RuntimeError(f"{m.name}: the held-out rows differ from the dense run's; the data changed")
            correct, transfer = [], []
            for r, (train, test) in enumerate(splits):
                row_c, row_t = [], []
                for k in info["top_layers"]:
                    x = acts[m.name][pos[k]]
                    _, ok = _fit_score(make_probe, m, x, train, test, r)
                    row_c.append(bits(ok))
                    row_t.append(bits(_score(dense_probes[(m.name, r, k)], m, x, test, r)))
                correct.append(row_c)
                transfer.append(row_t)
            result[m.name] = {"correct": correct, "transfer": transfer}
    return result


def _check_classes(m: StatementSet, train: np.ndarray, test: np.ndarray) -> None:
    if len(np.unique(m.labels[train])) < 2:
        raise UserError(f"the training split of {m.name!r} has one class only; raise --max-per-set")
    if len(test) == 0:
        raise UserError(f"the test split of {m.name!r} is empty; raise --max-per-set")


def _score(probe: Any, m: StatementSet, x: np.ndarray, rows: np.ndarray, r: int) -> np.ndarray:
    xt, yt, mt = assemble([(m, x, rows)], seed=r)
    return np.asarray(probe.predict(xt, mt)).astype(int) == yt


def _fit_score(make_probe, m: StatementSet, x: np.ndarray, train: np.ndarray, test: np.ndarray, r: int):
    xs, ys, meta = assemble([(m, x, train)], seed=r)
    probe = make_probe().fit(xs, ys, meta)
    return probe, _score(probe, m, x, test, r)


__all__ = [
    "balanced_rows",
    "load_scored_sets",
    "topics_of",
    "split",
    "bits",
    "unbits",
    "evaluate_dense",
    "evaluate_pruned",
    "TEST_FRACTION",
]
