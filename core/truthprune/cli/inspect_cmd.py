"""``truthprune inspect MODEL``: per-layer sparsity, N:M validity, quantization scheme and size of a checkpoint.

The check that a mask survived every later step (quantization, finetune, export, reload): it reads
the saved tensors themselves (:mod:`truthprune.reporting.inspect_model`) and warns where they do not
match what the checkpoint's truthprune.json says.
"""

from __future__ import annotations

import json

import typer

from .app import app


@app.command("inspect")
def inspect_command(
    model: str = typer.Argument(..., help="A checkpoint directory (written by --save, export or finetune, or any safetensors model)."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON instead of text."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when a warning is printed (for scripts and CI)."),
) -> None:
    """Show what a saved model holds: zeros per layer, N:M validity, quantization, file size; warn on a lost mask."""
    from ..reporting.inspect_model import inspect_checkpoint, render

    info = inspect_checkpoint(model)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        for line in render(info):
            typer.echo(line)
    for warning in info["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    if strict and info["warnings"]:
        raise typer.Exit(1)
