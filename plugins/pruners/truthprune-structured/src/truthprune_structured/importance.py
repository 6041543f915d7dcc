"""Unit importances for structured pruning: entropy, taylor-ce (gradients), magnitude, wanda-sum.

Every importance is an element-wise score per weight, summed over the weights of a unit by
:meth:`truthprune.StructuredLayer.aggregate` (a unit = the gate/up rows and the down column of
one MLP channel, or every q/k/v row and o column of one KV head group).

* ``entropy`` (HFPrune): L = mean over calibration positions of the entropy of the model's own
  next-token distribution, H = -sum_v p_v log p_v. No labels and no teacher.
* ``taylor-ce`` (LLM-Pruner's element-wise first order): L = mean cross-entropy of the true next
  tokens.

For both, g = dL/dW over all calibration tokens (backpropagated in micro-batches whose losses are
scaled by their share of the tokens, so the accumulated gradient is exactly the gradient of the
global mean), and the element score is |g * w| (``aggregate=element``) or the signed g * w summed
over the unit and then made absolute (``aggregate=vector``, the first-order estimate of the loss
change when the whole unit is removed: dL ~ -sum g*w).

* ``magnitude``: the L2 norm of all weights of the unit (sqrt of the summed squares).
* ``wanda-sum``: sum over the unit of |W_ij| * ||X_j||, where ||X_j|| is the L2 norm over all
  calibration tokens of the j-th input of that linear (forward only, padding excluded).
"""

from __future__ import annotations

import logging
import resource
import time
from typing import Any

log = logging.getLogger("truthprune.structured")

GRADIENT_IMPORTANCES = ("entropy", "taylor-ce")
IMPORTANCES = (*GRADIENT_IMPORTANCES, "magnitude", "wanda-sum")


def _targets(layer) -> dict[str, Any]:
    return {**layer.mlp, **layer.attn}


def scored_positions(attention_mask):
    """[b, T-1] bool: position t predicts token t+1, both real tokens (padding excluded)."""
    m = attention_mask.bool()
    return m[:, :-1] & m[:, 1:]


def mean_entropy_sum(logits, valid):
    """Sum over valid positions of the predictive entropy, float32 (the caller divides by N)."""
    import torch

    lp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    h = -(lp.exp() * lp).sum(-1)
    return (h * valid).sum()


def ce_sum(logits, input_ids, valid):
    """Sum over valid positions of the cross-entropy of the true next token, float32."""
    import torch

    lp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -lp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return (nll * valid).sum()


def _peak_memory_mib(device) -> tuple[float, str]:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "peak CUDA memory allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"


def accumulated_gradients(model, calib, layers, loss: str, micro_batch: int, device, quiet: bool = True) -> dict:
    """{id(weight): float32 dL/dW} for every MLP/attention weight of ``layers``, L the mean
    ``loss`` ('entropy' or 'taylor-ce') over all scored calibration positions."""
    import torch

    weights = [m.weight for layer in layers for m in _targets(layer).values()]
    flags = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for w in weights:
        w.requires_grad_(True)
    acc = {id(w): torch.zeros(w.shape, dtype=torch.promote_types(w.dtype, torch.float32), device=w.device) for w in weights}
    ids_all, mask_all = calib.input_ids, calib.attention_mask
    n_tokens = int(scored_positions(mask_all).sum())
    if n_tokens == 0:
        raise ValueError("the calibration windows have no scored position (every window is padding)")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    was_training = model.training
    model.eval()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    steps = range(0, len(ids_all), micro_batch)
    try:
        for k, s in enumerate(steps):
            ids = ids_all[s:s + micro_batch].to(device)
            mask = mask_all[s:s + micro_batch].to(device)
            valid = scored_positions(mask).float()
            with autocast:
                logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
            total = mean_entropy_sum(logits, valid) if loss == "entropy" else ce_sum(logits, ids, valid)
            (total / n_tokens).backward()
            del logits, total
            for w in weights:
                acc[id(w)] += w.grad
                w.grad = None
            if not quiet:
                log.info("importance %s: micro-batch %d/%d", loss, k + 1, len(steps))
    finally:
        for p, f in flags.items():
            p.requires_grad_(f)
            p.grad = None
        model.train(was_training)
    peak, what = _peak_memory_mib(device)
    log.info("importance %s: %d windows in micro-batches of %d (%d forward/backward passes, %d scored tokens) in %.1f s; "
             "gradient accumulators %.1f MiB; %s %.0f MiB", loss, len(ids_all), micro_batch, len(steps), n_tokens,
             time.perf_counter() - t0, sum(a.numel() * a.element_size() for a in acc.values()) / 2**20, what, peak)
    return acc


