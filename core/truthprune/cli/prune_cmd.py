"""``truthprune prune``: prune a model and save the checkpoint, without any evaluation.

Two modes, both through the one engine (:mod:`truthprune.pruning.engine`):

* in memory (default): load the model, calibrate, :func:`~truthprune.pruning.engine.sequential.prune_model`,
  save with :func:`~truthprune.run.saving.save_pruned`;
* ``--offload``: :func:`~truthprune.pruning.engine.offload.prune_checkpoint` keeps the weights on disk,
  materialises one decoder layer at a time and writes each pruned layer straight to the output.

Both are the run's own stage list on a plan (``RunPlan.offload``, :mod:`truthprune.run.offload`).

Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised
(:func:`~truthprune.pruning.engine.distributed.init_distributed`): every rank computes its share of the
calibration batches, the statistics are summed, and only rank 0 writes and prints.

The flags are ``run``'s (same names, same config file, same validation through ``plan_run``)
minus the evaluation ones. Everything a user can get wrong is checked before torch is imported.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import time
from pathlib import Path
from typing import Any, Optional

import typer

from .app import app
from .run_cmd import _overrides, _run_options, allocator_flags

log = logging.getLogger("truthprune.prune")

# run's flags that mean something without evaluation (the rest: eval, ppl/probe/truthfulqa, out)
_SHARED = (
    "config", "model", "device", "dtype", "trust_remote_code", "pruner", "allocator", "sparsity", "nm", "variant",
    "importance", "mlp_ratio",
    "pruner_opt", "allocator_opt", "calibration", "calibration_opt",
    "nsamples", "seqlen", "batch_size", "seed", "truth_data", "truth_datasets", "truth_max_per_set", "chat_template",
    "allow_pickle",
    "bos", "targets", "ignore", "bias_correction",
    "quantizer", "bits", "group_size", "quantizer_opt", "format",
)


def _option(name: str, default: Any, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _prune_options(func):
    """run's shared flags (declared once, in run_cmd) plus the flags of prune."""
    run_params = inspect.signature(_run_options(lambda **kw: None)).parameters
    params = [run_params[name] for name in (*_SHARED, *allocator_flags())]  # + the allocators' shortcuts
    params += [
        _option("save", typer.Option(None, "--save", help="Directory for the pruned checkpoint (required; written atomically)."), Optional[str]),
        _option("overwrite", typer.Option(None, "--overwrite/--no-overwrite", help="Replace an existing --save directory."), Optional[bool]),
        _option("wait", typer.Option(None, "--wait/--no-wait", help="If another process is writing the same --save, wait for it instead of failing."), Optional[bool]),
        _option("offload", typer.Option(False, "--offload", help="Keep the weights on disk; one decoder layer in memory at a time (local safetensors checkpoint or smollm2-135m)."), bool),
        _option("activations_dir", typer.Option(None, "--activations-dir", help="Memory-map calibration activations from files in this existing directory instead of RAM."), Optional[str]),
        _option("quiet", typer.Option(None, "--quiet/--no-quiet", "-q", help="No progress bars or stage lines."), Optional[bool]),
        _option("nproc", typer.Option(1, "--nproc", help="Data-parallel worker processes on this machine (each prunes "
                                      "its share of the calibration batches; clean output, unlike torchrun's failure "
                                      "summary)."), int),
        _option("dry_run", typer.Option(False, "--dry-run", help="Check everything and print the plan (stages, model, "
                                        "outputs, estimated time), then exit without loading a model."), bool),
    ]
    func.__signature__ = inspect.Signature(params)
    return func


# ----------------------------------------------------------------------------- validation (no torch)


def _plan(flags: dict[str, Any], dry_run: bool = False):
    """The validated config and plugins; exits 2 (UserError) on anything the user can fix."""
    from ..run.config import build_config
    from ..errors import UserError
    from ..run.pipeline import plan_run

    from ..outputs.atomic import declare_inputs

    config_file = flags.pop("config")
    declare_inputs([("--config", config_file)])  # no output of this command may replace it
    overrides = _overrides(**flags)  # prune has no probe or evaluation flags: those stay unset
    overrides["eval"] = []  # nothing is evaluated, whatever a --config file asks for
    overrides["lm_eval_tasks"] = []
    cfg = build_config(config_file, overrides)
    if not cfg.save:
        raise UserError("truthprune prune needs --save DIR (where the pruned checkpoint is written)")
    cfg = cfg.model_copy(update={"out": cfg.save})  # prune writes no report: plan_run checks and locks --save only
    return plan_run(cfg, report=False, dry_run=dry_run)


def _execute(plan, device: str, acts_dir: str | None):
    """The run's own stages (truthprune.run.pipeline.STAGES) on a plan that evaluates nothing:
    convert, check-memory, load, truth-profile, calibrate, prune, save; with ``offload`` the model
    never loads and the prune stage writes the checkpoint (truthprune.run.offload)."""
    from ..run.pipeline import execute

    plan = dataclasses.replace(plan, device=device, activations_dir=acts_dir)
    state = execute(plan)
    if plan.offload:
        return state, f"offload (one decoder layer at a time, computing on {device})"
    loaded = state.loaded
    return state, f"in memory ({str(loaded.model.dtype).replace('torch.', '')} on {loaded.device})"


# ----------------------------------------------------------------------------- command


