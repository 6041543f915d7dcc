"""``truthprune finetune``: LoRA recovery of a (pruned) model on local text, saved as a plain checkpoint.

Added to the CLI through the ``register_commands`` hook, so ``peft`` is a dependency of this
plugin only. Everything the user can get wrong (output exists, unknown calibration source,
missing file, a leftover checkpoint without ``--resume``) fails before the model loads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Optional

import typer

from .lora import ALL_LINEARS, KEEP_SPARSITY

log = logging.getLogger("truthprune.finetune")


def _plan(model, save, overwrite, calibration, calibration_opt, checkpoint_dir, resume, eval_data, target_modules):
    from truthprune import (UserError, check_model_spec, check_target, declare_inputs, get_registry, model_input_paths,
                            option_value)

    check_model_spec(model)  # a missing checkpoint fails now, not after the imports and the load
    if not save:
        raise UserError("truthprune finetune needs --save DIR (where the merged checkpoint is written)")
    declare_inputs(model_input_paths(model))  # --save may not replace the model (a link to it included)
    opts: dict = {}
    for pair in calibration_opt or []:
        if "=" not in pair:
            raise UserError(f"--calibration-opt {pair!r} must look like key=value")
        k, v = pair.split("=", 1)
        opts[k.strip()] = option_value(v, f"--calibration-opt {k.strip()}")
    declare_inputs([(f"--calibration-opt {k}", v) for k, v in opts.items() if isinstance(v, str)])
    if eval_data not in (None, "wikitext2", "pydoc"):
        declare_inputs([("--eval-data", eval_data)])
    check_target(save, overwrite, what="--save")
    names = [x.strip() for item in calibration for x in item.split(",") if x.strip()]
    reg = get_registry()
    sources = [reg.create("calibration", name, opts) for name in names]
    for src in sources:
        src.check()
        if src.needs_model:
            raise UserError(f"calibration source {src.name!r} samples text from the model; finetune trains on local text, choose another")
    modules = tuple(x.strip() for x in target_modules.split(",") if x.strip())
    if not modules:
        raise UserError("--target-modules is empty; pass e.g. q_proj,v_proj or the default list")
    ckpt = Path(checkpoint_dir) if checkpoint_dir else Path(f"{str(save).rstrip('/')}.lora-resume")
    from .lora import check_checkpoint_dir

    check_checkpoint_dir(ckpt, save)
    if (ckpt / "state.pt").is_file() and not resume:
        raise UserError(f"{ckpt} holds the checkpoint of an interrupted finetune; pass --resume to continue it, or remove it")
    if eval_data and eval_data not in ("wikitext2", "pydoc") and not Path(eval_data).is_file():
        raise UserError(f"--eval-data {eval_data!r} is neither wikitext2, pydoc nor an existing text file")
    return sources, modules, ckpt


def _check_keep_sparsity(mode: str, dropout: float) -> None:
    from truthprune import UserError

    if mode not in KEEP_SPARSITY:
        raise UserError(f"--keep-sparsity {mode!r} is not one of {', '.join(KEEP_SPARSITY)}")
    if mode == "adapter" and dropout:
        raise UserError("--keep-sparsity adapter trains the masked update in weight space, which has no LoRA dropout; "
                        "pass --dropout 0 or use --keep-sparsity merge")


def _sparsity_record(path, keep_sparsity: str) -> dict:
    """The input checkpoint's sparsity record (truthprune.json), carried into the output when the mask is kept,
    so ``truthprune inspect`` checks the fine-tuned model against the pattern it was pruned to."""
    source = Path(str(path)) / "truthprune.json"
    if keep_sparsity == "off" or not source.is_file():
        return {}
    try:
        meta = json.loads(source.read_text())
    except (OSError, ValueError):
        return {}
    keys = ("per_layer_sparsity", "overall_sparsity", "pruning")
    record = {k: meta[k] for k in keys if k in meta}
    if isinstance(record.get("pruning"), dict):  # the merged model is not quantized, whatever its input was
        record["pruning"] = {k: v for k, v in record["pruning"].items() if k != "quantization"}
    if meta.get("quantization"):  # its zeros include weights rounded to 0, which are kept too
        record["sparsity_source_quantized"] = True
    nm = (meta.get("config") or {}).get("nm")
    if nm:
        record["config"] = {"nm": nm}
    return record


def _ppl(model, tokenizer, spec, seqlen, max_windows, batch_size):
    from truthprune import load_eval_text, perplexity

    return perplexity(model, load_eval_text(spec, tokenizer), seqlen, batch_size=batch_size, max_windows=max_windows)


def add_finetune_command(app) -> None:
    @app.command("finetune")
    def finetune(
        model: str = typer.Option("smollm2-135m", help="The model to recover: a pruned checkpoint dir (or any model spec)."),
        save: Optional[str] = typer.Option(None, "--save", help="Directory for the merged checkpoint (required; written atomically)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --save directory."),
        calibration: list[str] = typer.Option(["pydoc"], "--calibration", help="Training text: calibration source(s), e.g. wikitext2 or text."),
        calibration_opt: Optional[list[str]] = typer.Option(None, "--calibration-opt", help="Source option key=value, e.g. path=valid.txt."),
        nsamples: int = typer.Option(64, min=1, help="Training windows drawn from the text (seeded)."),
        seqlen: int = typer.Option(256, min=8, help="Tokens per training window."),
        steps: int = typer.Option(100, min=1, help="Optimizer steps."),
        lr: float = typer.Option(2e-4, min=0.0, help="Peak learning rate (warm-up, then cosine to 10 %)."),
        warmup: int = typer.Option(0, min=0, help="Linear warm-up steps."),
        rank: int = typer.Option(8, min=1, help="LoRA rank r."),
        alpha: float = typer.Option(16.0, min=0.0, help="LoRA alpha (scale alpha / r)."),
        dropout: float = typer.Option(0.0, min=0.0, max=0.9, help="LoRA dropout."),
        batch_size: int = typer.Option(4, "--batch-size", min=1, help="Windows per step."),
        target_modules: str = typer.Option(",".join(ALL_LINEARS), "--target-modules", help="Linears that get adapters, comma-separated."),
        checkpoint_every: int = typer.Option(25, "--checkpoint-every", min=0, help="Save a resumable checkpoint every N steps (0: never)."),
        checkpoint_dir: Optional[str] = typer.Option(None, "--checkpoint-dir", help="Where checkpoints go (default: SAVE.lora-resume)."),
        resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --checkpoint-dir if there is one."),
        eval_data: Optional[str] = typer.Option(None, "--eval-data", help="Held-out text for perplexity before and after (wikitext2, pydoc or a file)."),
        eval_max_windows: Optional[int] = typer.Option(None, "--eval-max-windows", min=1, help="Score only the first N perplexity windows."),
        eval_seqlen: int = typer.Option(512, "--eval-seqlen", min=2, help="Perplexity window length."),
        seed: int = typer.Option(0, help="Seed: windows, their order, LoRA initialisation."),
        device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
        dtype: str = typer.Option("auto", help="auto | float32 | bfloat16 | float16 (bfloat16 autocast is used on GPU anyway)."),
        trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow custom model code from the hub."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Check everything and print the plan, then exit without loading the model."),
        keep_sparsity: str = typer.Option("merge", "--keep-sparsity", help="Keep pruned (exactly 0) weights at 0: merge "
                                          "(re-apply the mask after merging), adapter (masked update while training, no "
                                          "dropout) or off (the zeros fill in)."),
    ) -> None:
        """LoRA recovery (peft): train adapters on local text, merge them, save a standard checkpoint; resumable."""
        t0 = time.perf_counter()
        import math

        from truthprune import UserError

        for flag, value in (("--lr", lr), ("--alpha", alpha), ("--dropout", dropout)):
            if not math.isfinite(value):
                raise UserError(f"{flag} {value} is not a finite number; give e.g. --lr 2e-4 --alpha 16")
        _check_keep_sparsity(keep_sparsity, dropout)
        sources, modules, ckpt = _plan(model, save, overwrite, calibration, calibration_opt, checkpoint_dir, resume, eval_data,
                                       target_modules)
        if dry_run:
            typer.echo("truthprune finetune: plan (dry run: nothing loaded or written)")
            typer.echo(f"  model        {model}")
            typer.echo(f"  training     LoRA r={rank} alpha={alpha} on {','.join(modules)}: {steps} steps of {batch_size} x "
                       f"{seqlen} tokens from {'+'.join(s.name for s in sources)} ({nsamples} windows, seed {seed})")
            typer.echo(f"  sparsity     --keep-sparsity {keep_sparsity}")
            typer.echo(f"  writes       {str(save).rstrip('/')}/: the merged checkpoint (resumable checkpoints in {ckpt})")
            return

        import torch

        from truthprune import load_calibration, load_model, save_pruned, weights_fingerprint

        from .lora import LoraSettings, train_lora

        torch.manual_seed(seed)
        loaded = load_model(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code, quiet=quiet)
        windows = load_calibration(sources, loaded.tokenizer, nsamples, seqlen, seed)
        base = weights_fingerprint(loaded.model) + hashlib.sha256(windows.input_ids.numpy().tobytes()).hexdigest()[:16]
        settings = LoraSettings(steps=steps, lr=lr, rank=rank, alpha=alpha, dropout=dropout, batch_size=batch_size, warmup=warmup,
                                seed=seed, target_modules=modules, keep_sparsity=keep_sparsity, base=base)
        result: dict = {"settings": {k: v for k, v in settings.__dict__.items() if k != "base"}, "nsamples": nsamples,
                        "seqlen": seqlen, "training_text": windows.description}
        if eval_data:
            result["ppl_before"] = _ppl(loaded.model, loaded.tokenizer, eval_data, eval_seqlen, eval_max_windows, 8)
            typer.echo(f"perplexity before: {result['ppl_before']['ppl']:.3f} ({eval_data}, {result['ppl_before']['windows']} windows)")
        merged, state = train_lora(loaded.model, windows, settings, ckpt, checkpoint_every, resume, quiet)
        result.update(losses=state.losses, resumed_from=state.resumed_from)
        if eval_data:
            result["ppl_after"] = _ppl(merged, loaded.tokenizer, eval_data, eval_seqlen, eval_max_windows, 8)
            typer.echo(f"perplexity after:  {result['ppl_after']['ppl']:.3f}")
        meta = {"command": "finetune", "model": {"spec": model, "path": loaded.path}, "seed": seed, "finetune": result,
                **_sparsity_record(loaded.path, keep_sparsity)}
        save_pruned(merged, loaded.tokenizer, save, meta, overwrite=overwrite, kind="finetune")
        from .lora import remove_checkpoint

        remove_checkpoint(ckpt)  # only what finetune wrote there; the directory only if then empty
        n_params = sum(p.numel() for p in merged.parameters())
        typer.echo(f"LoRA r={rank} alpha={alpha} on {','.join(modules)}: {steps} steps, loss {state.losses[0]:.4f} -> "
                   f"{state.losses[-1]:.4f} (mean of last 10: {sum(state.losses[-10:]) / len(state.losses[-10:]):.4f})")
        typer.echo(f"merged model ({n_params:,} parameters) saved to {Path(save).resolve()}; wall time {time.perf_counter() - t0:.1f} s")
