"""The ``truthprune`` command line: the console-script entry point and its error policy.

Start-up stays light: typer, rich and the torch-free plugin registry only. Every command
imports torch/transformers inside its body, so ``truthprune --help`` and ``truthprune plugins``
answer quickly.

Error policy (docs/reliability.md): a :class:`truthprune.UserError`, a usage error of the
parser (bad value, unknown option) and a full disk each become ONE line on stderr and exit
code 2, with no traceback. A :class:`truthprune.PluginContractError` (a plugin returned a mask of
the wrong shape, an allocation of the wrong length...) is one line naming the plugin and exit
code 3: no flag fixes it, so scripts can tell it from a usage error. Ctrl-C, also during the start-up imports, prints one line and exits
130 (128 + SIGINT, the shell convention), and no output is ever left half-written. Every output
lock this process holds is released on the way out. Anything else that escapes is a bug and
keeps its traceback.

This module imports only the standard library at import time, so a Ctrl-C during start-up lands
inside :func:`main`'s ``try`` instead of printing a KeyboardInterrupt traceback.
"""

from __future__ import annotations

import sys


_INTERRUPTED = "interrupted; no output was left half-written"
PLUGIN_CONTRACT_EXIT = 3  # a plugin broke its contract (truthprune.PluginContractError): not the user's input, so not 2


def _register_builtin_commands() -> None:
    from . import commands  # noqa: F401  (registers commands on `app`)


def _register_plugin_commands() -> None:
    """Plugin commands, added once per loaded registry: every call of :func:`main` in one process
    (tests, embedding) used to append them again, so the app grew and each call got slower."""
    from ..plugin.registry import get_registry
    from .app import app

    registry = get_registry()
    if getattr(app, "_truthprune_registry", None) is registry:
        return
    builtin = getattr(app, "_truthprune_builtin", None)
    if builtin is None:
        builtin = app._truthprune_builtin = (len(app.registered_commands), len(app.registered_groups))
    del app.registered_commands[builtin[0]:]  # those of a previous registry (reset_registry)
    del app.registered_groups[builtin[1]:]
    registry.add_commands(app)
    app._truthprune_registry = registry


def _command_word(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def _click_exceptions() -> tuple[type, type, type, type]:
    try:
        from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
        from typer.exceptions import Abort
    except ImportError:  # typer releases that use click itself
        from click.exceptions import Abort, ClickException, NoArgsIsHelpError, UsageError
    return ClickException, UsageError, NoArgsIsHelpError, Abort


MAX_ERROR_CHARS = 1500  # a longer message (a 100 KB statement or path inside it) is cut in the middle


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    if len(line) > MAX_ERROR_CHARS:
        cut = len(line) - MAX_ERROR_CHARS
        line = f"{line[:1000]} [... {cut} characters cut ...] {line[-(MAX_ERROR_CHARS - 1000):]}"
    return line


def speaks() -> bool:
    """False in the worker processes of a data-parallel prune other than rank 0 when torch's elastic
    agent started them (torchrun or --nproc: a valid RANK < WORLD_SIZE, the rendezvous address and
    the agent's run id): every rank meets the same error, and one line is enough. Anything else
    speaks, so a broken environment, or a rank started by hand without its peers, is reported."""
    import os

    try:
        rank, world = int(os.environ.get("RANK", "0") or 0), int(os.environ.get("WORLD_SIZE", "1") or 1)
    except ValueError:
        return True
    # started by torch's elastic agent (torchrun, --nproc): rank 0 runs too and reports the same error;
    # a rank started by hand (env vars only) may be alone, so it speaks for itself
    launched = bool(os.environ.get("TORCHELASTIC_RUN_ID")) and bool(os.environ.get("MASTER_ADDR"))
    return not (launched and 0 < rank < world)


def _fail(message: str, code: int = 2) -> None:
    if speaks():
        print(f"error: {_one_line(message)}", file=sys.stderr)
    sys.exit(code)


def _check_argv(argv: list[str]) -> None:
    """Arguments must be text: bytes that are not UTF-8 (a Latin-1 file name) reach Python as lone
    surrogates and failed later, in a message, a report or a JSON file, with a traceback."""
    from ..errors import UserError

    for arg in argv:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError as err:
            shown = arg.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
            raise UserError(f"the argument {shown[:200]!r} contains bytes that are not UTF-8 (at position {err.start}); "
                            "rename the file or directory to a UTF-8 name and pass that") from None


def _run(argv: list[str]) -> int:
    import logging

    from ..environment import check_environment
    from ..errors import PluginContractError, UserError
    from ..interrupts import install_interrupt_guard
    from ..outputs.atomic import disk_full

    ClickException, UsageError, NoArgsIsHelpError, Abort = _click_exceptions()
    install_interrupt_guard()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        _check_argv(argv)
        check_environment(_command_word(argv))
        from ..progress import silence_third_party_bars

        silence_third_party_bars()  # before transformers is imported: its tqdm bars become our stage lines
        _register_builtin_commands()
        _register_plugin_commands()
        from .app import app

        code = app(args=argv, prog_name="truthprune", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except NoArgsIsHelpError as exc:  # `truthprune` or `truthprune eval` alone: the help, as before
        print(exc.format_message())
        return 2
    except UsageError as exc:  # one line instead of click's usage + boxed panel
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "truthprune"
        _fail(f"{exc.format_message()}; see '{where} --help'")
    except ClickException as exc:
        _fail(exc.format_message(), getattr(exc, "exit_code", 1) or 1)
    except Abort:
        _fail("aborted (the input ended)", 1)
    except UserError as err:
        _fail(str(err))
    except PluginContractError as err:  # the plugin's bug, not the user's input: its own exit code
        _fail(str(err), PLUGIN_CONTRACT_EXIT)
    except OSError as err:
        if not disk_full(err):
            raise
        _fail(f"no space left on the device ({err.filename or err}); free some space and rerun: no output was "
              "left half-written")
    return 0


# exit code -> how the signal that ended the command is named (truthprune.outputs.atomic unwinds with these)
_SIGNAL_EXITS = {129: "SIGHUP: the terminal or connection closed", 131: "SIGQUIT", 143: "SIGTERM"}


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; always ends with SystemExit."""
    args = list(sys.argv[1:] if argv is None else argv)
    from .launch import ARGV  # light (no torch): read back by prune --nproc

    ARGV[:] = args
    try:
        code = _run(args)
    except KeyboardInterrupt:
        code = 130
    except SystemExit as exc:  # SIGTERM, SIGHUP, SIGQUIT (truthprune.outputs.atomic) unwind as SystemExit(128 + n)
        if exc.code not in _SIGNAL_EXITS:
            raise
        code = exc.code
    finally:
        try:
            from ..outputs.atomic import release_all

            release_all()
        except (KeyboardInterrupt, SystemExit):
            pass
    if code == 130 and speaks():  # typer turns Ctrl-C inside a command into exit code 130
        print(_INTERRUPTED, file=sys.stderr)
    elif code in _SIGNAL_EXITS and speaks():
        print(f"terminated ({_SIGNAL_EXITS[code]}); no output was left half-written", file=sys.stderr)
    sys.exit(code)
