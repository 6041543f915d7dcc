"""The typer application object and its root options (``-v``); the commands register on it.

Kept apart from :mod:`truthprune.cli.main` so the console-script entry point imports nothing but
the standard library before it can catch a Ctrl-C (see ``main``).
"""

from __future__ import annotations

import logging

import typer

app = typer.Typer(
    name="truthprune",
    help="Prune LLMs without destroying their truth features, and measure it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More logging: -v what each stage used and "
                                "decided, -vv debug. Without it a run prints one line per stage (truthprune.progress)."),
) -> None:
    """Prune LLMs without destroying their truth features, and measure it."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.getLogger().setLevel(level)
    logging.getLogger("truthprune").setLevel(level)
