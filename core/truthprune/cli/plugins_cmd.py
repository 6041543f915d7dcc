"""``truthprune plugins``: what is installed, as a table or JSON."""

from __future__ import annotations

import json

import typer

from .app import app


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
    from rich.text import Text

    # one block per kind: the name never wraps, the description wraps between words, and the
    # distribution (what pip installs or removes) closes it; fits 80 columns and wider terminals alike
    console = Console()
    kinds: dict[str, list[dict]] = {}
    for r in rows:
        kinds.setdefault(r["kind"], []).append(r)
    width = max((len(r["name"]) for r in rows), default=4)
    for k, (kind, entries) in enumerate(kinds.items()):
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True, min_width=width)
        grid.add_column(overflow="fold")
        for r in entries:
            text = Text(r["description"] or "")
            text.append(f" ({r['distribution']} {r['version']})", style="dim")
            grid.add_row(Text(r["name"], style="bold"), text)
        if k:
            console.print()
        console.print(Text(f"{kind}s" if not kind.endswith("s") else kind, style="underline"))
        console.print(grid)
