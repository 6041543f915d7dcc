"""The options every model-loading command shares are declared once (truthprune.cli.options): ``run``,
``eval ppl``, ``eval truthfulqa``, ``eval truthfulness`` and ``probe`` describe them in the same words."""

from __future__ import annotations

import typer.main

from truthprune.cli.app import app
from truthprune.cli.main import _register_builtin_commands
from truthprune.cli.options import MODEL_OPTIONS

_register_builtin_commands()
ROOT = typer.main.get_command(app)


def _command(*path: str):
    cmd = ROOT
    for word in path:
        cmd = cmd.commands[word]
    return cmd


def helps(*path: str) -> dict[str, str]:
    """--flag -> its help text, for every option of the command at ``path``."""
    return {opt: p.help for p in _command(*path).params for opt in p.opts if opt.startswith("--")}


def test_model_options_have_the_same_help_in_every_command():
    run = helps("run")
    for path in (("eval", "ppl"), ("eval", "truthfulqa"), ("probe",)):
        got = helps(*path)
        for name in MODEL_OPTIONS:
            flag = "--" + name.replace("_", "-")
            assert got.get(flag) == run[flag], (path, flag)
    assert helps("eval", "ppl")["--seqlen"] == run["--seqlen"]
    for flag in ("--model", "--device", "--dtype", "--trust-remote-code"):
        assert helps("eval", "truthfulness")[flag] == run[flag]


def test_probe_has_one_bos_option():
    flags = helps("probe")
    assert "--bos" in flags and "--no-bos" not in flags

