"""Perplexity with the reference protocol (REFERENCE.md 11.1) and the texts it is measured on.

Protocol: the evaluation text is tokenised once (the tokenizer's default special tokens, so one
BOS at the very start where the tokenizer adds one), cut into W = floor(tokens / seqlen)
non-overlapping windows (the tail is dropped, no context carried across windows), every window
gets a full forward pass without an attention mask, positions 0..seqlen-2 are scored against
tokens 1..seqlen-1 in float32, and ppl = exp(mean over windows of the per-window mean NLL).
Windows are batched only for speed; the number is the same as with batch 1.

Evaluation texts:

* ``wikitext2``: the hub's ``wikitext-2-raw-v1`` test split, rows joined with two newlines;
* ``pydoc``: the held-out half of the Python reference-manual topics shipped with CPython
  (``pydoc_data.topics``), the half the ``pydoc`` calibration source never uses;
* a local text file, read row by row like the hub's WikiText rows (see :func:`wikitext_rows`),
  so a local ``wiki.test.raw`` gives exactly the tokens of ``wikitext2``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..models.context import check_seqlen, context_length
from .hub import load_hub_dataset
from ..models.bos import encode_content
from ..progress import bar
from ..textio import describe, read_text_file

log = logging.getLogger(__name__)

PROTOCOL = (
    "non-overlapping windows of seqlen tokens, tail dropped, no context carry-over, "
    "no attention mask; ppl = exp(mean over windows of the per-window mean token NLL), float32 loss"
)

EVAL_TEXTS = ("wikitext2", "pydoc")


# --------------------------------------------------------------------------- texts


def _pydoc_half(name: str) -> str:
    """'calibration' or 'heldout' for one topic name: a hash of the name, not its position.

    Hashing the name (instead of shuffling the list) keeps each topic on the same side when a
    newer Python adds or removes topics, so the two halves never trade members silently.
    """
    return "calibration" if hashlib.sha256(name.encode("utf-8")).digest()[0] % 2 == 0 else "heldout"


def pydoc_topic_names(part: str) -> list[str]:
    """Sorted names of the Python reference-manual topics in ``part`` ('calibration' or 'heldout')."""
    if part not in ("calibration", "heldout"):
        raise ValueError(f"part must be 'calibration' or 'heldout', not {part!r}")
    from pydoc_data.topics import topics

    return [name for name in sorted(topics) if _pydoc_half(name) == part]


def pydoc_topics(part: str) -> list[str]:
    """The texts of the pydoc topics in ``part``, in sorted-name order (see :func:`pydoc_topic_names`)."""
    from pydoc_data.topics import topics

    return [topics[name] for name in pydoc_topic_names(part)]


def wikitext_rows(text: str) -> list[str]:
    """Split a raw WikiText file into the rows the hub's ``wikitext`` data set has.

    The hub builds one row per line, keeping the newline, and turns whitespace-only lines into
    empty rows. Reproducing that lets a local copy of the raw files be joined exactly like the
    reference joins the hub rows ("\\n\\n" for evaluation, " " for calibration).
    """
    return [line if line.strip() else "" for line in text.splitlines(keepends=True)]


def eval_text(spec: str) -> tuple[str, str]:
    """Return (text, description) for an evaluation spec: 'wikitext2', 'pydoc' or a file path."""
    if spec == "wikitext2":
        ds = load_hub_dataset(
            "wikitext", "wikitext-2-raw-v1", split="test",
            fix="point at a local copy of the WikiText-2 test file instead (--ppl-data PATH in run, --data PATH in eval ppl)",
        )
        return "\n\n".join(ds["text"]), "wikitext-2-raw-v1 test split (hub), rows joined with blank lines"
    if spec == "pydoc":
        parts = pydoc_topics("heldout")
        py = f"{sys.version_info.major}.{sys.version_info.minor}"
        return "\n\n".join(parts), f"pydoc held-out half: {len(parts)} reference-manual topics of Python {py}"
    p = Path(spec).expanduser()
    if p.is_file():
        raw = read_text_file(p, "evaluation file", "pass a plain UTF-8 .txt file")
        if not raw.strip():
            raise UserError(f"evaluation file {spec!r} is empty; pass a file with some text")
        return "\n\n".join(wikitext_rows(raw)), f"{p.name}: rows joined with blank lines"

    state = f" ({describe(p)[3:] if describe(p).startswith('is ') else describe(p)})" if os.path.lexists(p) else ""
    raise UserError(
        f"evaluation data {spec!r}{state} is neither a known text ({', '.join(EVAL_TEXTS)}) nor an existing file; "
        "pass --data wikitext2, --data pydoc or --data PATH/TO/FILE.txt"
    )


def encode_eval_text(text: str, tokenizer: Any, bos: Any = None):
    """Tokenise the whole text once.

    ``bos`` is a :class:`truthprune.models.bos.BosRule` (None: the tokenizer's defaults, a BOS at the very
    start where it adds one). When the rule starts windows with BOS, the text's own tokens only
    are returned and :func:`perplexity` (given ``bos_id``) puts a BOS in front of every window.
    """
    import torch

    return torch.tensor(encode_content(tokenizer, text, bos), dtype=torch.long)


def load_eval_text(spec: str, tokenizer: Any, bos: Any = None):
    """The evaluation text for ``spec`` (see :func:`eval_text`) as a 1-D LongTensor of token ids."""
    text, description = eval_text(spec)
    ids = encode_eval_text(text, tokenizer, bos)
    log.info("evaluation text %s: %d characters, %d tokens", description, len(text), ids.numel())
    return ids


# --------------------------------------------------------------------------- maths


# The offline default text is scored on its first windows unless the caller asks for more: the
# whole held-out half (~54k SmolLM2 tokens) costs ~3 min per model on 2 CPU cores. 16 windows
# (8,176 scored tokens, about 28 s per model there) keep the first-run demo within minutes; the
# dense and the pruned model are scored on the same windows. Any other text is scored in full.
DEFAULT_MAX_WINDOWS = {"pydoc": 16}


def default_max_windows(spec: str, max_windows: int | None) -> int | None:
    """``max_windows`` if given, else the default for the text ``spec`` (None = every window)."""
    return max_windows if max_windows is not None else DEFAULT_MAX_WINDOWS.get(spec)


def window_count(n_tokens: int, seqlen: int, max_windows: int | None = None) -> int:
    """floor(n_tokens / seqlen), capped at ``max_windows``: the tail shorter than seqlen is dropped."""
    n = n_tokens // seqlen
    return n if max_windows is None else min(n, max_windows)


def ppl_from_window_nll(window_nll: Sequence[float]) -> float:
    """exp(mean of per-window mean NLL) -- every window weighs the same, as in the reference."""
    if not window_nll:
        raise ValueError("no windows")
    return math.exp(math.fsum(window_nll) / len(window_nll))


def window_nll(logits, ids) -> list[float]:
    """Per-row mean NLL of ids[:, 1:] under logits[:, :-1], computed in float32, row by row.

    Row by row keeps the float32 copy of the logits at [seqlen, vocab] instead of the whole batch.
    """
    import torch.nn.functional as F

    out = []
    for row_logits, row_ids in zip(logits, ids):
        out.append(float(F.cross_entropy(row_logits[:-1].float(), row_ids[1:].to(row_logits.device))))
    return out


def perplexity(
    model: Any,
    input_ids,
    seqlen: int,
    batch_size: int = 1,
    device: Any = None,
    max_windows: int | None = None,
    bos_id: int | None = None,
) -> dict[str, Any]:
    """Perplexity of ``model`` on the 1-D token tensor ``input_ids`` (REFERENCE.md 11.1).

    With ``bos_id`` every window is ``[bos_id] + seqlen-1`` consecutive tokens of ``input_ids``
    (which then holds the text's own tokens, see :func:`encode_eval_text`); the first scored
    prediction is the first text token after the BOS. Without it, windows are seqlen tokens of
    ``input_ids`` as given (the reference protocol).
    """
    import torch

    if input_ids.dim() != 1:
        raise UserError(f"perplexity needs a 1-D token sequence, got shape {tuple(input_ids.shape)}")
    if seqlen < 2:
        raise UserError(f"--seqlen {seqlen} is too short to score a token; use 2 or more")
    if batch_size < 1:
        raise UserError(f"--batch-size {batch_size} must be at least 1")
    check_seqlen(seqlen, context_length(getattr(model, "config", None)))
    step = seqlen - 1 if bos_id is not None else seqlen
    n_windows = window_count(int(input_ids.numel()), step, max_windows)
    if n_windows == 0:
        raise UserError(
            f"the evaluation text has {input_ids.numel()} tokens, fewer than one window of {seqlen}; "
            "use a longer text or a smaller --seqlen"
        )
    if device is None:
        device = next(model.parameters()).device
    windows = input_ids[: n_windows * step].view(n_windows, step)
    if bos_id is not None:
        windows = torch.cat([torch.full((n_windows, 1), bos_id, dtype=windows.dtype), windows], dim=1)
    nll: list[float] = []
    was_training = model.training
    model.eval()

    try:
        with torch.inference_mode(), bar("perplexity", n_windows, unit="windows") as advance:
            for start in range(0, n_windows, batch_size):
                batch = windows[start : start + batch_size].to(device)
                logits = model(input_ids=batch, use_cache=False).logits
                nll.extend(window_nll(logits, batch))
                advance(len(batch))
                log.debug("perplexity: %d/%d windows", len(nll), n_windows)
    finally:
        model.train(was_training)
    bad = [i for i, v in enumerate(nll) if not math.isfinite(v)]
    if bad:
        log.warning("perplexity: %d of %d windows have a non-finite loss (first: window %d)", len(bad), n_windows, bad[0])
    return {
        "ppl": ppl_from_window_nll(nll),
        "mean_nll": math.fsum(nll) / len(nll),
        "windows": n_windows,
        "tokens": int(input_ids.numel()),
        "scored_tokens": n_windows * (seqlen - 1),
        "seqlen": seqlen,
        "bos_per_window": bos_id is not None,
        "protocol": PROTOCOL + ("; every window is BOS + seqlen-1 text tokens" if bos_id is not None else ""),
        "window_nll": [float(v) for v in nll],  # per-window mean NLL: paired comparisons of two models bootstrap over windows
    }
