"""``Sparc3Pruner.prepare``: from the dense model and the calibration data to one score per weight.

Order: check that the rules cover the model (gated MLPs, q/k/v attention, RMS norms), the text
relevance over the calibration windows, then (target=truth) the probe on the build statements and
the relevance of its margin, and the per-linear mix.
"""

from __future__ import annotations

from typing import Any

import torch

from truthprune import UserError, decoder_layers

from .relevance import choose_probe_layer, combine, last_token_activations, probe_direction, text_relevance, truth_relevance
from .rules import unsupported_blocks
from .statements import gather_statements


def resolve_layer(requested: int | None, n_layers: int) -> int | None:
    if requested is None:
        return None
    idx = requested + n_layers if requested < 0 else requested
    if not 0 <= idx < n_layers:
        raise UserError(f"sparc3: probe_layer {requested} does not exist; the model has decoder layers 0..{n_layers - 1}")
    return idx


def relevance_scores(model: Any, calibration: Any, context: dict[str, Any], cfg: Any) -> tuple[dict, dict[str, Any]]:
    """({layer: {linear: score}}, what was used) for the linears in ``context['linears']``."""
    layers = list(decoder_layers(model))
    problems = unsupported_blocks(model, layers)
    if problems:
        raise UserError(f"sparc3's LRP rules cover decoders with gated MLPs, q/k/v attention and RMS norms (Llama, Gemma, "
                        f"Qwen, Mistral); {type(model).__name__}: {problems[0]}")
    linears, device = context["linears"], context["device"]
    probe_layer = resolve_layer(cfg.probe_layer, len(layers))  # a bad option fails before the long pass
    n = len(calibration) if cfg.max_windows is None else min(cfg.max_windows, len(calibration))
    text = text_relevance(model, linears, calibration.input_ids[:n], calibration.attention_mask[:n], device)
    info: dict[str, Any] = {"target": cfg.target, "windows": n}
    truth = None
    if cfg.target == "truth":
        ids, mask, labels, groups, names = gather_statements(calibration.auxiliary)
        if ids is None:
            raise UserError("sparc3 target=truth found no statement streams in the calibration data; run it through "
                            "truthprune run/prune (which builds them from --truth-data or the generated sets)")
        batch = max(int(context.get("batch_size", 8)) * 4, 8)
        acts = last_token_activations(model, layers, ids, mask, device, batch)
        y, g = labels.numpy(), groups.numpy()
        if probe_layer is None:
            probe_layer = choose_probe_layer(acts, y, g)
        w, fit_accuracy = probe_direction(acts[probe_layer], y)
        direction = torch.from_numpy(w)
        truth = truth_relevance(model, linears, layers[probe_layer], direction, ids, mask, labels, device, batch)
        info.update(probe_layer=probe_layer, statements=int(len(y)), sets=",".join(names),
                    truth_weight=cfg.truth_weight, probe_fit_accuracy=round(fit_accuracy, 3))
    return combine(text, truth, cfg.truth_weight), info
