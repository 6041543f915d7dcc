"""Glue shared by ``truthprune probe`` and ``truthprune run``: pick the statement sets, extract
their activations for a loaded model (cached per set), and run the protocol on them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import UserError
from ..datasets import NEGATED_PREFIX, StatementSet, load_statement_dir

log = logging.getLogger(__name__)


def default_dataset_names(directory: str | Path) -> list[str]:
    """Every ``X``/``neg_X`` pair present in ``directory`` (the TiU topic pairs), in name order;
    all CSVs when no file has a negated twin."""
    stems = sorted(p.stem for p in Path(directory).glob("*.csv"))
    present = set(stems)
    names = []
    for s in stems:
        if not s.startswith(NEGATED_PREFIX) and NEGATED_PREFIX + s in present:
            names += [s, NEGATED_PREFIX + s]
    return names or stems


def strict_mode() -> bool:
    """TRUTHPRUNE_STRICT=1: a malformed statement pair is an error instead of a skipped pair."""
    import os

    return os.environ.get("TRUTHPRUNE_STRICT", "").strip().lower() in {"1", "true", "yes"}


def drop_misaligned_pairs(sets: list[StatementSet], strict: bool = False) -> list[StatementSet]:
    """Skip (with a warning naming it) every X/neg_X pair whose rows do not align; strict: refuse.

    Why here: the check used to run after the whole activation extraction."""
    from ..datasets import default_topic_pairs

    by_name = {s.name: s for s in sets}
    bad: set[str] = set()
    for pair in default_topic_pairs([s.name for s in sets]):
        if pair.negated is None:
            continue
        a, b = by_name[pair.affirmative], by_name[pair.negated]
        if len(a) != len(b):
            msg = f"topic pair {a.name}:{b.name} has {len(a)} vs {len(b)} rows; negated twins must be row-aligned"
            if strict:
                raise UserError(f"{msg}: fix the files or drop the pair (strict mode)")
            log.warning("skipping %s and %s: %s", a.name, b.name, msg)
            bad.update((a.name, b.name))
    kept = [s for s in sets if s.name not in bad]
    if not kept:
        raise UserError("every statement set was skipped as a malformed pair; fix the files or choose other --datasets")
    return kept


def load_truth_sets(
    truth_data: str | Path | None,
    datasets: Sequence[str] | None = None,
    seed: int = 0,
    duplicates: str = "consistent",
    strict: bool | None = None,
) -> tuple[list[StatementSet], str]:
    """(sets, description): the named CSVs of ``truth_data``, or the offline generated sets.

    Malformed X/neg_X pairs are skipped with a warning (refused when ``strict`` or
    TRUTHPRUNE_STRICT=1). ``truthprune run`` loads them at plan time and reuses that load."""
    strict = strict_mode() if strict is None else strict
    sets, description = _load_truth_sets(truth_data, datasets, seed, duplicates)
    return drop_misaligned_pairs(sets, strict), description


def _load_truth_sets(truth_data, datasets, seed: int, duplicates: str) -> tuple[list[StatementSet], str]:
    if truth_data is None:
        from ..generate import data_versions, generate_statement_sets

        sets = generate_statement_sets(seed)
        if datasets:
            by_name = {s.name: s for s in sets}
            missing = [d for d in datasets if d not in by_name]
            if missing:
                raise UserError(
                    f"generated data has no set(s) {', '.join(missing)}; available: {', '.join(by_name)} "
                    "(or pass --truth-data DIR with TiU CSV files)"
                )
            sets = [by_name[d] for d in datasets]
        return sets, f"generated offline statement sets (seed {seed}; {data_versions()}; no --truth-data given)"
    names = list(datasets) if datasets else default_dataset_names(truth_data)
    return load_statement_dir(truth_data, names, duplicates=duplicates), f"statement CSVs from {truth_data}"


def cap_statement_sets(
    sets: Sequence[StatementSet], max_per_set: int | None, seed: int = 0
) -> tuple[list[StatementSet], dict[str, np.ndarray]]:
    """(capped sets, rows kept per set name): every topic (a set and its negated twin) keeps the
    same seeded, class-balanced ``max_per_set`` rows, so twins stay row-aligned; ``None`` or 0
    keeps everything.

    Why: extraction is the slow part of a probe evaluation on a CPU (a forward pass per statement
    on the dense and again on the pruned model); a few hundred statements per set give accuracy
    intervals of a few points at a fraction of the cost. The draw depends only on the seed and
    the topic's name, so every model of a comparison sees the same statements."""
    import zlib

    from .protocol import build_topics
    from .splits import balanced_rows

    if not max_per_set:
        return list(sets), {s.name: np.arange(len(s)) for s in sets}
    out: dict[str, StatementSet] = {}
    rows_of: dict[str, np.ndarray] = {}
    for topic in build_topics(sets):
        rng = np.random.default_rng([seed, zlib.crc32(topic.name.encode())])
        rows = balanced_rows(topic.members[0].labels, max_per_set, rng)
        for member in topic.members:
            out[member.name] = member if len(rows) == len(member) else member.subset(rows)
            rows_of[member.name] = rows
    return [out[s.name] for s in sets], {s.name: rows_of[s.name] for s in sets}


def extract_statement_sets(
    model: Any,
    tokenizer: Any,
    sets: Sequence[StatementSet],
    layers: Sequence[int] | None = None,
    fingerprint: str | None = None,
    batch_size: int | None = None,
    chat_template: bool = False,
    add_bos: bool = True,
    cache_dir: str | Path | None = None,
    quiet: bool = True,
    token_budget: int | None = None,
) -> dict[str, np.ndarray]:
    """name -> [n_layers, n, d] activations, one cached extraction per set (batching as in
    :func:`~truthprune.truth.activations.extract_last_token`; None = its default budget)."""
    from ..activations import extract_last_token

    out = {}
    for s in sets:
        log.info("activations of %s (%d statements)", s.name, len(s))
        out[s.name] = extract_last_token(
            model,
            tokenizer,
            s.statements,
            layers=layers,
            batch_size=batch_size,
            chat_template=chat_template,
            add_bos=add_bos,
            fingerprint=fingerprint,
            cache_dir=cache_dir,
            quiet=quiet,
            **({} if token_budget is None else {"token_budget": token_budget}),
        )
    return out


__all__ = ["default_dataset_names", "load_truth_sets", "cap_statement_sets", "extract_statement_sets"]
