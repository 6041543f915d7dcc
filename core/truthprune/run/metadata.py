"""What a run records about itself: the resolved BOS rule, the calibration summary, and the
``truthprune.json`` of a checkpoint (in memory, or written by the offload engine).

Why a module of its own: the stages (:mod:`.stages`) and the offload mode (:mod:`.offload`) both
write checkpoints; each takes the same record from here.
"""

from __future__ import annotations

from typing import Any

from ..models.bos import resolve_bos
from ..plugin.interfaces import CalibrationContext
from .config import RunConfig
from .state import RunState


def bos_rule(cfg: RunConfig, tokenizer):
    """The run's resolved ``--bos`` rule (see :mod:`truthprune.models.bos`)."""
    return resolve_bos(tokenizer, cfg.bos)


def calibration_context(cfg: RunConfig, tokenizer):
    """What a pruner's auxiliary calibration streams may depend on (see Pruner.auxiliary_calibration)."""
    return CalibrationContext(tokenizer=tokenizer, seed=cfg.seed, truth_data=cfg.truth_data, chat_template=cfg.chat_template)


def calibration_summary(cfg: RunConfig, calib) -> dict[str, Any]:
    """The report's and truthprune.json's "calibration": sources, sizes and what was drawn."""
    return {"sources": cfg.calibration, "nsamples": cfg.nsamples, "seqlen": cfg.seqlen, "description": calib.description}


def checkpoint_metadata(state: RunState) -> dict[str, Any]:
    """truthprune.json of a checkpoint saved by ``run`` (the whole config) or ``prune`` (no evaluation settings)."""
    from ..pruning.engine.distributed import data_parallel  # torch: the plan (and --dry-run) never needs it

    plan, loaded = state.plan, state.loaded
    cfg = plan.config
    bos = bos_rule(cfg, loaded.tokenizer).as_dict()
    if plan.writes_report:
        meta = {"config": cfg.model_dump(), "seed": cfg.seed, "calibration": calibration_summary(cfg, state.calibration), "bos": bos}
        return {**meta, **pruning_metadata(plan, state.pruning, None, full=False)}
    meta = prune_metadata(cfg, "memory", data_parallel().world, loaded.path, calibration_summary(cfg, state.calibration))
    return {**meta, "bos": bos, **pruning_metadata(plan, state.pruning, state.profile_values)}


def prune_metadata(cfg: RunConfig, mode: str, world: int, path: Any, calibration: dict[str, Any]) -> dict[str, Any]:
    """How ``prune`` made a checkpoint (in memory or --offload): its settings without the evaluation ones."""
    return {
        "command": "prune",
        "mode": mode,
        "world_size": world,
        "config": {k: v for k, v in cfg.model_dump().items() if k not in EVAL_KEYS and not k.startswith("lm_eval")},
        "seed": cfg.seed,
        "model": {"spec": cfg.model, "path": str(path)},
        "calibration": calibration,
    }


def pruning_metadata(plan, report, truth_profile: list[float] | None, full: bool = True) -> dict[str, Any]:
    """What only the finished prune knows: per-layer sparsities, the allocation (and with ``full``
    the whole pruning report and the truth profile)."""
    out: dict[str, Any] = {
        "per_layer_sparsity": [layer.achieved for layer in report.layers],
        "allocation": report.allocation,
        "overall_sparsity": report.overall,
    }
    if full:
        out["pruning"] = {**report.as_dict(), "pruner": plan.pruner.name, "allocator": plan.allocator.name}
        out["truth_profile"] = truth_profile
    return out


# evaluation-only settings left out of a ``prune`` checkpoint's truthprune.json
EVAL_KEYS = ("eval", "ppl_data", "ppl_max_windows", "truthfulqa_data", "truthfulqa_limit", "probe", "probe_options", "out")
