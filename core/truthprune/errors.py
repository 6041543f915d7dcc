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


def unknown_name_error(kind: str, name: str, known: Iterable[str]) -> UserError:
    """Build the 'unknown X, did you mean Y?' error used for every registry lookup."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f" did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(known) if known else "(none installed)"
    return UserError(f"unknown {kind} {name!r};{hint} installed {kind}s: {listing}")
