"""The options several commands share (the model, its device and dtype, BOS, the window length...),
declared once: each is the :class:`truthprune.run.config.RunConfig` field of the same name, its
description the help and its default the default.

Why: ``eval ppl``, ``eval truthfulqa``, ``eval truthfulness`` and ``probe`` used to repeat these by
hand, and their help drifted from ``run``'s. ``run``, ``prune`` and ``sweep`` generate their flags
from the same fields (:func:`truthprune.cli.run_cmd.run_flag_params`), with the same help text
(:func:`option_help`), so every command describes ``--model`` in the same words.
"""

from __future__ import annotations

from typing import Any

import typer

from ..run.config import RunConfig

# the options of every command that loads a model
MODEL_OPTIONS = ("model", "device", "dtype", "bos", "trust_remote_code", "allow_pickle")

_UNSET: Any = object()


def literal(text: str) -> str:
    """Help text shown as written: rich would read ``[lmeval]`` as a style tag and drop it."""
    return text.replace("[", "\\[")


def shown_default(field: Any) -> str | None:
    """A RunConfig field's default as ``--help`` shows it (None: nothing to show, e.g. 'the pruner's own')."""
    from pydantic_core import PydanticUndefined

    value = field.default_factory() if field.default_factory is not None else field.default
    if value is None or value is PydanticUndefined or value == {}:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) if value else None
    return str(value)


def option_help(field: Any, text: str | None = None) -> str:
    """The help of a field's flag: its description (or ``text``) and its default, as every command shows it."""
    shown = shown_default(field) if text is None else None
    return literal((field.description if text is None else text) + (f" [default: {shown}]" if shown is not None else ""))


def config_option(name: str, default: Any = _UNSET) -> Any:
    """The typer option of RunConfig field ``name`` for a command that takes it with a value (not an
    override): the field's default (or ``default``), its description as help, one flag (``--x``)."""
    field = RunConfig.model_fields[name]
    if default is _UNSET:
        default = field.default_factory() if field.default_factory is not None else field.default
    return typer.Option(default, "--" + name.replace("_", "-"), help=option_help(field), show_default=False)
