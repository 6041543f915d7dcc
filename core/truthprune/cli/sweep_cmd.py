"""``truthprune sweep``: a grid of pruners x sparsities in one process, then their comparison.

``sweep`` takes every flag of ``run`` (declared once in :func:`run_cmd._run_options`); only
``--pruner`` and ``--sparsity`` become comma-separated lists, and ``--out``/``--save`` become the
parent directories of the grid's runs.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional

import typer

from .app import app
from .report_cmd import table_console
from .run_cmd import _run_options, effective_config, with_dry_run


def _sweep_options(func):
    """``run``'s flags, with --pruner/--sparsity as lists and --out/--save as parent directories."""
    wrapped = _run_options(func)
    changed = {
        "pruner": typer.Option(None, "--pruner", help="Pruners to sweep, comma-separated, e.g. wanda,owl,tplo (default: the config's)."),
        "sparsity": typer.Option(None, "--sparsity", help="Sparsities to sweep, comma-separated, e.g. 0.3,0.5,0.7 (default: the config's)."),
        "out": typer.Option(None, "--out", help="Sweep directory: one run per OUT/<pruner>-<sparsity>/, the comparison in OUT/compare/ (default runs/sweep)."),
        "save": typer.Option(None, "--save", help="Also save each pruned model under SAVE/<pruner>-<sparsity>/."),
    }
    sig = inspect.signature(wrapped)
    params = [p.replace(default=changed[p.name], annotation=Optional[str]) if p.name in changed else p for p in sig.parameters.values()]
    wrapped.__signature__ = sig.replace(parameters=params)
    return wrapped


@app.command("sweep")
@with_dry_run
@_sweep_options
def sweep_command(**flags: Any) -> None:
    """Run a grid of pruners x sparsities in one process (model loaded once), then compare them."""
    from pathlib import Path

    from ..reporting.compare import load_runs, rich_table, summary, verdict_lines
    from ..errors import UserError
    from ..run.sweep import mark_sweep, parse_sparsities, plan_sweep, run_sweep, split_list

    dry_run = flags.pop("dry_run")
    pruners = split_list(flags.pop("pruner"), "--pruner")
    sparsities = parse_sparsities(flags.pop("sparsity"))
    out_flag, save_flag = flags.pop("out"), flags.pop("save")
    if flags.get("nm") is not None:
        raise UserError("--nm fixes the sparsity, so it cannot be swept; use truthprune run --nm N:M per pruner instead")
    base = effective_config({**flags, "pruner": pruners[0] if pruners else None, "sparsity": sparsities[0] if sparsities else None})
    if base.nm is not None:
        raise UserError("the config file sets nm, which fixes the sparsity; remove it to sweep sparsities")
    out = out_flag or ("runs/sweep" if base.out == "runs/latest" else base.out)
    save = save_flag if save_flag is not None else base.save

    def make_config(overrides: dict[str, Any]):
        return effective_config({**flags, **overrides, "save": overrides.get("save")})

    points = plan_sweep(make_config, pruners or [base.pruner], sparsities or [base.sparsity], out, save, base.overwrite,
                        dry_run=dry_run)
    if dry_run:
        from .run_cmd import print_plan

        for point in points:
            print_plan(point.plan, f"truthprune sweep: {point.out} (dry run: nothing loaded or written)")
        return
    compare_dir = run_sweep(points, Path(out) / "compare")
    mark_sweep(out)
    runs = load_runs([p.out for p in points])
    header, rows, _ = summary(runs)
    table_console().print(rich_table(header, rows, f"truthprune sweep: {len(runs)} runs in {out}"))
    for line in verdict_lines(runs):
        typer.echo(line)
    typer.echo(f"comparison written to {compare_dir}/compare.md")
