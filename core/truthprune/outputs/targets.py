"""Which paths an output may be: never an input, a special directory or something truthprune did not write.

Why paths are compared resolved and by inode: inputs and outputs used to be compared as literal
strings, so a symbolic link to the model given as ``--save``, ``--out ..`` from a subdirectory
or a bind mount of the data directory slipped through and ``--overwrite`` deleted the input.
Here every path is resolved (symbolic links, ``..``) and, where it exists, identified by
``(st_dev, st_ino)``: a directory reached through a bind mount or a hard-linked file has the same
identity as the original, so "A is or contains B" is decided on identities of B and its parents.

The inputs of the current command are declared once (:func:`declare_inputs`); every output
check of this process then refuses a target that is, or contains, one of them, however the
command reaches the write. :func:`refusal` is the whole rule, used by
:func:`truthprune.outputs.atomic.check_target` at plan time and again right before the swap.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import markers

_INPUTS: list[tuple[str, str]] = []  # (flag, path) of this command's inputs (cleared when the command ends)


def declare_inputs(pairs: list[tuple[str, str | Path | None]]) -> None:
    """Record the inputs of the running command (flag, path); paths that do not exist are ignored."""
    for flag, path in pairs:
        if path is None or not str(path):
            continue
        text = str(path)
        if os.path.lexists(os.path.expanduser(text)) and (flag, text) not in _INPUTS:
            _INPUTS.append((flag, text))


def declared_inputs() -> list[tuple[str, str]]:
    return list(_INPUTS)


def clear_inputs() -> None:
    _INPUTS.clear()


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _chain(path: Path) -> list[tuple[int, int]]:
    """Identities of ``path`` and of every parent: as written (a bind mount's own parents) and resolved."""
    seen: list[tuple[int, int]] = []
    for p in {Path(os.path.abspath(path)), Path(os.path.realpath(path))}:
        for q in (p, *p.parents):
            ident = _identity(q)
            if ident is not None and ident not in seen:
                seen.append(ident)
    return seen


def contains(outer: str | Path, inner: str | Path) -> bool:
    """True when ``outer`` is ``inner`` or one of its parents (resolved, or the same inode)."""
    a, b = Path(os.path.realpath(outer)), Path(os.path.realpath(inner))
    if a == b or a in b.parents:
        return True
    ident = _identity(Path(outer))
    return ident is not None and ident in _chain(Path(inner))


def _home() -> Path | None:
    home = os.path.expanduser("~")
    return Path(home) if home and home != "~" else None


def special(path: Path) -> str | None:
    """Why ``path`` is a directory no output may be or contain (None when it is not)."""
    from ..cache import cache_root

    try:
        cwd: Path | None = Path.cwd()
    except OSError:
        cwd = None
    if cwd is not None and contains(path, cwd):
        return "is the working directory" if contains(cwd, path) else "contains the working directory"
    home = _home()
    if home is not None and contains(path, home):
        return "is your home directory" if contains(home, path) else "contains your home directory"
    try:
        cache = cache_root()
    except Exception:  # noqa: BLE001 - an unusable cache setting is reported by the environment check
        cache = None
    if cache is not None and (contains(path, cache) or contains(cache, path)):
        where = "is" if contains(cache, path) and contains(path, cache) else "contains" if contains(path, cache) else "lies inside"
        return f"{where} the truthprune cache {str(cache)!r}"
    if os.path.lexists(path) and not os.path.islink(path) and os.path.ismount(path):
        return "is a mount point"
    return None


def refusal(path: Path, flag: str, exists: bool, inputs: list[tuple[str, str]] | None = None) -> str | None:
    """The one-line refusal of writing (and with ``exists``, replacing) ``path``, or None."""
    why = special(path)
    if why is not None:
        return f"{flag} {str(path)!r} {why}; truthprune never writes there: choose another path"
    for in_flag, in_path in (_INPUTS if inputs is None else inputs):
        if contains(path, in_path):
            inside = "" if contains(in_path, path) else " (it lies inside)"
            return (f"{flag} {str(path)!r} would replace {in_flag} {in_path!r}{inside}, an input of this command; "
                    "write the output somewhere else")
    if not exists:
        return None
    why = markers.replace_refusal(path)
    if why is None:
        return None
    inside = next(((f, p) for f, p in (_INPUTS if inputs is None else inputs)
                   if os.path.isdir(p) and contains(p, path)), None)
    part = f", and it is part of {inside[0]} {inside[1]!r}, an input of this command" if inside else ""
    return (f"{flag} {str(path)!r} exists and truthprune did not write it ({why}{part}); --overwrite replaces only "
            "an empty directory or an output of truthprune: remove it yourself or choose another path")
