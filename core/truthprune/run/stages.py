"""The stages of ``truthprune run`` (see :mod:`truthprune.run.pipeline` for their order).

Dense-model results (perplexity, truth activations) are cached on disk keyed by the weights'
fingerprint and the evaluation settings, so a sweep computes the dense baselines once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from .config import RunConfig
from ..models.loading import LoadedModel, cache_root
from ..models.support import selection_of

log = logging.getLogger("truthprune.run")


def _cached_json(kind: str, key: dict[str, Any], compute):
    """Return the cached result for ``key`` or compute, store and return it."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    path = cache_root() / "results" / kind / f"{digest}.json"
    if path.is_file():
        log.info("%s: using cached result %s", kind, path)
        return json.loads(path.read_text())
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")  # per process: parallel runs share the cache
    tmp.write_text(json.dumps(value, default=str))
    tmp.replace(path)
    return value


def load(cfg: RunConfig) -> LoadedModel:
    from ..models.loading import load_model

    loaded = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code)
    ctx = loaded.max_context
    if ctx is not None and cfg.seqlen > ctx:
        from ..errors import UserError

        raise UserError(f"--seqlen {cfg.seqlen} is longer than the model's context of {ctx} tokens; use --seqlen {ctx} or less")
    from ..models.bos import resolve_bos
    from ..models.support import check_loaded

    check_loaded(loaded.model, cfg)  # a .gguf / hub model's architecture and targets, before any work
    resolve_bos(loaded.tokenizer, cfg.bos)  # --bos always without a BOS token fails here
    return loaded


def bos_rule(cfg: RunConfig, tokenizer):
    """The run's resolved ``--bos`` rule (see :mod:`truthprune.models.bos`)."""
    from ..models.bos import resolve_bos

    return resolve_bos(tokenizer, cfg.bos)


def calibration_context(cfg: RunConfig, tokenizer):
    """What a pruner's auxiliary calibration streams may depend on (see Pruner.auxiliary_calibration)."""
    from ..plugin.interfaces import CalibrationContext

    return CalibrationContext(tokenizer=tokenizer, seed=cfg.seed, truth_data=cfg.truth_data, chat_template=cfg.chat_template)


def calibrate(plan, loaded: LoadedModel):
    from ..calibration.windows import attach_auxiliary, load_calibration

    cfg = plan.config
    for src in plan.sources:
        if src.needs_model:
            src.model = loaded.model
    calib = load_calibration(plan.sources, loaded.tokenizer, cfg.nsamples, cfg.seqlen, cfg.seed,
                             bos=bos_rule(cfg, loaded.tokenizer).window_bos)
    calib = attach_auxiliary(calib, plan.pruner, calibration_context(cfg, loaded.tokenizer))
    log.info("calibration: %s", calib.description)
    return calib


def prune(plan, loaded: LoadedModel, calib, truth_profile):
    from ..pruning.engine.sequential import prune_model

    cfg = plan.config
    if getattr(plan.pruner, "structured", False):  # whole units removed, config rewritten
        from ..pruning.structured import prune_structured

        return prune_structured(loaded.model, calib, plan.pruner, cfg.sparsity, batch_size=cfg.batch_size, quiet=cfg.quiet)
    return prune_model(
        loaded.model,
        calib,
        plan.pruner,
        plan.allocator,
        cfg.sparsity,
        nm=cfg.nm_tuple,
        batch_size=cfg.batch_size,
        truth_profile=truth_profile,
        quiet=cfg.quiet,
        quantizer=plan.quantizer,
        quant_store=quant_store(plan),
        selection=selection_of(cfg),
    )


def quant_store(plan):
    """Where the engine leaves the codes of a --quantizer run (saved as the sidecar by --save)."""
    if plan.quantizer is None:
        return None
    from ..pruning.quantization import QuantizedLinears

    plan.cache["quantized"] = QuantizedLinears(plan.quantizer)
    return plan.cache["quantized"]


# ------------------------------------------------------------------------- evaluation


def ppl_windows(cfg: RunConfig) -> int | None:
    from ..eval.perplexity import default_max_windows

    return default_max_windows(cfg.ppl_data, cfg.ppl_max_windows)


def eval_ppl(cfg: RunConfig, loaded: LoadedModel, fingerprint: str) -> dict[str, Any]:
    from ..eval.perplexity import load_eval_text, perplexity

    max_windows = ppl_windows(cfg)
    rule = bos_rule(cfg, loaded.tokenizer)
    key = {"fp": fingerprint, "data": cfg.ppl_data, "seqlen": cfg.seqlen, "max_windows": max_windows, "bos": rule.window_bos}

    def compute():
        ids = load_eval_text(cfg.ppl_data, loaded.tokenizer, rule)
        return perplexity(loaded.model, ids, cfg.seqlen, batch_size=cfg.batch_size, max_windows=max_windows,
                          bos_id=rule.window_bos)

    return _cached_json("ppl", key, compute)


def eval_truthfulqa(cfg: RunConfig, loaded: LoadedModel, fingerprint: str) -> dict[str, Any]:
    from ..eval.truthfulqa import evaluate_truthfulqa

    bos = bos_rule(cfg, loaded.tokenizer).window_bos
    key = {"fp": fingerprint, "data": cfg.truthfulqa_data, "limit": cfg.truthfulqa_limit, "seed": cfg.seed, "bos": bos}
    return _cached_json(
        "truthfulqa",
        key,
        lambda: evaluate_truthfulqa(loaded.model, loaded.tokenizer, data=cfg.truthfulqa_data, limit=cfg.truthfulqa_limit,
                                    batch_size=cfg.batch_size, bos=bos),
    )


