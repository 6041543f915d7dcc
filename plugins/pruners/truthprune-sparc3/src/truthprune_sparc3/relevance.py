"""Weight relevances of a whole model: LRP from the next-token logits of calibration text, and
from a truth probe's logit on true/false statements.

* **text**: for each calibration window, the explained score is the sum over its positions of
  the logit of the token that really comes next (the LM head's output, before any soft-capping;
  computed from the head's rows of those tokens only);
  that window's weight relevance is ``W * W.grad`` under :func:`~truthprune_sparc3.rules.lrp_rules`,
  and a weight's text score is the mean over windows of its absolute relevance (a window is one
  reference sample; a weight that pushes the prediction strongly either way matters);
* **truth**: a logistic probe is fitted on the dense model's last-token activations of the build
  statements at one decoder layer; the explained score is the probe's margin summed over the
  statements, sum_s (2 y_s - 1) * (w . h_s) with h_s the layer's output at the statement's last
  token: the gap between true and false statements along the probe direction. A weight's truth
  score is the absolute value of its relevance for that gap. Layers above the probe layer get none.

:func:`combine` mixes the two per linear after dividing each by its mean, so ``truth_weight``
is the same share in every linear.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from .rules import lrp_rules

Linears = Mapping[int, Mapping[str, torch.nn.Linear]]
Scores = dict[int, dict[str, torch.Tensor]]


class _Stop(Exception):
    """Raised by a hook once the needed layer output is captured: the rest of the forward is skipped."""


def _output(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


@contextmanager
def weights_require_grad(model: torch.nn.Module, linears: Linears) -> Iterator[None]:
    """Only the pruned weights require gradients (no work for embeddings, norms, head); restored on exit."""
    saved = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in saved:
            p.requires_grad_(False)
        for mods in linears.values():
            for lin in mods.values():
                lin.weight.grad = None
                lin.weight.requires_grad_(True)
        yield
    finally:
        for mods in linears.values():
            for lin in mods.values():
                lin.weight.grad = None
        for p, flag in saved:
            p.requires_grad_(flag)


def weight_relevance(lin: torch.nn.Linear) -> torch.Tensor:
    """R_ij = W_ij * dscore/dW_ij (float32; zeros when no relevance reached this weight)."""
    if lin.weight.grad is None:
        return torch.zeros(lin.weight.shape, dtype=torch.float32, device=lin.weight.device)
    return (lin.weight.detach().float() * lin.weight.grad.float())


def _zeros(linears: Linears) -> Scores:
    return {i: {n: torch.zeros(lin.weight.shape, dtype=torch.float32, device=lin.weight.device) for n, lin in mods.items()}
            for i, mods in linears.items()}


def next_token_logits(head: torch.nn.Module, hidden: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """[b, S-1]: the LM head's logit of each position's real next token, from the head's input
    (one head row per position instead of the whole vocabulary: the same values and gradients as
    gathering from the full logits, without a [b, S, vocab] tensor)."""
    rows = head.weight[ids[:, 1:]]  # [b, S-1, d]
    logits = (hidden[:, :-1] * rows).sum(-1)
    if getattr(head, "bias", None) is not None:
        logits = logits + head.bias[ids[:, 1:]]
    return logits


def next_token_score(next_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of the next-token logits [b, S-1] where both the position and the next one are real tokens."""
    valid = (mask[:, 1:] * mask[:, :-1]).to(next_logits.dtype)
    return (next_logits * valid).sum()


def text_relevance(model: torch.nn.Module, linears: Linears, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   device: Any, progress: Any = None) -> Scores:
    """Mean over windows of |W * grad| of each window's next-token score (see the module doc)."""
    head = model.get_output_embeddings()
    captured: dict[str, torch.Tensor] = {}

    def grab(_module, args):
        captured["h"] = args[0]
        raise _Stop

    hook = head.register_forward_pre_hook(grab)
    acc = _zeros(linears)
    try:
        with lrp_rules(model), weights_require_grad(model, linears), torch.enable_grad():
            for j in range(int(input_ids.shape[0])):
                ids, mask = input_ids[j:j + 1].to(device), attention_mask[j:j + 1].to(device)
                try:
                    model(input_ids=ids, attention_mask=mask)
                except _Stop:
                    pass
                next_token_score(next_token_logits(head, captured.pop("h"), ids), mask).backward()
                for i, mods in linears.items():
                    for n, lin in mods.items():
                        acc[i][n] += weight_relevance(lin).abs()
                        lin.weight.grad = None
                if progress is not None:
                    progress()
    finally:
        hook.remove()
    n = max(int(input_ids.shape[0]), 1)
    return {i: {k: v / n for k, v in mods.items()} for i, mods in acc.items()}


