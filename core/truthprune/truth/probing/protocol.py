"""The probing protocol (reference 10.5, adapted) on precomputed activations.

Given statement sets, their activations [n_layers, n, d] and a probe name, it measures:

(a) per-layer held-out accuracy on each set, with an entity-grouped split (see ``splits``);
    probes that need polarity (TTPD, CCS) train on a topic's affirmative+negated training rows
    and are scored on each member's test rows; other probes train and test within one set;
(b) cross-topic generalisation: each topic (affirmative set + negated twin) is held out in turn,
    the probe is trained on the other topics, each subsampled to the size of the smallest set
    (the same rows for a set and its twin), and scored on the held-out sets in full; repeated
    with seeds, mean +- population std;
(c) the best layer (highest mean held-out accuracy over the sets);
(d) the per-layer separation ratio of every set and the normalised truth profile;
(e) :func:`compare_dense_pruned`: all of that on dense and pruned activations side by side, plus
    "transfer" accuracy: the probe fitted on dense training rows scored on pruned test rows.

Everything returned is plain JSON-able dicts, lists and floats. Determinism: every random
choice uses ``np.random.default_rng`` seeded from (seed, repeat, topic), never global state.
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import UserError
from ...plugin.interfaces import Probe, ProbeMeta
from ..datasets import StatementSet, TopicPair, check_topic_pairs, default_topic_pairs
from .splits import balanced_subsample, group_rows, grouped_split
from ...plugin.contracts import checked_probe
from ...plugin.registry import get_registry
from ...progress import bar

log = logging.getLogger(__name__)


@dataclass
class Topic:
    """One topic: its row-aligned member sets (affirmative first) and per-row entity groups."""

    name: str
    members: list[StatementSet]
    groups: np.ndarray

    def __len__(self) -> int:
        return len(self.members[0])


def build_topics(sets: Sequence[StatementSet], pairs: Sequence[TopicPair] | None = None) -> list[Topic]:
    """One :class:`Topic` per topic pair (default: ``X`` with ``neg_X`` when both are present),
    each with the entity groups of its rows, so that a split keeps a statement, its repeats and
    its negated twin on one side. Sets outside every pair become topics of their own."""
    pairs = list(pairs) if pairs is not None else default_topic_pairs([s.name for s in sets])
    check_topic_pairs(sets, pairs)
    by_name = {s.name: s for s in sets}
    covered = {n for p in pairs for n in p.names}
    pairs += [TopicPair(s.name) for s in sets if s.name not in covered]
    topics = []
    for p in pairs:
        members = [by_name[n] for n in p.names]
        topics.append(Topic(p.affirmative, members, group_rows([m.entities() for m in members])))
    return topics


def probe_factory(probe: str | Callable[[], Probe], options: Mapping[str, Any] | None = None) -> Callable[[], Probe]:
    """A callable returning a fresh probe; a name is looked up in the plugin registry (options validated now)."""
    if callable(probe) and not isinstance(probe, str):
        return lambda: checked_probe(probe())

    cls = get_registry().get("probe", probe)
    config = cls.make_config(dict(options or {}))
    return lambda: checked_probe(cls(config))


def assemble(parts: Sequence[tuple[StatementSet, np.ndarray, np.ndarray]], seed: int = 0):
    """Stack (set, acts_2d, rows) parts into (X, y, ProbeMeta).

    ``group`` is the part index (per-dataset centring), ``pair`` links each affirmative row to
    the row of the same index in a negated part with the same rows that follows it (a twin).
    """
    xs, ys, pol, grp = [], [], [], []
    offsets = []
    total = 0
    for k, (s, acts, rows) in enumerate(parts):
        xs.append(acts[rows])
        ys.append(s.labels[rows])
        pol.append(np.full(len(rows), s.polarity))
        grp.append(np.full(len(rows), k))
        offsets.append(total)
        total += len(rows)
    pair = np.full(total, -1, dtype=np.int64)
    for k in range(len(parts) - 1):
        (s, _, rows), (t, _, rows2) = parts[k], parts[k + 1]
        if s.polarity > 0 and t.polarity < 0 and np.array_equal(rows, rows2) and len(s) == len(t):
            pair[offsets[k] : offsets[k] + len(rows)] = offsets[k + 1] + np.arange(len(rows))
    meta = ProbeMeta(polarity=np.concatenate(pol), group=np.concatenate(grp), pair=pair, seed=seed)
    return np.concatenate(xs), np.concatenate(ys), meta


def _split_seed(seed: int, repeat: int, name: str) -> list[int]:
    return [seed, repeat, zlib.crc32(name.encode())]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std())


def heldout_accuracy(
    topics: Sequence[Topic],
    acts: Mapping[str, np.ndarray],
    make_probe: Callable[[], Probe],
    test_fraction: float = 0.2,
    repeats: int = 1,
    seed: int = 0,
    extra_acts: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> tuple[dict[str, list[list[float]]], dict[str, dict[str, list[list[float]]]], dict[str, str]]:
    """Per set and layer, the held-out accuracies of each repeat: acc[set][layer][repeat].

    ``extra_acts`` (tag -> activations) scores the same fitted probe on other activations of the
    same statements (the transfer accuracy). Returns (acc, extra_acc, skipped reasons).
    """
    needs_pairs = bool(getattr(make_probe(), "needs_polarity", False))
    extra_acts = extra_acts or {}
    n_layers = next(iter(acts.values())).shape[0]
    acc: dict[str, list[list[float]]] = {}
    extra: dict[str, dict[str, list[list[float]]]] = {tag: {} for tag in extra_acts}
    skipped: dict[str, str] = {}
    with bar("fitting probes", len(topics) * repeats * n_layers, unit="topic-layers") as advance:
        _heldout_loop(topics, acts, make_probe, test_fraction, repeats, seed, extra_acts, needs_pairs, n_layers, acc, extra,
                      skipped, advance)
    return acc, extra, skipped


def _heldout_loop(topics, acts, make_probe, test_fraction, repeats, seed, extra_acts, needs_pairs, n_layers, acc, extra,
                  skipped, advance) -> None:
    """The fits of :func:`heldout_accuracy` (one probe per topic member, split and layer)."""
    for topic in topics:
        if needs_pairs and len(topic.members) < 2:
            skipped[topic.name] = "needs a negated twin (neg_ set) for this probe"
            continue
        units = [topic.members] if needs_pairs else [[m] for m in topic.members]
        for s in topic.members:
            acc[s.name] = [[] for _ in range(n_layers)]
            for tag in extra_acts:
                extra[tag][s.name] = [[] for _ in range(n_layers)]
        for r in range(repeats):
            train, test = grouped_split(topic.groups, test_fraction, _split_seed(seed, r, topic.name))
            for unit in units:
                if any(len(np.unique(m.labels[train])) < 2 for m in unit):
                    raise UserError(f"the training split of {unit[0].name!r} has one class only; use a larger set")
                for k in range(n_layers):
                    x, y, meta = assemble([(m, acts[m.name][k], train) for m in unit], seed=seed + r)
                    probe = make_probe().fit(x, y, meta)
                    for m in unit:
                        xt, yt, mt = assemble([(m, acts[m.name][k], test)], seed=seed + r)
                        acc[m.name][k].append(probe.score(xt, yt, mt))
                        for tag, other in extra_acts.items():
                            xo, _, _ = assemble([(m, other[m.name][k], test)])
                            extra[tag][m.name][k].append(probe.score(xo, yt, mt))
            advance(n_layers)


def cross_topic(
    topics: Sequence[Topic],
    acts: Mapping[str, np.ndarray],
    layer_positions: Sequence[int],
    make_probe: Callable[[], Probe],
    repeats: int = 5,
    seed: int = 0,
) -> dict[int, dict[str, Any]]:
    """Leave-one-topic-out accuracy at each layer position: {pos: {per_set, mean, std}}."""
    if len(topics) < 2:
        return {}
    size = min(len(m) for t in topics for m in t.members)
    per: dict[int, dict[str, list[float]]] = {k: {} for k in layer_positions}
    for r in range(repeats):
        for i, held in enumerate(topics):
            rng = np.random.default_rng(_split_seed(seed, r, held.name))
            chosen = [(t, balanced_subsample(len(t), size, rng)) for j, t in enumerate(topics) if j != i]
            for k in layer_positions:
                parts = [(m, acts[m.name][k], rows) for t, rows in chosen for m in t.members]
                x, y, meta = assemble(parts, seed=seed + r)
                probe = make_probe().fit(x, y, meta)
                for m in held.members:
                    all_rows = np.arange(len(m))
                    xt, yt, mt = assemble([(m, acts[m.name][k], all_rows)], seed=seed + r)
                    per[k].setdefault(m.name, []).append(probe.score(xt, yt, mt))
    out = {}
    for k, by_set in per.items():
        # headline as in the reference: per repeat the mean over sets, then mean/std over repeats
        per_repeat = np.mean(np.array([by_set[name] for name in by_set]), axis=0)
        out[k] = {
            "per_set": {name: dict(zip(("mean", "std"), _mean_std(v))) for name, v in by_set.items()},
            "mean": float(per_repeat.mean()),
            "std": float(per_repeat.std()),
            "balance_size": int(size),
            "repeats": int(repeats),
        }
    return out


def separation_profile(sets: Sequence[StatementSet], acts: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Per-set, per-layer separation ratios and the normalised truth profile over the sets."""
    from ..separation import separation_ratio, truth_profile

    ratios = {s.name: [separation_ratio(a, s.labels) for a in acts[s.name]] for s in sets}
    return {"ratio": ratios, "profile": truth_profile(ratios)}


