"""``truthprune probe``: per-layer truth-probe accuracy and separation of one model."""

from __future__ import annotations

import os
import re
import time
from typing import Optional

import typer

from ..errors import UserError
from ..run.config import DEFAULT_TRUTH_MAX_PER_SET, MIN_TRUTH_PER_SET
from .app import app
from .options import config_option


def parse_layers(spec: str | None) -> list[int] | None:
    """``all`` / None -> None (every layer); ``0,4,8``, ``10-20``, ``-1`` -> indices."""
    if spec is None or spec.strip().lower() == "all":
        return None
    out: list[int] = []
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        m = re.fullmatch(r"(\d+)-(\d+)", item)
        if m and int(m.group(1)) <= int(m.group(2)):
            out.extend(range(int(m.group(1)), int(m.group(2)) + 1))
        elif re.fullmatch(r"-?\d+", item):
            out.append(int(item))
        else:
            raise UserError(f"--layers {spec!r}: {item!r} is not a layer index or a range like 10-20")
    return out


def _split_names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [x.strip() for x in value.split(",") if x.strip()]
    return names or None


def _gen_layers(value: str):
    v = value.strip().lower()
    if v in ("best", "all"):
        return v
    layers = parse_layers(value)
    if not layers:
        raise UserError(f"--generalization-layers {value!r}: use best, all or a list like 8,12")
    return layers


def _print_table(result: dict, source: str) -> None:
    from rich.console import Console
    from rich.table import Table

    held = result["heldout"]
    names = list(held["accuracy"])
    show = names if len(names) <= 8 else []
    console = Console()
    if not console.is_terminal:  # piped/redirected: rich would assume 80 columns and fold every cell
        console = Console(width=max(100, 30 + sum(max(7, len(n) + 3) for n in show)))
    table = Table(title=f"probe {result['probe']} on {result['model']}: held-out accuracy (entity-grouped, test {result['test_fraction']:.0%})")
    table.add_column("layer", justify="right")
    table.add_column("mean acc", justify="right")
    for n in show:
        table.add_column(n, justify="right", overflow="fold")
    table.add_column("mean sep", justify="right")
    ratios = result["separation"]["ratio"]
    best = result["best_layer"]["layer"]
    for k, layer in enumerate(result["layers"]):
        sep = sum(r[k] for r in ratios.values()) / len(ratios)
        style = "bold green" if layer == best else None
        table.add_row(str(layer), f"{held['mean'][k]:.3f}", *(f"{held['accuracy'][n][k]:.3f}" for n in show), f"{sep:.4f}", style=style)
    console.print(table)
    console.print(f"data: {source}")
    console.print(f"best layer: {best} (mean held-out accuracy {result['best_layer']['accuracy']:.3f})")
    for reason in held.get("skipped", {}).items():
        console.print(f"skipped {reason[0]}: {reason[1]}")
    gen = result["generalization"]
    for layer, g in gen["layers"].items():
        per = ", ".join(f"{n} {v['mean']:.3f}±{v['std']:.3f}" for n, v in g["per_set"].items())
        console.print(
            f"cross-topic (layer {layer}, {g['repeats']} repeats, {g['balance_size']} per set): "
            f"mean {g['mean']:.3f} ± {g['std']:.3f}; {per}"
        )
    if gen["skipped"]:
        console.print(f"cross-topic generalisation skipped: {gen['skipped']}")


