"""``truthprune run``: load -> dense baselines -> calibrate -> allocate -> prune -> evaluate -> report.

Each stage logs what it used and how long it took, and records it in the report. Everything a
user can get wrong (names, options, paths) is checked before the model is loaded, so a typo fails
in a second rather than after minutes of work.
"""

from __future__ import annotations

import logging
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import RunConfig
from ..errors import UserError
from .checks import check_run_config, claim_run_outputs
from ..plugin.registry import get_registry

log = logging.getLogger("truthprune.run")


@dataclass
class RunPlan:
    """The validated plugins of a run, created before anything heavy happens."""

    config: RunConfig
    pruner: Any
    allocator: Any
    sources: list[Any]
    probe: Any | None
    lm_eval_skipped: dict[str, str] | None = None  # {"skipped": reason} when --lm-eval-tasks cannot run at all
    quantizer: Any | None = None  # applied by the engine right after the pruner, per linear
    timings: dict[str, float] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)  # per-run intermediate results (e.g. dense activations)

    @contextmanager
    def stage(self, name: str, **used: Any):
        log.info("stage %s: %s", name, ", ".join(f"{k}={v}" for k, v in used.items()) or "-")
        t0 = time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        self.timings[name] = round(dt, 3)
        self.stages.append({"stage": name, "seconds": round(dt, 3), **{k: str(v) for k, v in used.items()}})
        log.info("stage %s done in %.1f s", name, dt)


def _source_options(config: RunConfig, name: str) -> dict[str, Any]:
    opts = config.calibration_options
    shared = {k: v for k, v in opts.items() if not isinstance(v, dict)}
    return {**shared, **opts.get(name, {})}


def plan_run(config: RunConfig, report: bool = True) -> RunPlan:
    """Resolve and validate every plugin and option; no model is loaded. The outputs (--out unless
    ``report`` is False, --save) are checked and locked last (:mod:`truthprune.run.checks`)."""
    check_run_config(config)
    reg = get_registry()
    pruner = reg.create("pruner", config.pruner, config.pruner_options)
    if getattr(pruner, "structured", False):  # whole units, one width: no allocator, N:M or per-layer saving
        from ..pruning.structured import check_structured_plan

        check_structured_plan(config, pruner)
    allocator_name = config.allocator or pruner.default_allocator
    allocator = reg.create("allocator", allocator_name, config.allocator_options)
    sources = [reg.create("calibration", name, _source_options(config, name)) for name in config.calibration]
    for src in sources:
        src.check()
    probe = reg.create("probe", config.probe, config.probe_options) if "probe" in config.eval else None
    if config.nsamples % len(sources):
        raise UserError(f"--nsamples {config.nsamples} is not divisible by the {len(sources)} calibration sources")
    if config.nm_tuple and allocator.name != "uniform":
        raise UserError(f"--nm gives every layer the same N:M pattern; it cannot be combined with allocator {allocator.name!r}")
    if config.truth_data is not None and not Path(config.truth_data).is_dir():
        raise UserError(f"--truth-data {config.truth_data!r} is not a directory of true/false statement CSVs")
    if "truthfulness" in config.eval:
        from .truthfulness_stage import check as check_truthfulness

        check_truthfulness(config)
    from ..plugin.interfaces import CalibrationContext

    pruner.check(CalibrationContext(tokenizer=None, seed=config.seed, truth_data=config.truth_data, chat_template=config.chat_template))
    from ..models.support import plan_check

    plan_check(config)  # --targets/--ignore, and a local model's architecture (meta device, no weights)
    claim_run_outputs(config, allocator, report=report)
    lm_eval_skipped = None
    if config.lm_eval_tasks:
        from ..eval.lm_eval_bridge import check

        lm_eval_skipped = check(config)
    return RunPlan(config=config, pruner=pruner, allocator=allocator, sources=sources, probe=probe,
                   lm_eval_skipped=lm_eval_skipped, quantizer=plan_quantizer(config, pruner))


def plan_quantizer(config: RunConfig, pruner: Any) -> Any | None:
    """The quantizer of a run (None without --quantizer); its options are checked here, before any load."""
    if config.quantizer is None:
        if config.quantizer_options:
            keys = ", ".join(sorted(config.quantizer_options))
            raise UserError(f"quantizer options ({keys}) were given without --quantizer; add e.g. --quantizer gptq (or rtn)")
        return None
    quantizer = get_registry().create("quantizer", config.quantizer, config.quantizer_options)
    if getattr(pruner, "structured", False):
        raise UserError(f"structured pruner {pruner.name!r} does not run through the quantizing engine; save its model, "
                        f"then quantize it: truthprune prune --model DIR --pruner magnitude --sparsity 0 --quantizer {quantizer.name}")
    return quantizer


def _evals(cfg: RunConfig) -> str:
    return ",".join([*cfg.eval, *(f"lm-eval:{t}" for t in cfg.lm_eval_tasks)])


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def execute(plan: RunPlan, load=None) -> Path:
    """Run the whole pipeline; return the report directory.

    ``load(config) -> LoadedModel`` replaces the load stage; a sweep passes one that loads the
    model once and restores the dense weights for every later run.
    """
    from . import stages as st

    cfg = plan.config
    seed_everything(cfg.seed)
    if load is None:
        from ..models.loading import conversion_pending, resolve_model_path

        if conversion_pending(cfg.model):  # first use of a .gguf / embedded model: its own stage, not "load"
            with plan.stage("convert-gguf", model=cfg.model):
                resolve_model_path(cfg.model)
    with plan.stage("load", model=cfg.model, device=cfg.device, dtype=cfg.dtype):
        loaded = (load or st.load)(cfg)
    results: dict[str, Any] = {"dense": {}, "pruned": {}}
    dense_fp = loaded.fingerprint
    with plan.stage("dense-eval", evals=_evals(cfg)):
        results["dense"] = st.evaluate(plan, loaded, dense_fp, role="dense")
    truth_profile = None
    if plan.allocator.needs_truth_profile:
        with plan.stage("truth-profile", data=cfg.truth_data or "generated"):
            truth_profile = st.truth_profile(plan, loaded, dense_fp, results)
    with plan.stage("calibrate", sources="+".join(cfg.calibration), nsamples=cfg.nsamples, seqlen=cfg.seqlen, seed=cfg.seed):
        calib = st.calibrate(plan, loaded)
    with plan.stage("prune", pruner=plan.pruner.name, allocator=plan.allocator.name, sparsity=cfg.sparsity,
                    **({"quantizer": plan.quantizer.name} if plan.quantizer else {})):
        prune_report = st.prune(plan, loaded, calib, truth_profile)
    loaded.invalidate_fingerprint()
    with plan.stage("pruned-eval", evals=_evals(cfg)):
        results["pruned"] = st.evaluate(plan, loaded, loaded.fingerprint, role="pruned", dense=results["dense"])
    report = st.build_report(plan, loaded, calib, prune_report, results, truth_profile)
    if cfg.save:
        with plan.stage("save", path=cfg.save):
            st.save(plan, loaded, report)
    return st.write_report(plan, report)
