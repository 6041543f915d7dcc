"""``truthprune plugins``: what is installed, as a table or JSON."""

from __future__ import annotations

import json

import typer

from .main import app


@app.command("plugins")
def plugins_command(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the loaded plugins: kind, name, distribution, version, description."""
    from ..plugin.registry import get_registry

    registry = get_registry()
    rows = [r.as_dict() for r in registry.entries()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="truthprune plugins")
    for col in ("kind", "name", "distribution", "version", "description"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["kind"], r["name"], r["distribution"], r["version"], r["description"])
    Console().print(table)
