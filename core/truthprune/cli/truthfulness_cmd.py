"""``truthprune eval truthfulness``: does the model still *say* the truth under honest, neutral and
deceptive prompts, and does it still *know* it (probes on the same prompts)?

``--baseline`` (e.g. the dense model) is evaluated first (cached by its weights' fingerprint, so a
series of compressed models asks it once); the model is then read at the baseline's best probe
layer, the table shows both side by side, and ``--plot`` draws the two PCA rows.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import typer

from .eval_cmd import _DEFAULTS, _load, eval_app
from .options import config_option

_LIMIT_HELP = "Items per dimension (balanced true/false, seeded sample; default 200)."


def _check_output(path: Optional[str], suffix: str, flag: str, overwrite: bool) -> None:
    """A file output: its suffix, then the rule every output follows (truthprune.outputs.atomic):
    refused when it exists without --overwrite, is an input, or is not a file truthprune wrote."""
    from ..errors import UserError
    from ..outputs.atomic import prepare_output

    if path is None:
        return
    p = Path(path)
    if p.suffix.lower() != suffix:
        raise UserError(f"{flag} {path!r} must end in {suffix}")
    prepare_output(path, overwrite, kind="file", what=flag)


def _fmt(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}"


def table_lines(result: dict[str, Any], baseline: dict[str, Any] | None = None) -> list[str]:
    """The printed summary: one row per style x dimension, then flip rates and the probe setup."""
    from ..eval.prompt_styles import STYLES

    def cells(r: dict[str, Any], style: str, dim: str) -> list[str]:
        return [_fmt(r["accuracy"][style].get(dim)), _fmt(r["probe"]["accuracy"][style].get(dim)),
                _fmt(r["knows_but_says_false"][style].get(dim))]

    head = ["style", "dimension", "output acc", "probe acc", "knows-but-says-false"]
    if baseline:
        head += ["baseline output", "baseline probe", "baseline knows-but-says-false"]
    rows = [head]
    dims = [*result["items"], "all"]
    for style in STYLES:
        for dim in dims:
            row = [style, dim, *cells(result, style, dim)]
            if baseline:
                row += cells(baseline, style, dim)
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    for name, r in (("model", result), ("baseline", baseline)):
        if not r:
            continue
        for style in ("deceptive", "honest"):
            flips = r["flip"][style]
            parts = [f"{d} {_fmt(f['rate'])} ({f['count']}/{f['n_neutral_correct']}; back {_fmt(f['unflip_rate'])})"
                     for d, f in flips.items()]
            lines.append(f"{name} flip rate neutral->{style}: " + ", ".join(parts))
    pr = result["probe"]
    lines.append(f"probe {pr['name']} trained on neutral-style activations, {pr['folds']} entity-grouped folds, "
                 f"read at layer {pr['layer']} ({pr['layer_source']}; own best layer {pr['best_layer']})")
    lines.append(f"prompts {result['prompts_version']}, {result['template']} template, {result['assignment']}, "
                 f"{result['n_units']} units per style")
    for dim, info in result["items"].items():
        lines.append(f"  {dim}: {info['n_items']} items, {info['source']}")
    for dim, note in result.get("skipped", {}).items():
        lines.append(f"  {dim}: {note}")
    return lines


@eval_app.command("truthfulness")
def truthfulness_command(
    model: str = config_option("model"),
    baseline: Optional[str] = typer.Option(None, help="Also evaluate this model (e.g. smollm2-135m, the dense one) and read --model at its best layer."),
    truth_data: Optional[str] = typer.Option(None, "--truth-data", help="Directory of true/false statement CSVs (*_conj, *_disj, common_claim_true_false); default: generated offline sets."),
    truthfulqa_data: Optional[str] = typer.Option(None, "--truthfulqa-data", help="TruthfulQA.csv or 'hub' for the imitative-falsehoods dimension (default: skipped, offline)."),
    limit: int = typer.Option(200, help=_LIMIT_HELP),
    all_prompts: bool = typer.Option(False, "--all-prompts", help="Ask every item under all 5 rephrasings per style (5x the cost)."),
    template: str = typer.Option("auto", help="auto (chat template when the tokenizer has one) | chat | plain."),
    probe: str = typer.Option("logreg", help="Probe trained on neutral-style activations (one that needs no polarity)."),
    seed: int = typer.Option(_DEFAULTS["seed"], help="Seed of the item sample, prompt assignment and probe folds."),
    batch_size: int = typer.Option(16, "--batch-size", help="Prompts per forward pass (speed only)."),
    device: str = config_option("device"),
    dtype: str = config_option("dtype"),
    trust_remote_code: bool = config_option("trust_remote_code"),
    out: Optional[str] = typer.Option(None, "--out", help="Write the result as JSON to this .json file."),
    plot: Optional[str] = typer.Option(None, "--plot", help="Write the PCA figure (baseline and model rows) to this .png file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of the table."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out/--plot file that truthprune wrote."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check both models and the data and print the plan, then exit "
                                 "without loading a model."),
) -> None:
    """Output accuracy, flip rate, probe accuracy and "knows but says false" per prompt style x dimension."""
    from ..errors import UserError
    from ..eval.prompt_styles import load_prompts
    from ..eval.truthfulness import cached_truthfulness
    from ..eval.truthfulness_items import check_sources, load_items
    from ..truth.probing.protocol import probe_factory

    from ..models.formats import check_model_spec
    from ..run.checks import check_device

    check_device(device)
    check_sources(truth_data, truthfulqa_data, limit)
    if template not in ("auto", "chat", "plain"):
        raise UserError(f"--template {template!r} is not one of auto, chat, plain")
    if batch_size < 1:
        raise UserError(f"--batch-size {batch_size} must be at least 1")
    from ..models.spec import model_input_paths
    from ..outputs.atomic import declare_inputs

    declare_inputs([*model_input_paths(model), *(model_input_paths(baseline) if baseline else []),
                    ("--truth-data", truth_data), ("--truthfulqa-data", truthfulqa_data)])
    _check_output(out, ".json", "--out", overwrite)
    _check_output(plot, ".png", "--plot", overwrite)
    probe_factory(probe)  # an unknown probe name fails now, not after the model ran
    load_prompts()
    check_model_spec(model)  # both models before either loads: a missing --model fails now, not after the baseline
    if baseline is not None:
        check_model_spec(baseline, flag="--baseline")
    items, notes = load_items(truth_data, truthfulqa_data, limit, seed)
    if dry_run:
        from .eval_cmd import _plan
        from ..run.estimate import STATEMENTS_PER_S

        n = sum(len(v) for v in items.values())
        prompts = n * 3 * (5 if all_prompts else 1)
        models = [model] + ([baseline] if baseline else [])
        _plan("truthfulness", [f"models       {', '.join(models)}" + (" (the baseline first)" if baseline else ""),
                               f"items        {n} ({', '.join(f'{k} {len(v)}' for k, v in items.items())}), "
                               f"{prompts} prompts per model",
                               f"writes       {', '.join(x for x in (out, plot) if x) or 'nothing (the table is printed)'}"],
              len(models) * (5 + prompts / STATEMENTS_PER_S), model)
        return
    opts = dict(template=template, all_prompts=all_prompts, probe=probe, seed=seed, batch_size=batch_size, quiet=as_json)
    t0 = time.perf_counter()
    base = None
    if baseline is not None:
        loaded = _load(baseline, device, dtype, trust_remote_code)
        base = {"model": baseline, **cached_truthfulness(loaded, items, notes, **opts)}
        del loaded
    loaded = _load(model, device, dtype, trust_remote_code)
    layer = base["probe"]["best_layer"] if base else None
    result: dict[str, Any] = {"model": model, **cached_truthfulness(loaded, items, notes, report_layer=layer, **opts)}
    if layer is not None:
        result["probe"]["layer_source"] = f"the baseline's best layer ({baseline})"
    if base is not None:
        result["baseline"] = base
    result["wall_seconds"] = round(time.perf_counter() - t0, 2)
    if plot is not None:
        from ..eval.truthfulness_plots import pca_figure
        from ..outputs.atomic import atomic_file

        panels = ([(f"baseline {baseline}", base)] if base else []) + [(model, result)]
        with atomic_file(plot, overwrite=overwrite, what="--plot") as tmp:
            pca_figure(panels, tmp)
    text = json.dumps(result, indent=2)
    if out is not None:
        from ..outputs.atomic import write_json_atomic

        write_json_atomic(out, result, "truthfulness", overwrite=overwrite, what="--out")
    if as_json:
        typer.echo(text)
    else:
        for line in table_lines(result, base):
            typer.echo(line)
        if out is not None:
            typer.echo(f"written to {out}")
