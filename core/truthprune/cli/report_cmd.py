"""``truthprune report`` and ``truthprune compare``: re-render one finished run, compare several."""

from __future__ import annotations

from typing import Optional

import typer

from .app import app


def table_console():
    """A terminal's own width; piped output gets room for the whole table instead of wrapped headers."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


@app.command("report")
def report_command(
    out: str = typer.Argument(..., help="Output directory of a truthprune run (holding report.json)."),
) -> None:
    """Re-render report.md and the plots of a finished run from its report.json."""
    from ..reporting.report import rerender_report

    run_dir, plots = rerender_report(out)
    typer.echo(f"report written to {run_dir}/report.md" + (f" with {len(plots)} plots: {', '.join(plots)}" if plots else ""))


@app.command("compare")
def compare_command(
    runs: list[str] = typer.Argument(..., help="Two or more run output directories."),
    out: Optional[str] = typer.Option(None, "--out", help="Also write compare.md, compare.json and compare.png here."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out directory."),
) -> None:
    """Compare finished runs of one model: a summary table and per-layer sparsity/probe accuracy."""
    from ..reporting.compare import run_compare
    from ..errors import UserError

    if len(runs) < 2:
        raise UserError("compare needs at least two run directories, e.g. truthprune compare runs/a runs/b")
    if out is not None:  # plan time: writable, not one of the runs, locked until written
        from ..outputs.atomic import check_disjoint, declare_inputs, prepare_output

        declare_inputs([("run directory", run) for run in runs])
        for run in runs:
            check_disjoint(out, "--out", run, "run directory")
        prepare_output(out, overwrite, what="--out")
    table, verdict, written = run_compare(runs, out, overwrite)
    table_console().print(table)
    for line in verdict:
        typer.echo(line)
    if written is not None:
        typer.echo(f"comparison written to {written}/compare.md")
