"""Does the model still *say* the truth, and does a misleading prompt make it say the opposite?

For every item (:mod:`.truthfulness_items`) and prompt style (:mod:`.prompt_styles`) the model is
asked once; one forward pass gives both measurements:

* **output truthfulness**: the log-probabilities of the two answers after the prompt (``True`` vs
  ``False``, or ``A`` vs ``B``); the model "says" the answer whose log-probability is strictly
  higher. Single-token answers are read off the last position's logits; an answer of several
  tokens is scored as the sum of its tokens' log-probabilities (:func:`continuation_logliks`).
* **internal truthfulness**: the residual-stream state of every decoder layer at the prompt's last
  token (the position that predicts the answer), captured with forward hooks as in
  :mod:`truthprune.truth.activations`.

**Units.** Each item is asked under one rephrasing per style, the same rephrasing index ``k`` in
every style (``k`` cycles over the five, assigned by a seeded permutation), so a flip compares
neutral prompt ``k`` with deceptive prompt ``k`` on the same item. ``all_prompts=True`` asks every
item under all five rephrasings (5x the cost). Metrics are in :mod:`.truthfulness_metrics`.

Batching: the prompts go through the same batched last-token pass as statement extraction
(:mod:`truthprune.truth.last_token`: sorted by length, right-padded with an attention mask, real
tokens keep positions 0..len-1), so results equal the one-by-one ones up to float rounding (tested).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..models.adapter import decoder_layers
from ..truth.last_token import DEFAULT_TOKEN_BUDGET, last_token_states, pad_token_id
from ..errors import UserError
from .prompt_styles import STYLES, PromptSet, load_prompts, render, resolve_template
from .truthfulness_items import Item
from . import truthfulqa  # truthfulqa.continuation_logliks looked up at call time (tests replace it there)
from ..cache import cached_json

log = logging.getLogger(__name__)

Request = tuple[list[int], tuple[list[int], list[int]]]


def assign_prompts(n_items: int, seed: int, dimension: str, all_prompts: bool, n_prompts: int = 5) -> list[tuple[int, int]]:
    """(item index, rephrasing index) units of one dimension."""
    if all_prompts:
        return [(i, k) for i in range(n_items) for k in range(n_prompts)]
    import zlib

    perm = np.random.default_rng([seed, zlib.crc32(f"prompts:{dimension}".encode())]).permutation(n_items)
    return [(i, int(perm[i]) % n_prompts) for i in range(n_items)]


def build_requests(tokenizer: Any, prompts: PromptSet, template: str, items: Sequence[Item],
                   units: Sequence[tuple[int, int]], style: str) -> list[Request]:
    out = []
    for i, k in units:
        item = items[i]
        body = prompts.body(item.kind, **dict(item.fields))
        out.append(render(tokenizer, prompts, template, prompts.styles[style][k], body, prompts.answers(item.kind)))
    return out


def _single_token_answers(requests: Sequence[Request]) -> np.ndarray:
    """[n, 2] token ids of the two answers, -1 where an answer has several tokens."""
    return np.array([[a[0] if len(a) == 1 else -1, b[0] if len(b) == 1 else -1] for _, (a, b) in requests],
                    dtype=np.int64).reshape(-1, 2)


def score_requests(model: Any, requests: Sequence[Request], batch_size: int | None = 16, pad_id: int = 0,
                   quiet: bool = True, token_budget: int = DEFAULT_TOKEN_BUDGET) -> tuple[np.ndarray, np.ndarray]:
    """(log-probs [n, 2] of the two answers, last-token activations [n_layers, n, d] float32).

    Prompts go through :func:`truthprune.truth.last_token.last_token_states` (length-sorted
    batches of at most ``token_budget`` padded tokens and ``batch_size`` prompts)."""
    import torch

    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch-size {batch_size} must be at least 1")
    n = len(requests)
    layers = decoder_layers(model)
    answers = _single_token_answers(requests)
    single = (answers >= 0).all(axis=1)
    lp = np.zeros((n, 2), dtype=np.float64)

    def read_answers(idx: np.ndarray, logits) -> None:
        keep = single[idx]
        if keep.any():
            logp = torch.log_softmax(logits[torch.from_numpy(keep)].float(), dim=-1)
            picked = torch.gather(logp, 1, torch.from_numpy(answers[idx[keep]]).to(logp.device))
            lp[idx[keep]] = picked.double().cpu().numpy()

    was_training = model.training
    model.eval()
    try:
        acts = last_token_states(model, layers, list(range(len(layers))), [r[0] for r in requests], pad_id=pad_id,
                                 token_budget=token_budget, max_rows=batch_size, on_logits=read_answers,
                                 progress_label=None if quiet else "asking the model")
        multi = np.flatnonzero(~single).tolist()
        if multi:  # answers of several tokens: full continuation log-likelihoods
            pairs = [(requests[i][0], requests[i][1][j]) for i in multi for j in (0, 1)]
            ll = truthfulqa.continuation_logliks(model, pairs, batch_size=batch_size or 16, device=next(model.parameters()).device,
                                      share_prefix=False)
            for m, i in enumerate(multi):
                lp[i] = (ll[2 * m], ll[2 * m + 1])
    finally:
        model.train(was_training)
    return lp, acts


def items_hash(items: dict[str, list[Item]]) -> str:
    h = hashlib.sha256()
    for dim, its in items.items():
        h.update(dim.encode() + b"\x00")
        for it in its:
            h.update(json.dumps([it.kind, it.fields, it.label, it.group]).encode() + b"\x00")
    return h.hexdigest()[:24]


def evaluate_truthfulness(
    model: Any,
    tokenizer: Any,
    items: dict[str, list[Item]],
    notes: dict[str, str] | None = None,
    template: str = "auto",
    all_prompts: bool = False,
    probe: str = "logreg",
    probe_options: dict[str, Any] | None = None,
    seed: int = 0,
    batch_size: int | None = 16,
    report_layer: int | None = None,
    quiet: bool = True,
    prompts: PromptSet | None = None,
    token_budget: int = DEFAULT_TOKEN_BUDGET,
) -> dict[str, Any]:
    """Output and internal truthfulness per prompt style x dimension (a JSON-able dict).

    ``report_layer``: the layer at which probe accuracy, "knows but says false" and the PCA are
    reported (a compressed model is read at the dense model's best layer); None = this model's
    own best layer (highest neutral-style probe accuracy).
    """
    from .truthfulness_metrics import summarize

    prompts = prompts or load_prompts()
    template = resolve_template(tokenizer, template)
    items = {d: its for d, its in items.items() if its}
    if not items:
        raise UserError("no truthfulness items to evaluate")
    pad_id = pad_token_id(tokenizer)
    t0 = time.perf_counter()
    dims, item_idx, prompt_idx, labels, groups = [], [], [], [], []
    for dim, its in items.items():
        for i, k in assign_prompts(len(its), seed, dim, all_prompts, len(prompts.styles["neutral"])):
            dims.append(dim)
            item_idx.append(i)
            prompt_idx.append(k)
            labels.append(its[i].label)
            groups.append(f"{dim}:{its[i].group}")
    logprobs, activations = {}, {}
    for style in STYLES:
        requests = []
        for dim, its in items.items():
            units = [(i, k) for d, i, k in zip(dims, item_idx, prompt_idx) if d == dim]
            requests += build_requests(tokenizer, prompts, template, its, units, style)
        logprobs[style], activations[style] = score_requests(model, requests, batch_size, pad_id, quiet, token_budget)
        log.info("truthfulness: %s prompts scored (%d units)", style, len(requests))
    result = summarize(
        logprobs, activations, np.asarray(labels), np.asarray(dims), np.asarray(prompt_idx), groups,
        probe=probe, probe_options=probe_options, seed=seed, report_layer=report_layer,
    )
    kinds = {dim: its[0].kind for dim, its in items.items()}
    result.update(
        prompts_version=prompts.version,
        template=template,
        answers={dim: list(prompts.answers(kind)) for dim, kind in kinds.items()},
        assignment="all five rephrasings per item" if all_prompts else "one rephrasing per item (same index in every style)",
        items={dim: {"n_items": len(items.get(dim, [])), "source": (notes or {}).get(dim, "")} for dim in items},
        skipped={dim: note for dim, note in (notes or {}).items() if dim not in items},
        seed=seed,
        seconds=round(time.perf_counter() - t0, 2),
    )
    return result


# --------------------------------------------------------------------------- cached, for run and eval


def truthfulness_key(fingerprint: str, items: dict[str, list[Item]], **settings: Any) -> dict[str, Any]:
    """Everything the result depends on: the weights, the items, the prompts file and the settings."""
    return {"fp": fingerprint, "items": items_hash(items), "prompts": load_prompts().version, **settings}


def cached_truthfulness(loaded: Any, items: dict[str, list[Item]], notes: dict[str, str], *, template: str = "auto",
                        all_prompts: bool = False, probe: str = "logreg", probe_options: dict[str, Any] | None = None,
                        seed: int = 0, batch_size: int | None = 16, report_layer: int | None = None,
                        quiet: bool = True, token_budget: int = DEFAULT_TOKEN_BUDGET) -> dict[str, Any]:
    """:func:`evaluate_truthfulness` of a :class:`LoadedModel`, cached on disk by its weights'
    fingerprint (a sweep or a series of ``eval truthfulness --baseline`` runs asks the dense
    model once). ``batch_size`` and ``token_budget`` are not part of the key: they change float
    rounding only."""
    settings = {"template": template, "all_prompts": all_prompts, "probe": probe, "probe_options": probe_options or {},
                "seed": seed, "report_layer": report_layer}
    key = truthfulness_key(loaded.fingerprint, items, **settings)
    return cached_json("truthfulness", key, lambda: evaluate_truthfulness(
        loaded.model, loaded.tokenizer, items, notes, batch_size=batch_size, quiet=quiet, token_budget=token_budget,
        **settings))


__all__ = ["assign_prompts", "build_requests", "cached_truthfulness", "evaluate_truthfulness", "items_hash", "score_requests"]