def input_norms(model, calib, layers, batch_size: int, device) -> dict:
    """{id(linear): ||X_j|| per input column} over all real calibration tokens (forward only)."""
    import torch

    linears = [m for layer in layers for m in _targets(layer).values()]
    sq = {id(m): torch.zeros(m.in_features, dtype=torch.float32, device=device) for m in linears}
    current = {}

    def hook(module, args):
        x = args[0].float() * current["mask"]
        sq[id(module)].add_((x * x).sum(dim=tuple(range(x.dim() - 1))))

    handles = [m.register_forward_pre_hook(hook) for m in linears]
    try:
        with torch.inference_mode():
            for s in range(0, len(calib), batch_size):
                ids = calib.input_ids[s:s + batch_size].to(device)
                mask = calib.attention_mask[s:s + batch_size].to(device)
                current["mask"] = mask[..., None].float()
                body = model.get_decoder() if hasattr(model, "get_decoder") else model  # the LM head needs no norms
                body(input_ids=ids, attention_mask=mask, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return {k: v.sqrt() for k, v in sq.items()}


def unit_importance(model, calib, layers, importance: str, *, heads: bool, aggregate: str = "element",
                    micro_batch: int = 1, batch_size: int = 8, device=None, quiet: bool = True) -> dict:
    """{layer index: UnitScores} for ``importance`` (see the module docstring)."""
    import torch

    device = device or next(model.parameters()).device
    if importance in GRADIENT_IMPORTANCES:
        grads = accumulated_gradients(model, calib, layers, importance, micro_batch, device, quiet)
    elif importance == "wanda-sum":
        norms = input_norms(model, calib, layers, batch_size, device)
    elif importance != "magnitude":
        raise ValueError(f"unknown importance {importance!r}; choose from {', '.join(IMPORTANCES)}")
    out = {}
    with torch.no_grad():
        for layer in layers:
            per = {}
            for name, m in _targets(layer).items():
                w = m.weight.to(torch.promote_types(m.weight.dtype, torch.float32))
                if importance in GRADIENT_IMPORTANCES:
                    gw = grads.pop(id(m.weight)) * w
                    per[name] = gw.abs() if aggregate == "element" else gw
                elif importance == "magnitude":
                    per[name] = w * w
                else:
                    per[name] = w.abs() * norms[id(m)][None, :]
            scores = layer.aggregate(per, heads=heads)
            if importance == "magnitude":
                scores.mlp = scores.mlp.sqrt()
                scores.heads = scores.heads.sqrt() if scores.heads is not None else None
            elif importance in GRADIENT_IMPORTANCES and aggregate == "vector":
                scores.mlp = scores.mlp.abs()
                scores.heads = scores.heads.abs() if scores.heads is not None else None
            out[layer.index] = scores
    return out


def signed_first_order(model, calib, layers, loss: str, micro_batch: int = 1):
    """{layer index: UnitScores} of sum over each unit of g * w (signed): the first-order estimate
    is dL ~ -eps * that sum when the unit's weights are scaled by (1 - eps). For tests and analysis."""
    return unit_importance(model, calib, layers, loss, heads=True, aggregate="vector-signed", micro_batch=micro_batch)
