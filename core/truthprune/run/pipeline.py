"""A run: :func:`plan_run` (everything checked, nothing loaded), then :func:`execute` the stages.

:data:`STAGES` is the one place that orders them; each is a function RunState -> RunState
(:mod:`truthprune.run.state`). ``truthprune run``, ``truthprune prune`` (in memory) and
``truthprune sweep`` all execute this list; a stage that does not apply to a plan (no --save, a
``prune`` plan that evaluates nothing, an allocator without a truth profile) is skipped.

Each stage logs what it used and how long it took, and records it in the report. Everything a
user can get wrong (names, options, paths) is checked before the model is loaded, so a typo fails
in a second rather than after minutes of work.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import RunConfig
from ..errors import UserError
from .checks import check_run_config, check_truth_sets, claim_run_outputs
from . import stage_lines as said
from . import stages as st
from . import truth_stages as truth
from .kinds import kind_of
from .state import RunPlan, RunState
from ..plugin.registry import get_registry
from .estimate import stage_seconds
from .truthfulness_stage import check as check_truthfulness
from ..eval.lm_eval_bridge import check
from ..models.support import plan_check
from ..plugin.interfaces import CalibrationContext
from ..progress import StageLine, session, silence_third_party_bars
from ..pruning.ct_export import check_compressed_tensors

log = logging.getLogger("truthprune.run")


def _source_options(config: RunConfig, name: str) -> dict[str, Any]:
    opts = config.calibration_options
    shared = {k: v for k, v in opts.items() if not isinstance(v, dict)}
    return {**shared, **opts.get(name, {})}


def plan_run(config: RunConfig, report: bool = True, dry_run: bool = False) -> RunPlan:
    """Resolve and validate every plugin and option; no model is loaded. The outputs (--out unless
    ``report`` is False, --save) are checked and locked last (:mod:`truthprune.run.checks`);
    ``dry_run`` checks them without locking or creating anything."""
    ref = check_run_config(config)
    if config.format == "compressed-tensors":
        check_export_plan(config)
    reg = get_registry()
    pruner = reg.create("pruner", config.pruner, config.pruner_options)
    kind = kind_of(pruner)
    kind.check_plan(config, pruner)
    allocator_name = config.allocator or pruner.default_allocator
    allocator = reg.create("allocator", allocator_name, config.allocator_options)
    allocator.check()
    sources = [reg.create("calibration", name, _source_options(config, name)) for name in config.calibration]
    for src in sources:
        src.check()
    if "probe" in config.eval:  # the name and options fail now; the protocol creates its probes per fit
        reg.create("probe", config.probe, config.probe_options)
    if config.nsamples % len(sources):
        raise UserError(f"--nsamples {config.nsamples} is not divisible by the {len(sources)} calibration sources")
    if config.nm_tuple and allocator.name != "uniform":
        raise UserError(f"--nm gives every layer the same N:M pattern; it cannot be combined with allocator {allocator.name!r}")
    if config.truth_data is not None and not Path(config.truth_data).is_dir():
        raise UserError(f"--truth-data {config.truth_data!r} is not a directory of true/false statement CSVs")
    if "truthfulness" in config.eval:
        check_truthfulness(config)

    pruner.check(CalibrationContext(tokenizer=None, seed=config.seed, truth_data=config.truth_data, chat_template=config.chat_template))

    plan_check(config)  # --targets/--ignore, and a local model's architecture (meta device, no weights)
    truth_sets = check_truth_sets(config, allocator)
    lm_eval_skipped = None
    if config.lm_eval_tasks:
        lm_eval_skipped = check(config)
    quantizer = plan_quantizer(config)
    claim_run_outputs(config, report=report, claim=not dry_run)
    plan = RunPlan(config=config, pruner=pruner, kind=kind, allocator=allocator, sources=sources, model_ref=ref,
                   writes_report=report,
                   truth_sets=truth_sets, lm_eval_skipped=lm_eval_skipped, quantizer=quantizer)

    return dataclasses.replace(plan, estimates=stage_seconds(plan, planned_stages(plan)))


def plan_quantizer(config: RunConfig) -> Any | None:
    """The quantizer of a run (None without --quantizer); its options are checked here, before any load."""
    if config.quantizer is None:
        if config.quantizer_options:
            keys = ", ".join(sorted(config.quantizer_options))
            raise UserError(f"quantizer options ({keys}) were given without --quantizer; add e.g. --quantizer gptq (or rtn)")
        return None
    quantizer = get_registry().create("quantizer", config.quantizer, config.quantizer_options)
    if config.format == "compressed-tensors" and not quantizer.contiguous_groups():
        raise UserError(f"quantizer {quantizer.name!r} with these options permutes its groups (act-order), which "
                        "--format compressed-tensors cannot store; drop act_order, use --group-size 0, or drop --format")
    return quantizer


def check_export_plan(config: RunConfig) -> None:
    """--format compressed-tensors: a quantizer, a --save directory and a supported compressed-tensors."""
    if config.quantizer is None:
        raise UserError("--format compressed-tensors stores quantized weights, and no --quantizer was given; add e.g. "
                        "--quantizer gptq --bits 4 (pruned-only models are saved as plain safetensors with zeros)")
    if not config.save:
        raise UserError("--format compressed-tensors is the format of --save, and no --save DIR was given")
    check_compressed_tensors()


def _evals(cfg: RunConfig) -> str:
    return ",".join([*cfg.eval, *(f"lm-eval:{t}" for t in cfg.lm_eval_tasks)])


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Stage:
    """One step of a run: ``run(state) -> state``, done when ``applies(state)``; ``used(state)`` is
    what the stage log records (timed stages only)."""

    name: str
    run: Callable[[RunState], RunState]
    applies: Callable[[RunState], bool] = lambda state: True
    used: Callable[[RunState], dict[str, Any]] = lambda state: {}
    timed: bool = True
    said: Callable[[RunState], str] = lambda state: ""  # what the stage's progress line adds (after it ran)


def _cfg(state: RunState) -> RunConfig:
    return state.plan.config


def _calibrating(state: RunState) -> dict[str, Any]:
    c = _cfg(state)
    return {"sources": "+".join(c.calibration), "nsamples": c.nsamples, "seqlen": c.seqlen, "seed": c.seed}


def _pruning(state: RunState) -> dict[str, Any]:
    p = state.plan
    return {"pruner": p.pruner.name, "allocator": p.allocator.name, "sparsity": _cfg(state).sparsity,
            **({"quantizer": p.quantizer.name} if p.quantizer else {})}


def _probing(state: RunState) -> bool:
    return state.plan.writes_report and "probe" in _cfg(state).eval


STAGES: tuple[Stage, ...] = (
    Stage("convert-gguf", st.convert, lambda s: s.load is None and s.plan.model_ref.converts,
          lambda s: {"model": _cfg(s).model}, said=said.converted),
    Stage("check-memory", st.check_memory, lambda s: s.plan.check_memory, timed=False),
    Stage("load", st.load_stage, lambda s: not s.plan.offload, used=lambda s: {"model": _cfg(s).model, "device": s.plan.device or _cfg(s).device,
                                                 "dtype": _cfg(s).dtype}, said=said.loaded),
    Stage("dense-eval", st.dense_eval, lambda s: s.plan.writes_report, lambda s: {"evals": _evals(_cfg(s))},
          said=lambda s: said.evaluated(s, "dense")),
    Stage("dense-truth", truth.dense_truth, _probing, lambda s: {"data": _cfg(s).truth_data or "generated"},
          said=said.statements),
    Stage("truth-profile", truth.truth_profile, lambda s: s.plan.allocator.needs_truth_profile,
          lambda s: {"data": _cfg(s).truth_data or "generated"}, said=said.profile),
    Stage("calibrate", st.calibrate, used=_calibrating, said=said.calibrated),
    Stage("prune", st.prune, used=_pruning, said=said.pruned),
    Stage("pruned-eval", st.pruned_eval, lambda s: s.plan.writes_report, lambda s: {"evals": _evals(_cfg(s))},
          said=lambda s: said.evaluated(s, "pruned")),
    Stage("truth-compare", truth.truth_compare, _probing, lambda s: {"probe": _cfg(s).probe}, said=said.compared),
    Stage("report", st.build_report, lambda s: s.plan.writes_report, timed=False),
    Stage("save", st.save, lambda s: bool(_cfg(s).save) and not s.plan.offload, lambda s: {"path": _cfg(s).save},
          said=lambda s: f"checkpoint in {_cfg(s).save}"),
    Stage("write-report", st.write_report, lambda s: s.plan.writes_report, timed=False),
)


def planned_stages(plan: RunPlan, load: Callable[[RunConfig], Any] | None = None) -> list[str]:
    """The timed stages ``plan`` will run, in order (what --dry-run lists and the progress lines count)."""
    state = RunState(plan=plan, load=load)
    return [s.name for s in STAGES if s.timed and s.applies(state)]


def execute(plan: RunPlan, load: Callable[[RunConfig], Any] | None = None) -> RunState:
    """Run every stage of :data:`STAGES` that applies to ``plan``, in order; return the final state
    (``state.out``: the report directory of a run; ``state.pruning``: what was pruned).

    ``load(config) -> LoadedModel`` replaces the load stage; a sweep passes one that loads the
    model once and restores the dense weights for every later run.
    """
    from ..pruning.engine.distributed import data_parallel

    silence_third_party_bars()
    seed_everything(plan.config.seed)
    state = RunState(plan=plan, load=load)
    quiet = plan.config.quiet or not data_parallel().is_writer
    lines = StageLine(planned_stages(plan, load), plan.estimates, quiet=quiet)
    with session(quiet):
        for stage in STAGES:
            if not stage.applies(state):
                continue
            if not stage.timed:
                state = stage.run(state)
                continue
            with state.log.stage(stage.name, lines, **stage.used(state)):
                state = stage.run(state)
            lines.done(stage.name, state.log.timings[stage.name], stage.said(state))
    return state
