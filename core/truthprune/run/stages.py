"""The stages of a run, each a function RunState -> RunState (their order: :data:`truthprune.run.pipeline.STAGES`;
the truth-feature stages are in :mod:`truthprune.run.truth_stages`).

Dense-model results (perplexity, truth activations) are cached on disk keyed by the weights'
fingerprint and the evaluation settings, so a sweep computes the dense baselines once.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .config import RunConfig
from .offload import checkpoint_tokenizer, prune_offloaded
from .metadata import bos_rule, calibration_context, calibration_summary, checkpoint_metadata
from .state import RunState
from ..cache import cached_json
from ..models.context import check_seqlen
from ..models.loading import LoadedModel
from ..models.support import selection_of
from .saving import save_pruned
from .truthfulness_stage import truthfulness
from ..environment import environment_versions
from ..errors import PluginContractError, UserError
from ..eval.lm_eval_bridge import evaluate as lm_eval_evaluate
from ..eval.perplexity import default_max_windows, load_eval_text, perplexity
from ..eval.truthfulqa import evaluate_truthfulqa
from ..models.adapter import decoder_layers
from ..models.bos import resolve_bos
from ..models.formats import check_hub_reachable
from ..models import loading  # loading.load_model looked up at call time (tests replace it there)
from ..models.loading import resolve_device, resolve_dtype, resolve_model_path
from ..models.support import check_loaded
from ..outputs.atomic import atomic_dir
from ..plugin.contracts import check_allocation
from ..plugin.interfaces import CalibrationSamples, LayerInfo
from ..plugin.registry import get_registry
from ..pruning.engine import memory as mem
from ..pruning.quantization import QuantizedLinears
from ..pruning.structured import prune_structured
from ..reporting import report as report_md  # render_report looked up at call time (tests interrupt it)

log = logging.getLogger("truthprune.run")


def load(cfg: RunConfig) -> LoadedModel:
    loaded = loading.load_model(cfg.model, device=cfg.device, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code,
                        quiet=cfg.quiet)
    check_seqlen(cfg.seqlen, loaded.max_context)

    check_loaded(loaded.model, cfg)  # a .gguf / hub model's architecture and targets, before any work
    if cfg.bias_correction:  # a bias slot for at least one pruned linear (local directories: checked at plan time)
        from ..pruning.engine.bias import plan_bias

        plan_bias(loaded.model.config, selection_of(cfg), cfg.trust_remote_code)
    resolve_bos(loaded.tokenizer, cfg.bos)  # --bos always without a BOS token fails here
    return loaded


def convert(state: RunState) -> RunState:
    """Stage ``convert-gguf``: first use of a .gguf / embedded model converts it once (cached)."""
    resolve_model_path(state.plan.config.model, quiet=state.plan.config.quiet)
    return state


def check_memory(state: RunState) -> RunState:
    """Stage ``check-memory`` (``prune``): refuse before loading when weights + activations will not
    fit (the error suggests --offload)."""
    import dataclasses

    from ..pruning.engine.distributed import data_parallel

    plan = state.plan
    cfg = plan.config
    path = resolve_model_path(cfg.model)[0]
    if not Path(path).exists():  # a hub id: one quick reachability check instead of transformers' retries

        try:
            check_hub_reachable(cfg.model)
        except UserError:
            return state  # no estimate without the config; the load says what is wrong
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError):  # a hub id without network etc.: the load reports it properly
        return state

    nbytes = resolve_dtype(cfg.dtype, plan.device or resolve_device(cfg.device)).itemsize
    cross = "cross" in getattr(plan.pruner, "required_stats", ())
    streams = _auxiliary_streams(plan, path)
    extent = None if streams is None else mem.StreamExtent.of_streams(
        {k: s for k, s in streams.items() if isinstance(s, CalibrationSamples)})
    est = mem.estimate_memory(mem.ModelShape.from_config(config), cfg.nsamples, cfg.seqlen, cfg.batch_size,
                              weight_bytes=nbytes, act_bytes=nbytes, world=data_parallel().world,
                              dense=cfg.bias_correction or cross, dense_rows=cross, auxiliary=extent)
    if plan.activations_dir is not None:
        est = dataclasses.replace(est, activations=0)
    log.info("%s", mem.check_memory(est, mem.available_memory(), offload=False, can_offload=not plan.writes_report))
    return state.but(auxiliary=streams)


def _auxiliary_streams(plan, path: str) -> dict | None:
    """The pruner's auxiliary streams, built from the tokenizer alone (no model), or None when the
    pruner has none.

    Why: a statement stream can hold more tokens than the text calibration, so an estimate without it
    would let a run load the model only for the engine to refuse it after calibration. The streams
    travel on in the state, so the calibrate stage does not tokenise them a second time. Pruners
    that keep their base class's method (no streams), structured pruners included, cost nothing here.
    """
    from ..plugin.interfaces import Pruner, StructuredPruner

    aux = getattr(type(plan.pruner), "auxiliary_calibration", None)
    if aux is None or aux in (Pruner.auxiliary_calibration, StructuredPruner.auxiliary_calibration):
        return None
    cfg = plan.config
    tokenizer = loading.load_tokenizer(path, cfg.model, cfg.trust_remote_code)
    return plan.pruner.auxiliary_calibration(calibration_context(cfg, tokenizer)) or {}


def load_stage(state: RunState) -> RunState:
    """Stage ``load``: the model and tokenizer (``state.load`` instead, e.g. a sweep's shared model)."""
    cfg = state.plan.config
    if state.plan.device is not None:  # prune resolves the device first (torchrun: one per rank)
        cfg = cfg.model_copy(update={"device": state.plan.device})
    return state.but(loaded=(state.load or load)(cfg))


def calibrate(state: RunState) -> RunState:
    """Stage ``calibrate``: nsamples windows from the sources, plus a pruner's auxiliary streams."""
    from ..calibration.windows import attach_auxiliary, load_calibration

    plan, loaded = state.plan, state.loaded
    cfg = plan.config
    if plan.offload:  # the model never loads: the checkpoint's tokenizer (no source needs the model: plan check)
        tokenizer = checkpoint_tokenizer(cfg)
    else:
        tokenizer = loaded.tokenizer
    calib = load_calibration(plan.sources, tokenizer, cfg.nsamples, cfg.seqlen, cfg.seed,
                             bos=bos_rule(cfg, tokenizer).window_bos, model=None if plan.offload else loaded.model)
    calib = attach_auxiliary(calib, plan.pruner, calibration_context(cfg, tokenizer), streams=state.auxiliary)
    log.info("calibration: %s", calib.description)
    return state.but(calibration=calib)


def prune(state: RunState) -> RunState:
    """Stage ``prune``: the pruner's kind prunes the loaded model in place (:mod:`truthprune.run.kinds`)."""
    from ..pruning.engine.distributed import data_parallel

    plan = state.plan
    quiet = plan.config.quiet or not data_parallel().is_writer
    quantized = None
    if plan.quantizer is not None:  # where the engine leaves the codes (saved as the sidecar by --save)

        quantized = QuantizedLinears(plan.quantizer)
    report = plan.kind.prune(state, quiet, quantized)
    if state.loaded is not None:
        state.loaded.invalidate_fingerprint()
    return state.but(pruning=report, quantized=quantized)


def prune_masks(state: RunState, quiet: bool, quantized: Any) -> Any:
    """The mask engine on the loaded model (layer activations in memory, or memory-mapped from files),
    or with ``--offload`` on the checkpoint on disk (:mod:`truthprune.run.offload`)."""
    if state.plan.offload:
        return prune_offloaded(state, quiet, quantized)
    from ..pruning.engine.distributed import data_parallel
    from ..pruning.engine.sequential import EngineSetup, ResidentLayers, prune_model, run_engine

    plan, model = state.plan, state.loaded.model
    cfg = plan.config
    args = (state.calibration, plan.pruner, plan.allocator, cfg.sparsity)
    kw = {"nm": cfg.nm_tuple, "truth_profile": state.profile_values, "quantizer": plan.quantizer, "quant_store": quantized,
          "bias_correction": cfg.bias_correction,
          "dense_cache": dense_cache(state.loaded) if getattr(plan.pruner, "dense_statistics", False) else None}
    if plan.activations_dir is None:
        return prune_model(model, *args, batch_size=cfg.batch_size, quiet=quiet, selection=selection_of(cfg), **kw)

    setup = EngineSetup(device=next(model.parameters()).device, batch_size=cfg.batch_size, quiet=quiet, dp=data_parallel(),
                        activations_dir=plan.activations_dir, selection=selection_of(cfg))
    return run_engine(model, ResidentLayers(decoder_layers(model)), *args, setup, **kw)


def prune_units(state: RunState, quiet: bool, quantized: Any) -> Any:
    """Structured pruning: whole units removed, the config rewritten (no quantizer: refused at plan time)."""
    cfg = state.plan.config
    return prune_structured(state.loaded.model, state.calibration, state.plan.pruner, cfg.sparsity,
                            batch_size=cfg.batch_size, quiet=quiet)


def dense_cache(loaded):
    """The loaded model's store of dense statistics: a sweep restores the dense weights before every
    grid point, so a dense-statistics pruner calibrates once for all its sparsities."""
    from ..pruning.engine.dense_stats import DenseCache

    return DenseCache(loaded.reuse, lambda: loaded.fingerprint)


# ------------------------------------------------------------------------- evaluation


def ppl_windows(cfg: RunConfig) -> int | None:
    return default_max_windows(cfg.ppl_data, cfg.ppl_max_windows)


def eval_ppl(cfg: RunConfig, loaded: LoadedModel, fingerprint: str) -> dict[str, Any]:
    max_windows = ppl_windows(cfg)
    rule = bos_rule(cfg, loaded.tokenizer)
    key = {"fp": fingerprint, "data": cfg.ppl_data, "seqlen": cfg.seqlen, "max_windows": max_windows, "bos": rule.window_bos}

    def compute():
        ids = load_eval_text(cfg.ppl_data, loaded.tokenizer, rule)
        return perplexity(loaded.model, ids, cfg.seqlen, batch_size=cfg.batch_size, max_windows=max_windows,
                          bos_id=rule.window_bos)

    return cached_json("ppl", key, compute)


def eval_truthfulqa(cfg: RunConfig, loaded: LoadedModel, fingerprint: str) -> dict[str, Any]:
    bos = bos_rule(cfg, loaded.tokenizer).window_bos
    key = {"fp": fingerprint, "data": cfg.truthfulqa_data, "limit": cfg.truthfulqa_limit, "seed": cfg.seed, "bos": bos}
    return cached_json(
        "truthfulqa",
        key,
        lambda: evaluate_truthfulqa(loaded.model, loaded.tokenizer, data=cfg.truthfulqa_data, limit=cfg.truthfulqa_limit,
                                    batch_size=cfg.batch_size, bos=bos),
    )


def _evaluate(state: RunState, role: str) -> tuple[dict[str, Any], RunState]:
    """Perplexity, TruthfulQA, truthfulness and lm-eval of the loaded model (the probe protocol has
    its own stages: :mod:`truthprune.run.truth_stages`)."""
    cfg, loaded = state.plan.config, state.loaded
    fingerprint = loaded.fingerprint
    out: dict[str, Any] = {}
    if "ppl" in cfg.eval:
        out["ppl"] = eval_ppl(cfg, loaded, fingerprint)
        log.info("%s perplexity: %.3f", role, out["ppl"]["ppl"])
    if "truthfulqa" in cfg.eval:
        out["truthfulqa"] = eval_truthfulqa(cfg, loaded, fingerprint)
        log.info("%s TruthfulQA MC1 %.3f MC2 %.3f", role, out["truthfulqa"]["mc1"], out["truthfulqa"]["mc2"])
    if "truthfulness" in cfg.eval:
        out["truthfulness"], state = truthfulness(state, role)
    if cfg.lm_eval_tasks:
        failed = dict(state.lm_eval_failed)
        out["lm_eval"] = lm_eval_evaluate(cfg, state.plan.lm_eval_skipped, failed, loaded, fingerprint, role, cached_json)
        state = state.but(lm_eval_failed=failed)
    return out, state


def dense_eval(state: RunState) -> RunState:
    """Stage ``dense-eval``: the dense model's metrics (cached on disk by its weights' fingerprint)."""
    results, state = _evaluate(state, "dense")
    return state.but(dense=results)


def pruned_eval(state: RunState) -> RunState:
    """Stage ``pruned-eval``: the same metrics on the pruned model."""
    results, state = _evaluate(state, "pruned")
    return state.but(pruned=results)


# ------------------------------------------------------------------------- report and save


def alternative_allocations(plan, prune_report, truth_profile) -> dict[str, list[float]]:
    """What every installed allocator would have chosen from this run's statistics (for the
    report's allocation plot); only those whose inputs the run measured: the truth profile, and
    for a dense-pass allocator the per-layer signals it declares (``layer_signals``) among the
    pruning diagnostics (e.g. OWL's outlier ratios when the run used an outlier allocator)."""
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


def build_report(state: RunState) -> RunState:
    """Stage ``report``: report.json's content (rendered and written by ``write-report``)."""
    plan, loaded, prune_report = state.plan, state.loaded, state.pruning
    cfg = plan.config
    profile = state.profile_values
    report = {
        "allocations": alternative_allocations(plan, prune_report, profile) if not (cfg.nm or getattr(prune_report, "structure", None)) else {},
        "truth_profile_sets": None if state.truth_profile is None else state.truth_profile.sets,
        "truthprune_report": 1,
        "config": cfg.model_dump(),
        "model": {"spec": cfg.model, "path": loaded.path, "kind": loaded.kind, "device": loaded.device,
                  "layers": len(prune_report.allocation), "dtype": str(loaded.model.dtype).replace("torch.", "")},
        "versions": environment_versions(),
        "seed": cfg.seed,
        "bos": bos_rule(cfg, loaded.tokenizer).as_dict(),
        "calibration": calibration_summary(cfg, state.calibration),
        "pruning": {**prune_report.as_dict(), "pruner": plan.pruner.name, "allocator": plan.allocator.name},
        "truth_profile": profile,
        "dense": state.dense,
        "pruned": state.pruned,
        "stages": state.log.stages,  # the stage log: later stages (save) still land in it
        "timings": state.log.timings,
    }
    return state.but(report=report)


def save(state: RunState) -> RunState:
    """Stage ``save``: the pruned model + tokenizer + truthprune.json (+ quantization sidecar), atomically;
    under torchrun rank 0 writes and every rank waits for it."""
    from ..pruning.engine.distributed import data_parallel

    cfg = state.plan.config
    dp = data_parallel()
    if dp.is_writer:
        save_pruned(state.loaded.model, state.loaded.tokenizer, cfg.save, checkpoint_metadata(state),
                    overwrite=cfg.overwrite, quantization=state.quantized, fmt=cfg.format)
    dp.barrier()
    if state.report is None:
        return state
    return state.but(report={**state.report, "saved_model": str(Path(cfg.save).resolve())})


def write_report(state: RunState) -> RunState:
    """Stage ``write-report``: report.json, report.md and the plots, into a temporary directory renamed to --out."""
    cfg = state.plan.config
    with atomic_dir(cfg.out, overwrite=cfg.overwrite, what="--out", kind="run") as tmp:
        (tmp / "report.json").write_text(json.dumps(state.report, indent=2, default=str))
        report_md.render_report(state.report, tmp)
    return state.but(out=Path(cfg.out))
