"""The plan of a run in plain lines: what ``--dry-run`` prints (and what a run shows first).

Everything here is known before a model loads: the resolved plugins and settings, the data the
run will read, the outputs it will write, the stages it will run and a rough time for each
(:mod:`truthprune.run.estimate`).
"""

from __future__ import annotations

from typing import Any
from .estimate import scale_of
from .stages import ppl_windows
from ..models.spec import ModelRef
from ..progress import format_seconds


def _model(ref: ModelRef) -> str:
    if ref.kind == "embedded":
        first = "; converted to safetensors on first use" if ref.converts else ""
        return f"{ref.spec} (embedded{first})"
    return ref.spec


def _pruning(plan: Any) -> str:
    cfg = plan.config
    pattern = f", {cfg.nm} pattern" if cfg.nm else ""
    text = f"{plan.pruner.name} with the {plan.allocator.name} allocator, sparsity {cfg.sparsity:.2f}{pattern}"
    if plan.quantizer is not None:
        opts = cfg.quantizer_options
        text += f", then {plan.quantizer.name} {opts.get('bits', '?')}-bit"
    return text


def _evaluation(plan: Any) -> list[str]:
    cfg = plan.config
    if not plan.writes_report:
        return []
    lines = []
    if "ppl" in cfg.eval:
        windows = ppl_windows(cfg)
        lines.append(f"perplexity on {cfg.ppl_data}, {'every' if windows is None else f'the first {windows}'} "
                     f"window{'s' if windows != 1 else ''} of {cfg.seqlen} tokens")
    if "probe" in cfg.eval and plan.truth_sets is not None:
        sets = plan.truth_sets.probed
        n = sum(len(s) for s in sets)
        cap = f"at most {cfg.truth_max_per_set} per set" if plan.truth_sets.probe_sets is not None else "every statement"
        lines.append(f"{cfg.probe} truth probe on every layer: {len(sets)} statement sets, {n} statements ({cap}; "
                     f"{cfg.truth_data or 'generated offline'})")
    if "truthfulqa" in cfg.eval:
        lines.append(f"TruthfulQA MC1/MC2 ({cfg.truthfulqa_data or 'hub'}"
                     f"{f', first {cfg.truthfulqa_limit} questions' if cfg.truthfulqa_limit else ''})")
    if "truthfulness" in cfg.eval:
        lines.append(f"truthfulness under honest/neutral/deceptive prompts, {cfg.truthfulness_limit} items per dimension")
    if cfg.lm_eval_tasks:
        lines.append(f"lm-eval tasks {', '.join(cfg.lm_eval_tasks)} (not in the time estimate)")
    return lines


def _outputs(plan: Any) -> list[str]:
    cfg = plan.config
    replace = " (replaced: --overwrite)" if cfg.overwrite else ""
    out = []
    if plan.writes_report:
        out.append(f"{cfg.out.rstrip('/')}/: report.md, report.json and plots{replace}")
    if cfg.save:
        out.append(f"{cfg.save.rstrip('/')}/: the pruned model (safetensors){replace}")
    return out


def plan_lines(plan: Any, names: list[str]) -> list[str]:
    """The plan as indented lines, ending with the stages and the estimated total time."""
    cfg = plan.config
    lines = [f"  model        {_model(plan.model_ref)}", f"  pruning      {_pruning(plan)}"]
    if "calibrate" in names:
        lines.append(f"  calibration  {'+'.join(cfg.calibration)}: {cfg.nsamples} samples x {cfg.seqlen} tokens, seed {cfg.seed}")
    for k, text in enumerate(_evaluation(plan)):
        lines.append(f"  {'evaluation' if k == 0 else '':<12} {text}")
    for k, text in enumerate(_outputs(plan)):
        lines.append(f"  {'writes' if k == 0 else '':<12} {text}")
    est = plan.estimates
    stages = ", ".join(f"{n} ~{format_seconds(est[n])}" if est.get(n, 0) >= 1 else n for n in names)
    lines.append(f"  stages       {stages}")
    total = sum(est.get(n, 0.0) for n in names)
    scale = scale_of(plan.model_ref)
    basis = "for this model, scaled from SmolLM2-135M" if (scale or 1.0) != 1.0 else ""
    if scale is None:
        basis = "model size unknown before it loads: timed as if it were SmolLM2-135M"
    lines.append(f"  time         about {format_seconds(total)} on a 2-core CPU{f' ({basis})' if basis else ''}; "
                 "much less on a GPU")
    return lines


__all__ = ["plan_lines"]
