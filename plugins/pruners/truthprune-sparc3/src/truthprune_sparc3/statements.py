"""True/false build statements for the ``target=truth`` mode, carried as auxiliary calibration
streams (one per statement set and label), and read back in ``prepare``.

Why streams: ``prepare`` sees token ids, not a tokenizer; ``Pruner.auxiliary_calibration`` is
where a pruner gets the run's tokenizer, ``--truth-data``, seed and chat template, so the
statements are encoded exactly as the probes see them (``truthprune.encode_statements``: same
BOS rule, same template). This pruner declares no statistics, so the engine never propagates the
streams through the layers; they only travel to ``prepare``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PREFIX = "sparc3"


def stream_key(set_name: str, label: int) -> str:
    return f"{PREFIX}:{set_name}:{int(label)}"


def parse_key(key: str) -> tuple[str, int] | None:
    parts = key.split(":")
    if len(parts) != 3 or parts[0] != PREFIX or parts[2] not in ("0", "1"):
        return None
    return parts[1], int(parts[2])


def balanced_rows(labels: Sequence[int], limit: int, seed: int) -> list[int]:
    """At most ``limit`` row indices, half per class where possible, seeded, in file order."""
    rng = random.Random(seed)
    chosen: list[int] = []
    for c in (0, 1):
        rows = [i for i, y in enumerate(labels) if int(y) == c]
        chosen += rows if len(rows) <= limit // 2 else rng.sample(rows, limit // 2)
    return sorted(chosen)


def available_sets(truth_data: str | None, seed: int) -> list[str]:
    if truth_data is None:
        from truthprune import load_truth_sets

        return [s.name for s in load_truth_sets(None, None, seed=seed)[0]]
    return sorted(p.stem for p in Path(truth_data).glob("*.csv"))


def check_build_sets(truth_data: str | None, wanted: Sequence[str], seed: int) -> list[str]:
    """The wanted sets the data offers; UserError naming the option when there is none."""
    from truthprune import UserError

    names = available_sets(truth_data, seed)
    chosen = [n for n in wanted if n in names]
    if not chosen:
        where = f"--truth-data {truth_data}" if truth_data else "the offline generated sets"
        raise UserError(f"sparc3: none of its build sets ({', '.join(wanted)}) is in {where} (available: "
                        f"{', '.join(names[:12])}{' ...' if len(names) > 12 else ''}); pass --pruner-opt build_sets=[...]")
    return chosen


def statement_streams(tokenizer: Any, truth_data: str | None, wanted: Sequence[str], per_set: int, seed: int,
                      chat_template: bool) -> dict[str, Any]:
    """{stream key: CalibrationSamples} of the sampled statements, right-padded, last token marked."""
    from truthprune import encode_statements, load_truth_sets, statement_samples

    sets, _ = load_truth_sets(truth_data, check_build_sets(truth_data, wanted, seed), seed=seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    streams = {}
    for s in sets:
        rows = balanced_rows(list(s.labels), per_set, seed)
        for label in (1, 0):
            picked = [s.statements[i] for i in rows if int(s.labels[i]) == label]
            if not picked:
                continue
            ids = encode_statements(tokenizer, picked, chat_template=chat_template)
            streams[stream_key(s.name, label)] = statement_samples(
                ids, pad, last_only=True, description=f"{s.name} label {label}: {len(ids)} statements")
    return streams


def gather_statements(auxiliary: Mapping[str, Any]) -> tuple[Any, Any, Any, Any, list[str]]:
    """(ids [n, L], attention mask, labels [n], set index [n], set names) of every sparc3 stream, re-padded to one length."""
    import torch

    parts = sorted((parse_key(k), v) for k, v in auxiliary.items() if parse_key(k) is not None)
    if not parts:
        return None, None, None, None, []
    names = sorted({p[0][0] for p in parts})
    length = max(int(v.input_ids.shape[1]) for _, v in parts)
    ids, masks, labels, groups = [], [], [], []
    for (name, label), v in parts:
        n, L = v.input_ids.shape
        pad = torch.zeros((n, length), dtype=v.input_ids.dtype)
        pad[:, :L] = v.input_ids
        m = torch.zeros((n, length), dtype=v.attention_mask.dtype)
        m[:, :L] = v.attention_mask
        ids.append(pad)
        masks.append(m)
        labels.append(torch.full((n,), label, dtype=torch.long))
        groups.append(torch.full((n,), names.index(name), dtype=torch.long))
    return torch.cat(ids), torch.cat(masks), torch.cat(labels), torch.cat(groups), names