@app.command("probe")
def probe_command(
    model: str = config_option("model"),
    probe: str = typer.Option("logreg", help="Probe plugin: logreg, mass-mean, ttpd, ccs (see `truthprune plugins`)."),
    probe_opt: Optional[list[str]] = typer.Option(None, "--probe-opt", help="Probe option key=value (repeatable), e.g. C=1.0."),
    truth_data: Optional[str] = typer.Option(None, "--truth-data", help="Directory of true/false statement CSVs (statement,label columns); default: offline generated sets."),
    datasets: Optional[str] = typer.Option(None, "--truth-datasets", help="Which statement sets to use, comma-separated; "
                                           "default: every X/neg_X pair present."),
    old_datasets: Optional[str] = typer.Option(None, "--datasets", hidden=True, help="The old name of --truth-datasets."),
    truth_max_per_set: int = typer.Option(DEFAULT_TRUTH_MAX_PER_SET, "--truth-max-per-set", min=0,
                                          help="Statements per set: a seeded, class-balanced sample, as in run; 0 = every "
                                          "statement (the full protocol)."),
    layers: Optional[str] = typer.Option(None, help="Decoder layers: all (default), 0,4,8 or 10-20."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="At most this many statements per forward pass (default: as many as fit in 4096 padded tokens)."),
    out: Optional[str] = typer.Option(None, "--out", help="Write the results as JSON to this file."),
    plot: Optional[str] = typer.Option(None, "--plot", help="Write accuracy/separation vs layer PNGs to this directory."),
    seed: int = typer.Option(0, help="Seed of splits, subsampling and generated data."),
    chat_template: bool = typer.Option(False, "--chat-template", help="Wrap each statement as a user turn of the chat template."),
    bos: str = config_option("bos"),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Held-out fraction of each set's entities."),
    repeats: int = typer.Option(1, min=1, help="Held-out splits per set (mean over them)."),
    generalization_repeats: int = typer.Option(5, "--generalization-repeats", min=0, help="Cross-topic repetitions (0 = skip)."),
    generalization_layers: str = typer.Option("best", "--generalization-layers", help="best, all or a list of layers."),
    allow_duplicates: bool = typer.Option(False, "--allow-duplicates", help="Keep statements repeated with conflicting labels."),
    device: str = config_option("device"),
    dtype: str = config_option("dtype"),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the activation cache."),
    trust_remote_code: bool = config_option("trust_remote_code"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    wait: bool = typer.Option(False, "--wait", help="If another process is writing the same --out, wait for it."),
    allow_pickle: bool = config_option("allow_pickle"),
    strict: bool = typer.Option(False, "--strict", help="A misaligned X/neg_X pair is an error instead of skipped."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check everything and print the plan, then exit without "
                                 "loading the model."),
) -> None:
    """Train a truth probe on every decoder layer: held-out and cross-topic accuracy, separation."""
    from ..run.config import parse_options
    from ..models.formats import check_model_spec
    from ..outputs.atomic import atomic_file, check_writable, prepare_output, resolve_target, write_json_atomic
    from ..truth.probing.protocol import probe_factory, run_probe_protocol
    from ..truth.probing.runner import extract_statement_sets, load_truth_sets

    from ..models.bos import check_setting, resolve_bos

    if old_datasets is not None:
        if datasets is not None:
            raise UserError("--datasets is the old name of --truth-datasets; give only --truth-datasets")
        datasets = old_datasets
    bos = check_setting(bos)
    from ..run.checks import check_device, check_seed

    check_device(device)
    check_seed(seed)
    check_model_spec(model, allow_pickle=allow_pickle)
    if not 0.0 < test_fraction < 1.0:
        raise UserError(f"--test-fraction {test_fraction} must lie strictly between 0 and 1, e.g. 0.2")
    from ..models.spec import model_input_paths
    from ..outputs.atomic import declare_inputs

    declare_inputs([*model_input_paths(model), ("--truth-data", truth_data)])  # no output may replace them
    if plot:
        check_writable(resolve_target(plot, "--plot"), "--plot")
    options = parse_options(probe_opt, "--probe-opt")
    probe_factory(probe, options)  # unknown probe / bad option: fail before loading the model
    layer_list = parse_layers(layers)
    gen_layers = _gen_layers(generalization_layers)
    from ..models.support import check_layer_indices

    check_layer_indices(model, layer_list, "--layers")
    if isinstance(gen_layers, list):
        check_layer_indices(model, gen_layers, "--generalization-layers")
    if 0 < truth_max_per_set < MIN_TRUTH_PER_SET:
        raise UserError(f"--truth-max-per-set {truth_max_per_set} leaves too few statements for a held-out split; use "
                        f"{MIN_TRUTH_PER_SET} or more (0 = every statement)")
    sets, source = load_truth_sets(
        truth_data, _split_names(datasets), seed=seed, duplicates="keep" if allow_duplicates else "consistent",
        strict=strict or None,
    )
    if truth_max_per_set:
        from ..truth.probing.runner import cap_statement_sets

        capped = any(len(s) > truth_max_per_set for s in sets)
        sets = cap_statement_sets(sets, truth_max_per_set, seed)[0]
        if capped:
            source += f"; at most {truth_max_per_set} statements per set (--truth-max-per-set 0 for all)"
    from ..outputs.atomic import check_target

    if out:  # checked and locked now: an unwritable or existing --out fails before the extraction
        if dry_run:
            check_target(out, overwrite, kind="file", what="--out")
        else:
            prepare_output(out, overwrite, wait=wait, kind="file", what="--out")
    plot_files = [os.path.join(plot, f"probe_{probe}_{n}.png") for n in ("accuracy", "separation")] if plot else []
    for f in plot_files:  # each plot is an output of its own: same rule as --out
        if dry_run:
            check_target(f, overwrite, kind="file", what="--plot")
        else:
            prepare_output(f, overwrite, wait=wait, kind="file", what="--plot")
    if dry_run:
        from ..models.spec import model_ref
        from ..run.estimate import STATEMENTS_PER_S, scale_of
        from ..progress import format_seconds

        n = sum(len(s) for s in sets)
        typer.echo("truthprune probe: plan (dry run: nothing loaded or written)")
        typer.echo(f"  model        {model}")
        typer.echo(f"  probe        {probe} on {'every layer' if layer_list is None else f'layers {layer_list}'}")
        typer.echo(f"  statements   {n} in {len(sets)} sets ({source})")
        typer.echo(f"  writes       {', '.join(x for x in (out, plot) if x) or 'nothing (the table is printed)'}")
        typer.echo(f"  time         about {format_seconds(n / STATEMENTS_PER_S * (scale_of(model_ref(model)) or 1.0) + 20)} on a "
                   "2-core CPU; much less on a GPU")
        return
    typer.echo(f"data: {source}: {', '.join(f'{s.name} ({len(s)})' for s in sets)}", err=True)
    from ..models.loading import load_model
    from ..models.adapter import resolve_layers

    t0 = time.perf_counter()
    loaded = load_model(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
    from ..models.adapter import decoder_layers

    layer_idx = resolve_layers(layer_list, len(decoder_layers(loaded.model)))
    acts = extract_statement_sets(
        loaded.model,
        loaded.tokenizer,
        sets,
        layers=layer_idx,
        fingerprint=None if no_cache else loaded.fingerprint,
        batch_size=batch_size,
        chat_template=chat_template,
        add_bos=resolve_bos(loaded.tokenizer, bos).statements,
        quiet=False,
    )
    t1 = time.perf_counter()
    result = run_probe_protocol(
        sets,
        acts,
        layer_idx,
        probe=probe,
        probe_options=options,
        test_fraction=test_fraction,
        repeats=repeats,
        seed=seed,
        generalization_layers=gen_layers,
        generalization_repeats=generalization_repeats,
    )
    t2 = time.perf_counter()
    result.update(
        {
            "model": model,
            "fingerprint": loaded.fingerprint,
            "data": source,
            "extraction": {"chat_template": chat_template, "add_bos": resolve_bos(loaded.tokenizer, bos).statements, "bos": bos, "batch_size": batch_size},
            "seconds": {"extract": round(t1 - t0, 2), "protocol": round(t2 - t1, 2)},
        }
    )
    _print_table(result, source)
    if out:
        write_json_atomic(out, result, "probe", overwrite=overwrite, what="--out", wait=wait)
        typer.echo(f"wrote {out}", err=True)
    if plot:
        import shutil
        import tempfile

        from ..truth.probing.plots import plot_protocol

        scratch = tempfile.mkdtemp(prefix=".truthprune-plots-")
        try:
            drawn = plot_protocol(result, scratch, prefix=f"probe_{probe}")
            for src, dst in zip(drawn, plot_files):
                with atomic_file(dst, overwrite=overwrite, wait=wait, what="--plot") as tmp:
                    shutil.copyfile(src, tmp)
                typer.echo(f"wrote {dst}", err=True)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