def _summarise(acc: Mapping[str, list[list[float]]], layers: Sequence[int]) -> dict[str, Any]:
    if not acc:
        return {"accuracy": {}, "std": {}, "mean": [None] * len(layers)}
    mean = {name: [float(np.mean(v)) for v in per_layer] for name, per_layer in acc.items()}
    std = {name: [float(np.std(v)) for v in per_layer] for name, per_layer in acc.items()}
    across = [float(np.mean([mean[n][k] for n in mean])) for k in range(len(layers))]
    return {"accuracy": mean, "std": std, "mean": across}


def _check_acts(sets: Sequence[StatementSet], acts: Mapping[str, np.ndarray], layers: Sequence[int]) -> None:
    for s in sets:
        a = acts.get(s.name)
        if a is None:
            raise UserError(f"no activations for statement set {s.name!r}")
        if a.ndim != 3 or a.shape[0] != len(layers) or a.shape[1] != len(s):
            raise UserError(
                f"activations of {s.name!r} have shape {a.shape}; expected [{len(layers)} layers, {len(s)} statements, d]"
            )


@dataclass(frozen=True)
class ProtocolSettings:
    """How the protocol fits and scores probes: the keyword arguments :func:`run_probe_protocol`
    and :func:`compare_dense_pruned` share (declared once here)."""

    probe: str | Callable[[], Probe] = "logreg"
    probe_options: Mapping[str, Any] | None = None
    pairs: Sequence[TopicPair] | None = None  # None: pair each set with its negation by name
    test_fraction: float = 0.2
    repeats: int = 1
    seed: int = 0
    generalization_layers: str | Sequence[int] = "best"  # "best" | "all" | explicit layers
    generalization_repeats: int = 5  # 0: no cross-topic generalisation

    def probe_name(self, make: Callable[[], Probe]) -> str:
        return self.probe if isinstance(self.probe, str) else getattr(make(), "name", "custom")


