"""What a report says in words: its title, its verdict, human labels for raw keys, the glossary.

Why a module of its own: ``report.md``, ``truthprune compare`` and the plots must use the same
words for the same numbers, and the decision rules behind the words must be written once, before
any number is seen:

* **truth features kept**: the retention interval lies entirely at or above 0.9 (a probe retrained
  on the pruned model keeps at least 90 % of the dense model's above-chance accuracy);
* **partly lost**: the interval lies entirely below 0.9; **mostly lost**: entirely below 0.5;
* otherwise the interval is too wide to tell, and the verdict says so and how to narrow it.

The same thresholds read the transfer retention (the dense model's own probe on the pruned model).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

KEPT, LOST_MOST = 0.9, 0.5

# raw keys of report.json -> what a person reads (tables, plot titles and axes)
LABELS = {  # core's own keys; a plugin's diagnostics are worded by human_label's rule
    "layer_separation": "truth separation",
    "truth_profile": "truth profile",
    "layer_accuracy": "probe accuracy",
    "layer_transfer_accuracy": "dense probe on pruned",
}


def human_label(key: str) -> str:
    """A raw key as words: ``outlier_ratio_percent`` -> ``outlier ratio (%)``."""
    if key in LABELS:
        return LABELS[key]
    words = key.replace("_", " ").strip()
    if words.endswith(" percent"):
        words = words[: -len(" percent")] + " (%)"
    return words


def _pct(x: float) -> str:
    return f"{x * 100:.0f} %"


def title(report: Mapping[str, Any]) -> str:
    """'wanda pruner, uniform allocator: 50 % sparsity as a 2:4 pattern, on smollm2-135m'."""
    cfg, pr = report.get("config") or {}, report.get("pruning") or {}
    sparsity = cfg.get("sparsity", 0.0)
    nm = cfg.get("nm")
    if pr.get("structure"):
        shape = f"{_pct(sparsity)} of the MLP/attention weights removed as whole channels"
    elif nm:
        n, m = nm.split(":")
        shape = f"{_pct(sparsity)} sparsity as a {nm} pattern ({n} of every {m} weights)"
    else:
        shape = f"{_pct(sparsity)} sparsity, unstructured"
    quant = pr.get("quantization")
    q = f", then {quant.get('method')} {quant.get('bits', '?')}-bit" if quant else ""
    return f"{pr.get('pruner', '?')} pruner, {pr.get('allocator', '?')} allocator: {shape}{q}, on {cfg.get('model', '?')}"


def _num(x: Any, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) and math.isfinite(x) else "-"


def interval(entry: Mapping[str, Any] | None, digits: int = 2) -> str:
    """'0.78 [0.62, 0.93]' (or just the value when there is no interval)."""
    if not entry or entry.get("value") is None:
        return "-"
    ci = entry.get("ci")
    text = _num(entry["value"], digits)
    return text + (f" [{_num(ci[0], digits)}, {_num(ci[1], digits)}]" if ci else "")


def judge(entry: Mapping[str, Any] | None) -> str | None:
    """'kept' | 'partly lost' | 'mostly lost' | 'unclear' from a retention estimate (the module's rule)."""
    if not entry or entry.get("value") is None:
        return None
    ci = entry.get("ci")
    if not ci:
        return "unclear"
    lo, hi = ci
    if lo >= KEPT:
        return "kept"
    if hi < LOST_MOST:
        return "mostly lost"
    if hi < KEPT:
        return "partly lost"
    return "unclear"


def ppl_change(dense: Any, pruned: Any) -> str | None:
    if not all(isinstance(x, (int, float)) and math.isfinite(x) and x > 0 for x in (dense, pruned)):
        return None
    change = pruned / dense - 1
    if abs(change) < 0.02:
        return f"Perplexity stayed at {pruned:.2f} (dense {dense:.2f})."
    word = "rose" if change > 0 else "fell"
    return f"Perplexity {word} from {dense:.2f} to {pruned:.2f} ({change * 100:+.0f} %)."


_HEADLINE = {
    "kept": "the pruned model kept its truth features",
    "partly lost": "the pruned model lost part of its truth features",
    "mostly lost": "the pruned model lost most of its truth features",
    "unclear": "too few statements to tell whether the truth features survived",
}


def verdict(report: Mapping[str, Any]) -> list[str]:
    """The report's first paragraph: the verdict in plain words, then the numbers behind it."""
    dense, pruned = report.get("dense") or {}, report.get("pruned") or {}
    sentences = []
    ppl = ppl_change((dense.get("ppl") or {}).get("ppl"), (pruned.get("ppl") or {}).get("ppl"))
    probe_d, probe_p = dense.get("probe") or {}, pruned.get("probe") or {}
    ret = probe_p.get("retention") or {}
    call = judge(ret.get("retention"))
    if call is None and ret:  # retention undefined: the dense probe itself is at chance
        dense_acc = (ret.get("dense_accuracy") or {}).get("value")
        headline = (f"Verdict: the dense model's truth probe is at chance ({_num(dense_acc)} at layer {ret.get('layer')}), "
                    "so there is no truth signal to keep or lose.")
    elif call is None and probe_d.get("best_accuracy") is not None:  # a report written before retention intervals
        headline = "Verdict: see the probe rows below (this report has no retention interval)."
    elif call is None:
        headline = "Verdict: perplexity only (no truth probe was evaluated; add --eval ppl,probe)."
    else:
        headline = f"**Verdict: {_HEADLINE[call]}.**"
    if ppl:
        sentences.append(ppl)
    if call is not None:
        layer = ret.get("layer")
        sentences.append(
            f"At the dense model's best probe layer ({layer}), a truth probe retrained on the pruned model scores "
            f"{interval(ret.get('pruned_accuracy'))} against the dense model's {interval(ret.get('dense_accuracy'))}: "
            f"it keeps {interval(ret.get('retention'))} of the dense model's above-chance accuracy (retention; 1 = all, "
            f"0 = chance).")
        transfer = judge(ret.get("transfer_retention"))
        words = {"kept": "still works on the pruned model", "partly lost": "works only partly on the pruned model",
                 "mostly lost": "barely works on the pruned model", "unclear": "may or may not still work"}[transfer or "unclear"]
        sentences.append(f"The dense model's own probe {words} (transfer retention {interval(ret.get('transfer_retention'))}).")
        if call == "unclear":
            n = (report.get("config") or {}).get("truth_max_per_set")
            more = "--truth-max-per-set 0 (every statement)" if n else "more statement sets (--truth-data)"
            sentences.append(f"The interval is too wide to decide; {more} narrows it.")
        sentences.append(_meaning(call, transfer))
    brackets = " Brackets: 95 % intervals over held-out statements and splits." if call is not None else ""
    return [headline, "", " ".join(sentences) + brackets]


def _meaning(call: str, transfer: str | None) -> str:
    if call == "kept" and transfer == "kept":
        return "What it means: truth is still linearly readable after pruning, in the same place as before."
    if call == "kept":
        return ("What it means: truth is still linearly readable after pruning, but it moved: a lie detector "
                "trained on the dense model must be retrained for the pruned one.")
    if call in ("partly lost", "mostly lost"):
        return ("What it means: pruning removed part of what lets a linear probe tell true from false statements; "
                "compare other pruners or allocators (truthprune compare) before relying on a lie detector here.")
    return "What it means: nothing can be concluded about the truth features from this sample."


GLOSSARY = (
    "**Glossary.** A *truth probe* is a linear classifier trained on a layer's hidden states to tell true from false "
    "statements; its held-out accuracy (0.5 = chance) says how readable truth is at that layer. *Retention* is "
    "(pruned accuracy − 0.5) / (dense accuracy − 0.5) at the dense model's best layer: the share of the above-chance "
    "accuracy that survives pruning. *Transfer* scores the probe trained on the dense model on the pruned model's "
    "hidden states, without retraining: it tells whether the truth direction stayed where it was. *Cross-topic* "
    "accuracy trains on all topics but one and tests on the one left out. *Truth separation* is the ratio of the "
    "between-class to the within-class spread of true and false statements at a layer, and the *truth profile* that "
    "separation normalised over layers, which truth-aware allocators (SWL, TPLO) read. *Perplexity* measures how "
    "well the model predicts held-out text (lower is better). *Sparsity* is the fraction of weights set to zero; an "
    "*N:M pattern* zeroes N of every M consecutive weights; the *allocator* decides each layer's sparsity (uniform, "
    "or by outliers for OWL, or by the truth profile for SWL/TPLO). *Outliers* (OWL) are weights whose "
    "activation-scaled magnitude is far above their layer's mean."
)


__all__ = ["title", "verdict", "human_label", "interval", "judge", "ppl_change", "GLOSSARY", "KEPT", "LOST_MOST"]
