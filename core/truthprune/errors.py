"""Errors that mean "the user asked for something we cannot do".

The CLI turns a :class:`UserError` into one line on stderr and exit code 2, with no traceback.
Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input: the message names the problem and the fix, on one line."""


class PluginError(UserError):
    """A plugin could not be loaded or two plugins clash."""


class PluginContractError(Exception):
    """A plugin broke its interface's contract (a mask of the wrong shape, an allocation of the
    wrong length, an unknown statistic...): the plugin's fault, not the user's input.

    Deliberately not a :class:`UserError`: no flag fixes it. The CLI prints it as one line and
    exits with code 3 (docs/usage.md); :mod:`truthprune.plugin.contracts` builds the message, which
    names the plugin and its distribution.
    """


def unknown_name_error(kind: str, name: str, known: Iterable[str]) -> UserError:
    """Build the 'unknown X, did you mean Y?' error used for every registry lookup."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f" did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(known) if known else "(none installed)"
    return UserError(f"unknown {kind} {name!r};{hint} installed {kind}s: {listing}")
