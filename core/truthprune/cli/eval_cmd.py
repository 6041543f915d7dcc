"""``truthprune eval ppl`` and ``truthprune eval truthfulqa``: evaluate one model, no pruning.

Useful on their own (dense baselines, a saved pruned checkpoint) and as the same code path
``truthprune run`` uses, so the numbers are comparable. Defaults come from the run
configuration (seqlen, batch size) so ``eval`` and ``run`` agree unless told otherwise.
"""

from __future__ import annotations

import json
import time
from typing import Any, Optional

import typer

from ..run.config import RunConfig
from .app import app
from .options import config_option

eval_app = typer.Typer(help="Evaluate a model: perplexity, TruthfulQA MC1/MC2, truthfulness under prompt styles.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

_DEFAULTS = {name: RunConfig.model_fields[name].default for name in ("batch_size", "seed", "ppl_data")}



def _check(model: str, allow_pickle: bool, device: str, **positive: int | None) -> None:
    """Plan-time checks shared by both evaluations: the model's format, counts that must be >= 1."""
    from ..errors import UserError
    from ..models.formats import check_model_spec

    from ..run.checks import check_context, check_device

    for flag, value in positive.items():
        if value is not None and value < 1:
            raise UserError(f"--{flag.replace('_', '-')} {value} must be at least 1")
    check_device(device)
    check_model_spec(model, allow_pickle=allow_pickle)
    if positive.get("seqlen"):
        check_context(model, positive["seqlen"])


def _load(model: str, device: str, dtype: str, trust_remote_code: bool):
    from ..models.loading import load_model

    return load_model(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code)


_DRY_RUN_HELP = "Check the model and the data and print the plan, then exit without loading the model."


def _plan(command: str, lines: list[str], seconds: float, model: str) -> None:
    """``--dry-run``: what the evaluation would read and roughly how long it would take."""
    from ..progress import format_seconds
    from ..models.spec import model_ref
    from ..run.estimate import scale_of

    typer.echo(f"truthprune eval {command}: plan (dry run: nothing loaded or written)")
    for line in lines:
        typer.echo(f"  {line}")
    typer.echo(f"  time         about {format_seconds(seconds * (scale_of(model_ref(model)) or 1.0))} on a 2-core CPU; much less on a GPU")


def _emit(result: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        for line in lines:
            typer.echo(line)


@eval_app.command("ppl")
def ppl_command(
    model: str = config_option("model"),
    data: str = typer.Option(_DEFAULTS["ppl_data"], help="pydoc (held-out Python docs, offline), wikitext2 (hub test split) or a text file."),
    seqlen: int = config_option("seqlen"),
    batch_size: int = typer.Option(_DEFAULTS["batch_size"], "--batch-size", help="Windows per forward pass (speed only)."),
    max_windows: Optional[int] = typer.Option(None, "--max-windows", help="Score only the first N windows (default: all; pydoc: 16, as in run)."),
    device: str = config_option("device"),
    dtype: str = config_option("dtype"),
    trust_remote_code: bool = config_option("trust_remote_code"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    allow_pickle: bool = config_option("allow_pickle"),
    bos: str = config_option("bos"),
    dry_run: bool = typer.Option(False, "--dry-run", help=_DRY_RUN_HELP),
) -> None:
    """Perplexity of one model on non-overlapping windows of a text (docs/evaluation.md)."""
    from ..models.bos import check_setting, resolve_bos
    from ..eval.perplexity import default_max_windows, encode_eval_text, eval_text, perplexity

    check_setting(bos)
    _check(model, allow_pickle, device, max_windows=max_windows, seqlen=seqlen, batch_size=batch_size)
    text, _ = eval_text(data)  # fail on bad data before the (slower) model load
    if dry_run:
        from ..run.estimate import PPL_TOKENS_PER_S

        windows = default_max_windows(data, max_windows) or max(1, len(text) // 4 // seqlen)
        _plan("ppl", [f"model        {model}", f"data         {data}: {'about ' if default_max_windows(data, max_windows) is None else ''}"
                      f"{windows} windows of {seqlen} tokens"], 5 + windows * seqlen / PPL_TOKENS_PER_S, model)
        return
    loaded = _load(model, device, dtype, trust_remote_code)
    rule = resolve_bos(loaded.tokenizer, bos)
    ids = encode_eval_text(text, loaded.tokenizer, rule)
    t0 = time.perf_counter()
    max_windows = default_max_windows(data, max_windows)
    result = perplexity(loaded.model, ids, seqlen, batch_size=batch_size, max_windows=max_windows, bos_id=rule.window_bos)
    result.update(model=model, data=data, bos=rule.as_dict(), seconds=round(time.perf_counter() - t0, 2))
    _emit(result, as_json, [
        f"perplexity {result['ppl']:.4f}",
        f"  model {model}, data {data}: {result['windows']} windows x {seqlen} tokens "
        f"({result['tokens']} tokens in the text), {result['seconds']} s",
        f"  BOS: --bos {bos}: {'every window starts with BOS' if rule.windows else 'windows cut as tokenised'} ({rule.reason})",
    ])


@eval_app.command("truthfulqa")
def truthfulqa_command(
    model: str = config_option("model"),
    data: str = typer.Option("hub", help="Path to the original TruthfulQA.csv, or 'hub' (truthfulqa/truthful_qa)."),
    limit: Optional[int] = typer.Option(None, help="Evaluate only the first N held-out questions (quick runs)."),
    seed: int = typer.Option(_DEFAULTS["seed"], help="Seed of the calibration/evaluation question split."),
    batch_size: int = typer.Option(_DEFAULTS["batch_size"], "--batch-size", help="Answers per forward pass (speed only)."),
    device: str = config_option("device"),
    dtype: str = config_option("dtype"),
    trust_remote_code: bool = config_option("trust_remote_code"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    allow_pickle: bool = config_option("allow_pickle"),
    bos: str = config_option("bos"),
    dry_run: bool = typer.Option(False, "--dry-run", help=_DRY_RUN_HELP),
) -> None:
    """TruthfulQA MC1/MC2 on the held-out half of the questions."""
    from ..models.bos import check_setting, resolve_bos
    from ..eval.truthfulqa import evaluate_truthfulqa, load_truthfulqa

    check_setting(bos)
    _check(model, allow_pickle, device, limit=limit, batch_size=batch_size)
    load_truthfulqa(data)  # fail on bad data before the (slower) model load
    if dry_run:
        from ..run.estimate import TRUTHFULQA_S_PER_QUESTION

        n = limit or 408
        _plan("truthfulqa", [f"model        {model}", f"data         {data}: {n} held-out questions"],
              5 + n * TRUTHFULQA_S_PER_QUESTION, model)
        return
    loaded = _load(model, device, dtype, trust_remote_code)
    rule = resolve_bos(loaded.tokenizer, bos)
    t0 = time.perf_counter()
    result = evaluate_truthfulqa(loaded.model, loaded.tokenizer, data=data, limit=limit, batch_size=batch_size, seed=seed,
                                 bos=rule.window_bos)
    result.update(model=model, bos=rule.as_dict(), seconds=round(time.perf_counter() - t0, 2))
    split = result["split"]
    _emit(result, as_json, [
        f"MC1 {result['mc1']:.4f}  MC2 {result['mc2']:.4f}",
        f"  model {model}, {result['data']}: {result['n_questions']} held-out questions "
        f"(of {split['n_evaluation']}; split seed {split['seed']}), {result['seconds']} s",
    ])