def evaluate(plan, loaded: LoadedModel, fingerprint: str, role: str, dense: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg = plan.config
    out: dict[str, Any] = {}
    if "ppl" in cfg.eval:
        out["ppl"] = eval_ppl(cfg, loaded, fingerprint)
        log.info("%s perplexity: %.3f", role, out["ppl"]["ppl"])
    if "truthfulqa" in cfg.eval:
        out["truthfulqa"] = eval_truthfulqa(cfg, loaded, fingerprint)
        log.info("%s TruthfulQA MC1 %.3f MC2 %.3f", role, out["truthfulqa"]["mc1"], out["truthfulqa"]["mc2"])
    if "truthfulness" in cfg.eval:
        from .truthfulness_stage import truthfulness_stage

        out["truthfulness"] = truthfulness_stage(plan, loaded, role, dense)
    if "probe" in cfg.eval:
        from .truth_stages import probe_stage

        out["probe"] = probe_stage(plan, loaded, fingerprint, role, dense)
    if cfg.lm_eval_tasks:
        from ..eval.lm_eval_bridge import evaluate as lm_eval_evaluate

        out["lm_eval"] = lm_eval_evaluate(plan, loaded, fingerprint, role, _cached_json)
    return out


def truth_profile(plan, loaded: LoadedModel, fingerprint: str, results: dict[str, Any]) -> list[float]:
    from .truth_stages import truth_profile_stage

    return truth_profile_stage(plan, loaded, fingerprint, results)


# ------------------------------------------------------------------------- report and save


def alternative_allocations(plan, prune_report, truth_profile) -> dict[str, list[float]]:
    """What every installed allocator would have chosen from this run's statistics (for the
    report's allocation plot); only those whose inputs the run measured: the truth profile, and
    for a dense-pass allocator the per-layer signals it declares (``layer_signals``) among the
    pruning diagnostics (e.g. OWL's outlier ratios when the run used an outlier allocator)."""
    from ..plugin.contracts import check_allocation
    from ..errors import PluginContractError, UserError
    from ..plugin.interfaces import LayerInfo
    from ..plugin.registry import get_registry

    reg = get_registry()
    n = len(prune_report.allocation)
    signals = {k: v for k, v in prune_report.diagnostics.items() if isinstance(v, list) and len(v) == n}
    info = LayerInfo(num_layers=n, params_per_layer=[layer.params for layer in prune_report.layers],
                     truth_profile=truth_profile, extras=signals)
    out = {plan.allocator.name: prune_report.allocation}
    for name in reg.names("allocator"):
        if name in out:
            continue
        cls = reg.get("allocator", name)
        measured = not cls.needs_dense_pass or (cls.layer_signals and all(k in signals for k in cls.layer_signals))
        if not measured or (cls.needs_truth_profile and truth_profile is None):
            continue
        fields = getattr(cls.Config, "model_fields", {})
        opts = {k: v for k, v in plan.config.allocator_options.items() if k in fields}
        try:
            inst = cls(opts)
            out[name] = check_allocation(inst, inst.allocate(plan.config.sparsity, info), n)
        except (UserError, PluginContractError) as err:  # only a plot line: the run itself is fine
            log.info("allocation %s not shown: %s", name, err)
    return out


def build_report(plan, loaded: LoadedModel, calib, prune_report, results, truth_profile) -> dict[str, Any]:
    from .saving import environment_versions

    cfg = plan.config
    return {
        "allocations": alternative_allocations(plan, prune_report, truth_profile) if not (cfg.nm or getattr(prune_report, "structure", None)) else {},
        "truth_profile_sets": plan.cache.get("truth_profile_sets"),
        "truthprune_report": 1,
        "config": cfg.model_dump(),
        "model": {"spec": cfg.model, "path": loaded.path, "kind": loaded.kind, "device": loaded.device,
                  "layers": len(prune_report.allocation), "dtype": str(loaded.model.dtype).replace("torch.", "")},
        "versions": environment_versions(),
        "seed": cfg.seed,
        "bos": bos_rule(cfg, loaded.tokenizer).as_dict(),
        "calibration": {"sources": cfg.calibration, "nsamples": cfg.nsamples, "seqlen": cfg.seqlen, "description": calib.description},
        "pruning": {**prune_report.as_dict(), "pruner": plan.pruner.name, "allocator": plan.allocator.name},
        "truth_profile": truth_profile,
        "dense": results["dense"],
        "pruned": results["pruned"],
        "stages": plan.stages,
        "timings": plan.timings,
    }


def save(plan, loaded: LoadedModel, report: dict[str, Any]) -> None:
    from .saving import save_pruned

    meta = {k: report[k] for k in ("config", "seed", "calibration", "bos")}
    meta["per_layer_sparsity"] = [layer["achieved"] for layer in report["pruning"]["layers"]]
    meta["allocation"] = report["pruning"]["allocation"]
    meta["overall_sparsity"] = report["pruning"]["overall"]
    save_pruned(loaded.model, loaded.tokenizer, plan.config.save, meta, overwrite=plan.config.overwrite,
                quantization=plan.cache.get("quantized"))
    report["saved_model"] = str(Path(plan.config.save).resolve())


def write_report(plan, report: dict[str, Any]) -> Path:
    from .outputs import atomic_dir
    from ..reporting.report import render_report

    with atomic_dir(plan.config.out, overwrite=plan.config.overwrite) as tmp:
        (tmp / "report.json").write_text(json.dumps(report, indent=2, default=str))
        render_report(report, tmp)
    return Path(plan.config.out)
