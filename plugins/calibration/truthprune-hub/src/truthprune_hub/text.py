"""Reading the corpora and the one windowing rule core does not already have.

No torch at module level: the registration module imports this file's names lazily.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from truthprune import UserError

C4_HUB = ("allenai/c4", {"train": "en/c4-train.00000-of-01024.json.gz"})
WIKITEXT_HUB = ("wikitext", "wikitext-2-raw-v1")


def long_text_windows(ids: Sequence[int], nsamples: int, seqlen: int, seed: int) -> list[list[int]]:
    """The reference WikiText-2 rule: random windows of one long token sequence.

    For each sample draw a start uniformly from [0, T - seqlen - 1] (Python's inclusive
    ``randint``, as the reference does) and keep ``seqlen`` tokens from there. The RNG is
    private and reseeded here, so k samples are the first k of any larger request.
    """
    if len(ids) <= seqlen:
        raise UserError(
            f"the text has {len(ids)} tokens, not more than --seqlen {seqlen}; use a longer text or a smaller --seqlen"
        )
    rng = random.Random(seed)
    out = []
    for _ in range(nsamples):
        start = rng.randint(0, len(ids) - seqlen - 1)
        out.append(list(ids[start : start + seqlen]))
    return out


def _read_text(path: Path) -> str:
    """Through truthprune's one reader of user files: encodings and binary content checked."""
    from truthprune import decode_text, read_text_file

    if path.name.lower().endswith(".gz"):
        try:
            with gzip.open(path, "rb") as f:
                return decode_text(f.read(), repr(str(path)), "calibration file")
        except (OSError, EOFError) as err:
            raise UserError(f"cannot read {path}: {err}; pass a UTF-8 JSON-lines file (optionally gzipped)") from None
    return read_text_file(path, "calibration file", "pass a UTF-8 JSON-lines file (optionally gzipped)")


def read_json_records(path: str | Path, field: str = "text") -> list[str]:
    """Documents from a local C4-style file: JSON lines (.json, .jsonl, optionally .gz) or a JSON list.

    The C4 shards are JSON lines despite their ``.json.gz`` name, so every suffix is read as JSON
    lines unless the file starts with ``[`` (a JSON array of objects).
    """
    from truthprune import require_file

    p = require_file(path, "calibration file", "pass an existing .json, .json.gz or .jsonl file")
    text = _read_text(p)
    if text.lstrip().startswith("["):
        from truthprune import parse_json

        rows: list[Any] = parse_json(text, str(p), "calibration file")
        numbered = list(enumerate(rows, 1))
    else:
        numbered = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    numbered.append((lineno, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise UserError(f"{p}:{lineno}: not valid JSON ({err.msg}); each line must be an object") from None
                except (RecursionError, ValueError):  # absurd nesting; integers longer than Python converts
                    raise UserError(f"{p}:{lineno}: not a readable JSON record (nested too deeply or a number too "
                                    "long); each line must be an object") from None
    records = []
    for where, obj in numbered:
        if not isinstance(obj, dict) or field not in obj:
            raise UserError(f"{p}: entry {where} has no {field!r} field; each entry must be an object with a {field!r} string")
        if not isinstance(obj[field], str):
            kind = "null" if obj[field] is None else type(obj[field]).__name__
            raise UserError(f"{p}: entry {where}: {field!r} is {kind}, not a string; give every entry text")
        if obj[field].strip():
            records.append(obj[field])
    if not records:
        raise UserError(f"calibration file {str(p)!r} has no non-empty {field!r} values")
    return records


class DatasetColumn(Sequence):
    """Random access to one text field of a (memory-mapped) hub data set, without copying it.

    The C4 shard holds 356,317 documents; the windowing rules only ever read a few hundred of
    them by index, so materialising every string in Python would waste about a gigabyte.
    """

    def __init__(self, dataset: Any, field: str):
        self.dataset, self.field = dataset, field

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self.dataset[j][self.field] for j in range(*i.indices(len(self)))]
        return self.dataset[i][self.field]


def c4_documents(path: str | None, field: str) -> Sequence[str]:
    """C4 documents from a local file, or the first English train shard from the hub."""
    if path:
        return read_json_records(path, field)
    from truthprune import load_hub_dataset

    name, files = C4_HUB
    ds = load_hub_dataset(name, split="train", data_files=files, fix="pass --calibration-opt path=FILE with a local C4 .json.gz/.jsonl file")
    if field not in ds.column_names:
        raise UserError(f"the hub C4 data has no field {field!r} (fields: {', '.join(ds.column_names)}); drop the field option")
    return DatasetColumn(ds, field)


def wikitext_train_rows(path: str | None) -> list[str]:
    """WikiText-2 train rows (hub) or the rows of a local raw text file, as the hub splits them."""
    from truthprune import wikitext_rows

    if path:
        from truthprune import require_file

        p = require_file(path, "calibration file", "pass an existing WikiText .txt file")
        rows = wikitext_rows(_read_text(p))
    else:
        from truthprune import load_hub_dataset

        ds = load_hub_dataset(*WIKITEXT_HUB, split="train", fix="pass --calibration-opt path=FILE with a local WikiText-2 .txt file")
        rows = list(ds["text"])
    if not any(r.strip() for r in rows):
        raise UserError("the WikiText text is empty; pass a file with some text")
    return rows