def last_token_activations(model: torch.nn.Module, layers: Sequence[torch.nn.Module], ids: torch.Tensor, mask: torch.Tensor,
                           device: Any, batch_size: int) -> np.ndarray:
    """[n_layers, n, d] float32: every decoder layer's output at each row's last real token (right padding)."""
    outs: list[list[torch.Tensor]] = [[] for _ in layers]
    current: dict[int, torch.Tensor] = {}
    handles = [layer.register_forward_hook(lambda _m, _i, out, k=k: current.__setitem__(k, _output(out)))
               for k, layer in enumerate(layers)]
    try:
        with torch.inference_mode():
            for s in range(0, int(ids.shape[0]), batch_size):
                b_ids, b_mask = ids[s:s + batch_size].to(device), mask[s:s + batch_size].to(device)
                model(input_ids=b_ids, attention_mask=b_mask)
                last = b_mask.sum(1) - 1
                rows = torch.arange(b_ids.shape[0], device=b_ids.device)
                for k in range(len(layers)):
                    outs[k].append(current[k][rows, last].float().cpu())
    finally:
        for h in handles:
            h.remove()
    return np.stack([torch.cat(o).numpy() for o in outs])


def choose_probe_layer(acts: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> int:
    """The decoder layer whose last-token activations separate true from false best: the largest
    mean over statement sets of the between/within-class variance ratio (truthprune.separation_ratio)."""
    from truthprune import separation_ratio

    means = []
    for layer in range(acts.shape[0]):
        ratios = [separation_ratio(acts[layer][groups == g], labels[groups == g]) for g in np.unique(groups)]
        means.append(float(np.mean(ratios)))
    return int(np.argmax(means))


def probe_direction(acts: np.ndarray, labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, float]:
    """Weights w of an L2 logistic probe (C = 1) on activations scaled by their overall std, mapped
    back to the raw activation space (w / std): the margin is w . h up to a constant; and the
    probe's accuracy on the statements it was fitted on."""
    from truthprune import logistic_regression

    x = np.asarray(acts, dtype=np.float64)
    mean, scale = x.mean(0), float(x.std()) or 1.0
    z, y = (x - mean) / scale, np.asarray(labels)
    clf = logistic_regression(C=1.0, max_iter=2000, random_state=seed).fit(z, y)
    return (clf.coef_.reshape(-1) / scale).astype(np.float32), float(clf.score(z, y))


def truth_relevance(model: torch.nn.Module, linears: Linears, layer: torch.nn.Module, direction: torch.Tensor,
                    ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, device: Any, batch_size: int) -> Scores:
    """|W * grad| of the summed probe margin sum_s (2 y_s - 1) w . h_s (see the module doc)."""
    captured: dict[str, torch.Tensor] = {}

    def stop(_m, _i, out):
        captured["h"] = _output(out)
        raise _Stop

    hook = layer.register_forward_hook(stop)
    try:
        with lrp_rules(model), weights_require_grad(model, linears), torch.enable_grad():
            for s in range(0, int(ids.shape[0]), batch_size):
                b_ids, b_mask = ids[s:s + batch_size].to(device), mask[s:s + batch_size].to(device)
                try:
                    model(input_ids=b_ids, attention_mask=b_mask)
                except _Stop:
                    pass
                h = captured.pop("h")
                last = b_mask.sum(1) - 1
                rows = torch.arange(b_ids.shape[0], device=b_ids.device)
                sign = labels[s:s + batch_size].to(device=h.device, dtype=torch.float32) * 2 - 1
                margin = (sign * (h[rows, last].float() @ direction.to(h.device))).sum()
                margin.backward()  # gradients add up over batches: the relevance of the total margin
            return {i: {n: weight_relevance(lin).abs() for n, lin in mods.items()} for i, mods in linears.items()}
    finally:
        hook.remove()


def combine(text: Scores, truth: Scores | None, truth_weight: float) -> Scores:
    """Per linear: (1 - t) * text / mean(text) + t * truth / mean(truth); text alone where the truth
    relevance is zero (layers above the probe layer) or not computed."""
    out: Scores = {}
    for i, mods in text.items():
        out[i] = {}
        for name, r in mods.items():
            score = r / r.mean().clamp_min(torch.finfo(torch.float32).tiny)
            u = None if truth is None else truth[i][name]
            if u is not None and truth_weight > 0 and float(u.sum()) > 0:
                score = (1.0 - truth_weight) * score + truth_weight * (u / u.mean())
            out[i][name] = score
    return out