def _protocol(sets, acts, layers, make_probe, s: ProtocolSettings, extra_acts=None):
    pairs, test_fraction, repeats, seed = s.pairs, s.test_fraction, s.repeats, s.seed
    gen_layers, gen_repeats = s.generalization_layers, s.generalization_repeats
    _check_acts(sets, acts, layers)
    topics = build_topics(sets, pairs)
    acc, extra, skipped = heldout_accuracy(topics, acts, make_probe, test_fraction, repeats, seed, extra_acts)
    held = _summarise(acc, layers)
    held["skipped"] = skipped
    if not acc:
        raise UserError("no statement set could be probed: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    best_pos = int(np.argmax(held["mean"]))
    best = {
        "layer": int(layers[best_pos]),
        "accuracy": held["mean"][best_pos],
        "per_set": {n: v[best_pos] for n, v in held["accuracy"].items()},
    }
    if gen_layers == "best":
        positions = [best_pos]
    elif gen_layers == "all":
        positions = list(range(len(layers)))
    else:
        missing = [g for g in gen_layers if g not in layers]
        if missing:
            raise UserError(f"generalisation layer(s) {missing} were not extracted; extracted: {list(layers)}")
        positions = [list(layers).index(g) for g in gen_layers]
    gen = cross_topic(topics, acts, positions, make_probe, gen_repeats, seed) if gen_repeats > 0 else {}
    generalization = {
        "layers": {str(layers[k]): v for k, v in gen.items()},
        "skipped": None if gen else ("needs at least two topics" if len(topics) < 2 else "disabled"),
    }
    result = {
        "layers": [int(x) for x in layers],
        "seed": int(seed),
        "test_fraction": float(test_fraction),
        "repeats": int(repeats),
        "sets": {
            s.name: {"n": len(s), "polarity": int(s.polarity), "topic": t.name, "groups": int(len(np.unique(t.groups)))}
            for t in topics
            for s in t.members
        },
        "heldout": held,
        "best_layer": best,
        "generalization": generalization,
        "separation": separation_profile(sets, acts),
    }
    return result, extra


def run_probe_protocol(sets: Sequence[StatementSet], acts: Mapping[str, np.ndarray], layers: Sequence[int],
                       **settings: Any) -> dict[str, Any]:
    """Steps (a)-(d) on one model's activations (``acts[name]`` is [len(layers), n, d]);
    ``settings`` are :class:`ProtocolSettings` fields (probe, seed, generalization_repeats, ...)."""
    s = ProtocolSettings(**settings)
    make = probe_factory(s.probe, s.probe_options)
    result, _ = _protocol(sets, acts, layers, make, s)
    result["probe"] = s.probe_name(make)
    result["probe_options"] = dict(s.probe_options or {})
    return result


def compare_dense_pruned(sets: Sequence[StatementSet], dense_acts: Mapping[str, np.ndarray],
                         pruned_acts: Mapping[str, np.ndarray], layers: Sequence[int], **settings: Any) -> dict[str, Any]:
    """(e): the protocol on dense and on pruned activations, plus dense->pruned transfer accuracy;
    ``settings`` as for :func:`run_probe_protocol`.

    Transfer uses the dense run's probes (same split, same seeds) on the pruned test rows, so
    ``transfer - dense`` isolates how far pruning moved the features the dense probe reads.
    """
    s = ProtocolSettings(**settings)
    make = probe_factory(s.probe, s.probe_options)
    _check_acts(sets, pruned_acts, layers)
    dense, extra = _protocol(sets, dense_acts, layers, make, s, extra_acts={"transfer": pruned_acts})
    if s.generalization_layers == "best":  # compare both models at the dense model's best layer
        s = dataclasses.replace(s, generalization_layers=[dense["best_layer"]["layer"]])
    pruned, _ = _protocol(sets, pruned_acts, layers, make, s)
    transfer = _summarise(extra["transfer"], layers)
    rows = []
    for k, layer in enumerate(layers):
        sep = {tag: float(np.mean([r[k] for r in res["separation"]["ratio"].values()])) for tag, res in (("dense", dense), ("pruned", pruned))}
        rows.append(
            {
                "layer": int(layer),
                "dense_accuracy": dense["heldout"]["mean"][k],
                "pruned_accuracy": pruned["heldout"]["mean"][k],
                "transfer_accuracy": transfer["mean"][k],
                "dense_separation": sep["dense"],
                "pruned_separation": sep["pruned"],
            }
        )
    return {
        "probe": s.probe_name(make),
        "probe_options": dict(s.probe_options or {}),
        "dense": dense,
        "pruned": pruned,
        "transfer": transfer,
        "side_by_side": rows,
    }


__all__ = [
    "Topic",
    "build_topics",
    "probe_factory",
    "assemble",
    "heldout_accuracy",
    "cross_topic",
    "separation_profile",
    "ProtocolSettings",
    "run_probe_protocol",
    "compare_dense_pruned",
]
