"""True/false statements as auxiliary calibration streams (one per statement set and label).

Statements are encoded exactly as the probes see them (``truthprune.encode_statements``: same
BOS rule, same chat template), right-padded so real tokens keep positions 0..len-1, and the
statistics mask marks either each statement's last real token (where the probes read) or all of
its real tokens. A class-balanced, seeded sample caps the statements per set, so the cost of the
streams is bounded and the same configuration always uses the same statements.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any


from truthprune import CalibrationSamples, UserError, encode_statements, load_truth_sets, statement_samples

from .objective import stream_key


def balanced_sample(labels: Sequence[int], limit: int, seed: int) -> list[int]:
    """Row indices: at most ``limit`` rows, half per class where possible, seeded, in file order."""
    rng = random.Random(seed)
    by_class = {c: [i for i, y in enumerate(labels) if int(y) == c] for c in (0, 1)}
    per_class = limit // 2
    chosen: list[int] = []
    for c in (0, 1):
        rows = by_class[c]
        chosen += rows if len(rows) <= per_class else rng.sample(rows, per_class)
    return sorted(chosen)


def resolve_sets(truth_data: str | None, wanted: Sequence[str], seed: int) -> list[Any]:
    """The statement sets named in ``wanted`` that the data offers (at least one, else UserError)."""
    if truth_data is None:
        available, _ = load_truth_sets(None, None, seed=seed)
        names = [s.name for s in available]
    else:
        from pathlib import Path

        names = sorted(p.stem for p in Path(truth_data).glob("*.csv"))
    chosen = [n for n in wanted if n in names]
    if not chosen:
        where = f"--truth-data {truth_data}" if truth_data else "the offline generated sets"
        raise UserError(
            f"truthaware: none of its build sets ({', '.join(wanted)}) is in {where} (available: "
            f"{', '.join(names[:12])}{' ...' if len(names) > 12 else ''}); pass --pruner-opt build_sets=[...]"
        )
    sets, _ = load_truth_sets(truth_data, chosen, seed=seed)
    return sets


def controlled_sample(tokenizer: Any, statements: list[str], labels: list[int], set_name: str, seed: int, control: str,
                      chat_template: bool) -> tuple[list[str], list[int]]:
    """The sampled statements and labels as a control changes them (``none``: unchanged).

    ``shuffled_labels``: the same statements with their labels permuted (seeded per set), so the
    statement-token term is unchanged and the true-minus-false directions become random ones.
    ``nonfactual``: each statement replaced by a generated non-factual sentence of the same token
    count, keeping its label (:mod:`truthprune_truthaware.nonfactual`).
    """
    if control == "shuffled_labels":
        labels = list(labels)
        random.Random(f"shuffle:{seed}:{set_name}").shuffle(labels)
    elif control == "nonfactual":
        from .nonfactual import nonfactual_like

        statements = nonfactual_like(tokenizer, statements, seed, chat_template)
    return statements, labels


def statement_streams(
    tokenizer: Any, sets: Sequence[Any], per_set: int, seed: int, last_only: bool, chat_template: bool, control: str = "none",
) -> dict[str, CalibrationSamples]:
    """One stream per (set, label): the sampled statements of that class, encoded as probes see them
    (after the ``control``, see :func:`controlled_sample`)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        pad = 0  # padding positions are masked out of attention and statistics; any id works
    streams: dict[str, CalibrationSamples] = {}
    for s in sets:
        rows = balanced_sample(list(s.labels), per_set, seed)
        texts, labels = controlled_sample(tokenizer, [s.statements[i] for i in rows], [int(s.labels[i]) for i in rows],
                                          s.name, seed, control, chat_template)
        for label in (1, 0):
            picked = [t for t, y in zip(texts, labels) if y == label]
            if not picked:
                continue
            ids = encode_statements(tokenizer, picked, chat_template=chat_template)
            where = "last token" if last_only else "all tokens"
            what = "statements" if control == "none" else f"statements, control {control}"
            streams[stream_key(s.name, label)] = statement_samples(
                ids, pad, last_only, f"{s.name} label {label}: {len(picked)} {what} ({where})"
            )
    return streams
