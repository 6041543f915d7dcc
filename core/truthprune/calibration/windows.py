"""Calibration windowing shared by every calibration source, and mixing of sources.

Three ways to turn text into [n, seqlen] token windows, all seeded with a private
``random.Random(seed)`` so a source asked for k samples returns the first k of what it would
return for more (as in the reference loaders):

* :func:`document_windows` (the Wanda/OWL C4 rule): draw documents until one is longer than
  seqlen tokens, then a random window inside it.
* :func:`record_windows` (the reference "concat" format): append randomly drawn records until the
  sequence is longer than seqlen, then cut a random window.
* :func:`padded_records` (the "single" format): one record per sample, padded to seqlen on the
  chosen side, with an attention mask that is 0 on the padding.

Text is tokenised with the tokenizer's default special tokens (a BOS where the tokenizer adds one).
Whether each window then *starts* with a BOS is decided once for all sources by
:func:`load_calibration` (``bos``, the ``--bos`` rule of :mod:`truthprune.models.bos`), so the windowing
rules here and in third-party sources stay the reference ones.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..plugin.interfaces import CalibrationContext, CalibrationSamples
from ..models.bos import start_windows_with_bos
from ..plugin.contracts import violation
from ..textio import check_calibration_text, jsonl_records, parquet_records, read_text_file, require_file

log = logging.getLogger(__name__)


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text)["input_ids"])


def window_samples(windows: Any, description: str, masks: Any = None) -> CalibrationSamples:
    """CalibrationSamples from token windows (rows of equal length, a list or a tensor); without
    ``masks`` every token is real (attention mask of ones)."""
    ids = torch.as_tensor(windows, dtype=torch.long)
    mask = torch.ones_like(ids) if masks is None else torch.as_tensor(masks, dtype=torch.long)
    return CalibrationSamples(input_ids=ids, attention_mask=mask, description=description)


def statement_samples(ids: Sequence[Sequence[int]], pad: int, last_only: bool = True,
                      description: str = "") -> CalibrationSamples:
    """Tokenised statements of different lengths as one right-padded stream: [n, L] ids (``pad``
    after each statement), the attention mask of the real tokens, and the statistics mask (the last
    real token of each statement, where probes read, or every real token when not ``last_only``).
    Why in core: every pruner that calibrates on statements (truthaware, sparc3, third-party ones)
    needs exactly this layout, and the engine reads its masks."""
    if not ids or any(len(row) == 0 for row in ids):
        raise UserError("statement_samples: every statement needs at least one token")
    length = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), length), pad, dtype=torch.long)
    attention = torch.zeros((len(ids), length), dtype=torch.long)
    stat = torch.zeros((len(ids), length), dtype=torch.bool)
    for r, row in enumerate(ids):
        input_ids[r, : len(row)] = torch.as_tensor(list(row), dtype=torch.long)
        attention[r, : len(row)] = 1
        if last_only:
            stat[r, len(row) - 1] = True
        else:
            stat[r, : len(row)] = True
    return CalibrationSamples(input_ids, attention, description=description, stat_mask=stat)


def formatted_records(records: list[str], tokenizer: Any, nsamples: int, seqlen: int, seed: int, fmt: str,
                      padding_side: str = "left", name: str = "text") -> CalibrationSamples:
    """A record source's ``concat`` (:func:`record_windows`) or ``single`` (:func:`padded_records`)
    format: the two windowings every text source offers (its Config: ``RecordsConfig``)."""
    if fmt == "single":
        return padded_records(records, tokenizer, nsamples, seqlen, seed, padding_side, name=name)
    return record_windows(records, tokenizer, nsamples, seqlen, seed, name=name)


def document_windows(
    documents: Sequence[str], tokenizer: Any, nsamples: int, seqlen: int, seed: int, name: str = "documents"
) -> CalibrationSamples:
    """Random windows of seqlen tokens from random documents longer than seqlen tokens."""
    if not documents:
        raise UserError(f"calibration source {name!r} has no documents")
    rng = random.Random(seed)
    lengths: dict[int, int] = {}
    windows = []
    max_tries = max(1000, 20 * len(documents))
    for _ in range(nsamples):
        for _attempt in range(max_tries):
            i = rng.randint(0, len(documents) - 1)
            ids = _encode(tokenizer, documents[i])
            lengths[i] = len(ids)
            if len(ids) > seqlen:
                break
        else:
            longest = max(lengths.values(), default=0)
            raise UserError(
                f"calibration source {name!r}: no document longer than {seqlen} tokens "
                f"(longest seen: {longest}); lower --seqlen or use a source with longer texts"
            )
        start = rng.randint(0, len(ids) - seqlen - 1)
        windows.append(ids[start : start + seqlen])
    return window_samples(windows, f"{name}: {nsamples} document windows of {seqlen} tokens, seed {seed}")


def record_windows(
    records: Sequence[str], tokenizer: Any, nsamples: int, seqlen: int, seed: int, name: str = "records"
) -> CalibrationSamples:
    """Concatenate randomly drawn records past seqlen tokens, then cut a random window."""
    if not records:
        raise UserError(f"calibration source {name!r} has no records (is the file empty?)")
    cache: dict[int, list[int]] = {}

    def enc(i: int) -> list[int]:
        if i not in cache:
            cache[i] = _encode(tokenizer, records[i])
        return cache[i]

    if len(records) <= 64:
        total = sum(len(enc(i)) for i in range(len(records)))
        if total == 0:
            raise UserError(f"calibration source {name!r} contains no tokens")
    rng = random.Random(seed)
    windows = []
    for _ in range(nsamples):
        seq: list[int] = []
        while len(seq) <= seqlen:
            seq.extend(enc(rng.randint(0, len(records) - 1)))
        start = rng.randint(0, len(seq) - seqlen - 1)
        windows.append(seq[start : start + seqlen])
    return window_samples(windows, f"{name}: {nsamples} concatenated windows of {seqlen} tokens, seed {seed}")


def padded_records(
    records: Sequence[str],
    tokenizer: Any,
    nsamples: int,
    seqlen: int,
    seed: int,
    padding_side: str = "left",
    name: str = "records",
) -> CalibrationSamples:
    """One random record per sample, truncated to seqlen and padded on ``padding_side``."""
    if not records:
        raise UserError(f"calibration source {name!r} has no records (is the file empty?)")
    if padding_side not in ("left", "right"):
        raise UserError(f"padding side {padding_side!r} must be 'left' or 'right'")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise UserError("the tokenizer has neither a pad nor an eos token; use --format concat")
    rng = random.Random(seed)
    windows, masks = [], []
    for _ in range(nsamples):
        ids = _encode(tokenizer, records[rng.randint(0, len(records) - 1)])[:seqlen]
        fill = seqlen - len(ids)
        if padding_side == "left":
            windows.append([pad] * fill + ids)
            masks.append([0] * fill + [1] * len(ids))
        else:
            windows.append(ids + [pad] * fill)
            masks.append([1] * len(ids) + [0] * fill)
    return window_samples(windows, f"{name}: {nsamples} single records padded {padding_side} to {seqlen}, seed {seed}", masks)


def text_file_records(text: str, split: str = "empty-lines") -> list[str]:
    """Records of a plain-text file: blocks separated by empty lines, each block's lines stripped
    and joined with single spaces.

    ``split="empty-lines"`` (the default): only a truly empty line separates records, so a line
    holding a space is text. WikiText's raw files mark paragraph breaks with lines holding one
    space, so such a file is ONE record and windows are random cuts of the whole text.
    ``split="blank-lines"``: a line of whitespace only separates records too (paragraphs and
    headings of a WikiText file become records of their own).
    """
    if split not in ("empty-lines", "blank-lines"):
        raise UserError(f"split {split!r} must be 'empty-lines' or 'blank-lines'")
    blocks = text.split("\n\n") if split == "empty-lines" else re.split(r"\n[^\S\n]*(?:\n[^\S\n]*)*\n", text)
    return [" ".join(line.strip() for line in block.splitlines() if line.strip()) for block in blocks]


def read_text_records(path: str | Path, field: str = "text", split: str = "empty-lines") -> list[str]:
    """Records from a local file: .txt (blocks separated by empty lines, see
    :func:`text_file_records` for ``split``), .jsonl (``field``), .parquet.

    Read through :mod:`truthprune.textio` (encodings, binary files, non-string records); text too
    poor to calibrate on (fewer than two distinct words) is refused, little text is warned about."""
    p = require_file(path, "calibration file", "pass an existing .txt, .jsonl or .parquet file")
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        records = jsonl_records(p, field)
    elif suffix == ".parquet":
        records = parquet_records(p, field)
    else:
        text = read_text_file(p, "calibration file", "pass an existing .txt, .jsonl or .parquet file")
        records = text_file_records(text, split)
    records = [r for r in records if r.strip()]
    if not records:
        raise UserError(f"calibration file {str(p)!r} is empty; it needs some text")
    check_calibration_text(records, repr(str(p)))
    return records


def load_calibration(
    sources: Sequence[Any], tokenizer: Any, nsamples: int, seqlen: int, seed: int, bos: int | None = None,
    model: Any = None,
) -> CalibrationSamples:
    """Mix sources: each of K sources gives nsamples / K windows, concatenated in order.

    ``model``: the loaded model, given (as the keyword ``model``) to the sources with ``needs_model``;
    such a source without a model is the caller's error, said before any source runs.

    ``bos`` (a token id, see :mod:`truthprune.models.bos`): every window of every source is made to start
    with it; None leaves the windows exactly as the sources cut them.
    """
    if not sources:
        raise UserError("no calibration source given; pass e.g. --calibration generated")
    k = len(sources)
    if nsamples % k:
        raise UserError(f"--nsamples {nsamples} is not divisible by the {k} calibration sources; use a multiple of {k}")
    for src in sources:
        if getattr(src, "needs_model", False) and model is None:
            raise UserError(f"calibration source {src.name!r} samples text from the loaded model, which this command "
                            "does not load; choose a text source (e.g. --calibration wikitext2)")
    parts = [start_windows_with_bos(_checked_samples(src, tokenizer, nsamples // k, seqlen, seed, model), bos)
             for src in sources]
    return CalibrationSamples(
        input_ids=torch.cat([p.input_ids for p in parts]),
        attention_mask=torch.cat([p.attention_mask for p in parts]),
        description="; ".join(p.description for p in parts),
    )


def _vocab_bound(tokenizer: Any) -> int | None:
    """One past the largest token id of ``tokenizer`` (None when it cannot say)."""
    try:
        return max(tokenizer.get_vocab().values()) + 1
    except Exception:  # noqa: BLE001 - a test double or an exotic tokenizer
        try:
            return len(tokenizer)
        except TypeError:
            return None


def _checked_samples(src: Any, tokenizer: Any, n: int, seqlen: int, seed: int, model: Any = None) -> CalibrationSamples:
    """``src.samples(...)``, checked: CalibrationSamples of integer token ids, [n, seqlen], each id in
    the tokenizer's vocabulary, a matching attention mask. Anything else (and an exception that is
    not a UserError) is the plugin's fault: a PluginContractError naming it (exit code 3)."""
    try:
        extra = {"model": model} if getattr(src, "needs_model", False) else {}
        part = src.samples(tokenizer, n, seqlen, seed, **extra)
    except (UserError, KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except Exception as err:  # noqa: BLE001 - a bug inside the plugin
        first = (str(err).splitlines() or [""])[0][:160]
        raise violation(src, f"samples() raised {type(err).__name__}: {first}", kind="calibration source") from None
    ids, mask = getattr(part, "input_ids", None), getattr(part, "attention_mask", None)
    if not isinstance(part, CalibrationSamples) or not isinstance(ids, torch.Tensor) or not isinstance(mask, torch.Tensor):
        raise violation(src, f"samples() must return CalibrationSamples of tensors, got {type(part).__name__}",
                        kind="calibration source")
    if ids.is_floating_point() or ids.dtype == torch.bool or ids.is_complex():
        raise violation(src, f"samples() returned token ids of dtype {ids.dtype}; token ids are integers",
                        kind="calibration source")
    if tuple(ids.shape) != (n, seqlen) or tuple(mask.shape) != tuple(ids.shape):
        raise violation(src, f"samples() returned token ids {list(ids.shape)} and mask {list(mask.shape)} for {n} "
                        f"windows of {seqlen} tokens; it must return exactly [{n}, {seqlen}] (short windows included)",
                        kind="calibration source")
    bound = _vocab_bound(tokenizer)
    if ids.numel() and (int(ids.min()) < 0 or (bound is not None and int(ids.max()) >= bound)):
        bad = int(ids.min()) if int(ids.min()) < 0 else int(ids.max())
        raise violation(src, f"samples() returned the token id {bad}, outside the tokenizer's vocabulary 0..{(bound or 1) - 1}",
                        kind="calibration source")
    return part


def attach_auxiliary(calib: CalibrationSamples, pruner: Any, context: CalibrationContext,
                     streams: dict[str, CalibrationSamples] | None = None) -> CalibrationSamples:
    """Add the pruner's auxiliary calibration streams (if any) to ``calib`` and describe them.

    Why here: every mode (in memory, offload, torchrun) builds its calibration through this
    module, so a pruner's extra streams reach the engine the same way in all of them.
    ``streams``: the ones the memory check already built from the same context (not built again).
    """
    if streams is None:
        streams = pruner.auxiliary_calibration(context) or {}
    for key, s in streams.items():
        if not isinstance(s, CalibrationSamples) or s.input_ids.shape != s.attention_mask.shape:
            raise violation(pruner, f"auxiliary_calibration() returned a malformed stream {key!r} (CalibrationSamples "
                                    "with an attention mask of the token ids' shape are due)")
        log.info("auxiliary calibration stream %r: %d sequences (%s)", key, len(s), s.description)
    calib.auxiliary = dict(streams)
    if streams:
        calib.description += "; auxiliary: " + ", ".join(f"{k} ({len(s)})" for k, s in streams.items())
    return calib
