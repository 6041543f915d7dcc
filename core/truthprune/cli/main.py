"""The ``truthprune`` command line.

Start-up stays light: typer, rich and the torch-free plugin registry only. Every command
imports torch/transformers inside its body, so ``truthprune --help`` and ``truthprune plugins``
answer quickly. A :class:`truthprune.UserError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import logging
import sys

import typer

from ..errors import UserError

app = typer.Typer(
    name="truthprune",
    help="Prune LLMs without destroying their truth features, and measure it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More logging (-v info, -vv debug)."),
) -> None:
    """Prune LLMs without destroying their truth features, and measure it."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.getLogger().setLevel(level)
    logging.getLogger("truthprune").setLevel(level if verbose else logging.INFO)


def _register_builtin_commands() -> None:
    from . import commands  # noqa: F401  (registers commands on `app`)


def _register_plugin_commands() -> None:
    from ..plugins import get_registry

    get_registry().add_commands(app)


_INTERRUPTED = "interrupted; no output was left half-written"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        _register_builtin_commands()
        _register_plugin_commands()
        app(args=argv, standalone_mode=True)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(_INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    except SystemExit as exc:
        if exc.code == 130:  # typer turns Ctrl-C inside a command into a silent exit 130
            print(_INTERRUPTED, file=sys.stderr)
        raise


