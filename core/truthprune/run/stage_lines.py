"""What each finished stage adds to its progress line (``[5/9] prune  64 s  (overall sparsity 0.500)``).

Each function reads the state after its stage and returns a few plain words; an empty string
when there is nothing worth saying. Kept apart from the stages so they stay free of output.
"""

from __future__ import annotations

from typing import Any

from .state import RunState


def converted(state: RunState) -> str:
    return f"{state.plan.config.model} converted once to safetensors (cached)"


def loaded(state: RunState) -> str:
    loaded = state.loaded
    if loaded is None:
        return ""
    dtype = str(getattr(loaded.model, "dtype", "")).replace("torch.", "")
    return f"{state.plan.config.model}, {dtype} on {loaded.device}"


def evaluated(state: RunState, role: str) -> str:
    results: dict[str, Any] = state.dense if role == "dense" else state.pruned
    parts = []
    ppl = (results.get("ppl") or {}).get("ppl")
    if isinstance(ppl, (int, float)):
        parts.append(f"perplexity {ppl:.2f}")
    tqa = results.get("truthfulqa") or {}
    if isinstance(tqa.get("mc1"), (int, float)):
        parts.append(f"TruthfulQA MC1 {tqa['mc1']:.3f}")
    return ", ".join(parts)


def statements(state: RunState) -> str:
    sets = state.truth_sets.probed if state.truth_sets else []
    if not sets:
        return ""
    return f"{sum(len(s) for s in sets)} statements in {len(sets)} sets"


def profile(state: RunState) -> str:
    values = state.profile_values
    if not values:
        return ""
    peak = max(range(len(values)), key=values.__getitem__)
    return f"truth separation peaks at layer {peak}"


def calibrated(state: RunState) -> str:
    cfg = state.plan.config
    return f"{cfg.nsamples} x {cfg.seqlen} tokens from {'+'.join(cfg.calibration)}"


def pruned(state: RunState) -> str:
    report = state.pruning
    if report is None:
        return ""
    return f"overall sparsity {report.overall:.3f}"


def compared(state: RunState) -> str:
    dense, pruned_ = (state.dense.get("probe") or {}), (state.pruned.get("probe") or {})
    retention = ((pruned_.get("retention") or {}).get("retention") or {}).get("value")
    if dense.get("best_accuracy") is None:
        return ""
    text = f"probe {dense['best_accuracy']:.3f} dense, {pruned_.get('accuracy_at_dense_best_layer', float('nan')):.3f} pruned"
    return text + (f" at layer {dense['best_layer']}; retention {retention:.2f}" if retention is not None else "")