def _summary(state, mode: str, dp, backend: str | None, wall: float) -> list[str]:
    from ..pruning.quantization import describe_line

    plan, report, timed = state.plan, state.pruning, state.log.timings
    cfg = plan.config
    save = Path(cfg.save).resolve()
    files = [f for f in save.iterdir() if f.is_file()]
    size = sum(f.stat().st_size for f in files) / 1e6
    procs = f"{dp.world} data-parallel processes ({backend})" if dp.active else "1 process"
    cells = [f"{r.index:>3}: {r.achieved:.3f}" for r in report.layers]
    rows = ["  " + "  ".join(cells[i:i + 8]) for i in range(0, len(cells), 8)]
    target = f"target {cfg.sparsity:.3f}" + (f", {cfg.nm} pattern" if cfg.nm else "")
    ratio = cfg.pruner_options.get("mlp_ratio")
    if ratio is not None:  # --mlp-ratio sets the width; --sparsity (its default 0.5) was not used
        target = f"set by --mlp-ratio {ratio}: MLP width {ratio} x hidden size"
    other = wall - sum(timed.values())
    timings = ", ".join([f"{k} {v:.1f} s" for k, v in timed.items()] + [f"start-up and imports {other:.1f} s"])
    structure = getattr(report, "structure", None)
    if structure:  # structured: say how much smaller the model really is
        rows.append(f"  structured: kept {structure['mlp_keep']} of {structure['before']['intermediate_size']} MLP channels, "
                    f"{structure['kv_keep']} of {structure['before']['num_key_value_heads']} KV groups per pruned layer; "
                    f"model parameters {structure['model_params_before']:,} -> {structure['model_params_after']:,}")
    bias = getattr(report, "bias_correction", None)
    bias_line = [f"bias correction: {len(bias['corrected'])} linears per layer"
                 + (f" (config: {', '.join(f + '=true' for f in bias['flags'])})" if bias["flags"] else "")
                 + (f"; no bias slot, not corrected: {', '.join(bias['no_slot'])}" if bias["no_slot"] else "")] if bias else []
    return [
        f"pruned {cfg.model} with {plan.pruner.name} (allocator {plan.allocator.name}): "
        f"overall sparsity {report.overall:.4f} ({target})",
        *([f"quantized: {describe_line(report.quantization)}"] if getattr(report, "quantization", None) else []),
        *bias_line,
        f"mode: {mode}; {procs}",
        "per-layer sparsity (achieved):",
        *rows,
        f"saved to {save} ({len(files)} files, {size:.1f} MB)",
        f"wall time {wall:.1f} s ({timings})",
    ]


@app.command("prune")
@_prune_options
def prune_command(**flags: Any) -> None:
    """Prune a model and save it, without evaluation (in memory, --offload, or data parallel: --nproc N or torchrun)."""
    t0 = time.perf_counter()
    offload, acts_dir, dry_run = flags.pop("offload"), flags.pop("activations_dir"), flags.pop("dry_run")
    nproc = flags.pop("nproc")
    from ..errors import UserError
    from .launch import check_nproc

    check_nproc(nproc)
    launching = nproc > 1 and not dry_run  # this process only checks; the workers lock, prune and write
    plan = _plan(flags, dry_run or launching)
    plan = dataclasses.replace(plan, offload=offload, check_memory=not offload)  # what --dry-run lists, too
    if plan.kind.whole_model and (offload or acts_dir is not None):
        raise UserError(f"structured pruner {plan.pruner.name!r} needs the whole model in memory (gradients through all "
                        "layers); drop --offload/--activations-dir")
    if acts_dir is not None and not Path(acts_dir).is_dir():
        from ..outputs.markers import describe

        raise UserError(f"--activations-dir {acts_dir!r} {describe(acts_dir)}; give an existing directory (on a disk with room)")
    if acts_dir is not None:
        from ..outputs.targets import contains

        if contains(plan.config.save, acts_dir):
            raise UserError(f"--activations-dir {acts_dir!r} lies inside --save {plan.config.save!r}, which is replaced "
                            "when the checkpoint is written: give the activations a directory outside it")
    if offload:
        from ..run.offload import check_offload

        check_offload(plan)
    if dry_run:
        from .run_cmd import print_plan

        mode = " (--offload: one decoder layer in memory at a time)" if offload else ""
        procs = f" in {nproc} worker processes" if nproc > 1 else ""
        print_plan(plan, f"truthprune prune: plan{mode}{procs} (dry run: nothing loaded or written)")
        return
    if launching:
        from .launch import ARGV, launch, strip_nproc

        from ..outputs.atomic import release_all

        release_all()
        raise typer.Exit(launch(nproc, strip_nproc(ARGV)))

    from ..pruning.engine.distributed import init_distributed
    from ..models.loading import resolve_device

    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun rank 0 speaks for all ranks
        import transformers

        logging.getLogger("truthprune").setLevel(logging.WARNING)
        transformers.utils.logging.disable_progress_bar()
    dp, device = init_distributed(resolve_device(plan.config.device))
    backend = None
    if dp.active:
        import torch.distributed as dist

        backend = dist.get_backend()
    try:
        state, mode = _execute(plan, device, acts_dir)
        if dp.is_writer:
            for line in _summary(state, mode, dp, backend, time.perf_counter() - t0):
                typer.echo(line)
    finally:
        if dp.active:
            import torch.distributed as dist

            dist.destroy_process_group()
