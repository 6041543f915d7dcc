"""The environment truthprune runs in: the variables it reads, validated once before a command does
any work, and the library versions recorded with every result.

Why: ``RANK=abc`` or ``WORLD_SIZE=abc`` ended in a ValueError traceback, ``WORLD_SIZE=2`` outside
torchrun hung or crashed in the process-group set-up, and a ``TRUTHPRUNE_CACHE`` that names a
file failed with NotADirectoryError after a minute and a half of GGUF conversion. Each is now
one line at start-up naming the variable and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError

# commands that read the cache / join a process group (the others never touch either)
HEAVY_COMMANDS = frozenset({"run", "prune", "probe", "eval", "sweep"})


def _int_var(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise UserError(f"environment variable {name}={raw!r} is not an integer; unset it or let torchrun set it") from None
    if value < minimum:
        raise UserError(f"environment variable {name}={raw!r} must be at least {minimum}; unset it or let torchrun set it")
    return value


def check_distributed() -> tuple[int, int]:
    """(rank, world size) from RANK/WORLD_SIZE/LOCAL_RANK, validated."""
    world = _int_var("WORLD_SIZE", 1, 1)
    rank = _int_var("RANK", 0, 0)
    _int_var("LOCAL_RANK", 0, 0)
    if rank >= world:
        raise UserError(f"RANK={rank} is not below WORLD_SIZE={world}; start the processes with torchrun")
    if world > 1:
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
        if missing:
            raise UserError(f"WORLD_SIZE={world} asks for {world} processes, but {' and '.join(missing)} "
                            f"{'is' if len(missing) == 1 else 'are'} not set: start with torchrun --nproc-per-node {world} "
                            "-m truthprune ..., or unset WORLD_SIZE")
        _int_var("MASTER_PORT", 0, 1)
    return rank, world


def check_cache_dir() -> None:
    """The cache root (TRUTHPRUNE_CACHE, else XDG_CACHE_HOME/truthprune) must be a directory, or creatable."""
    raw = os.environ.get("TRUTHPRUNE_CACHE")
    name = "TRUTHPRUNE_CACHE"
    if raw is None:
        xdg = os.environ.get("XDG_CACHE_HOME")
        if not xdg:
            return
        raw, name = os.path.join(xdg, "truthprune"), "XDG_CACHE_HOME"
    if not raw.strip():
        raise UserError("environment variable TRUTHPRUNE_CACHE is empty; unset it or set it to a directory")
    p = Path(raw).expanduser()
    ancestor = p
    while not ancestor.exists() and ancestor.parent != ancestor:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        what = "is a file" if ancestor == p else f"lies under the file {str(ancestor)!r}"
        raise UserError(f"the cache directory {raw!r} (from {name}) {what}, not a directory; point {name} at a "
                        "directory (or unset it)")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"the cache directory {raw!r} (from {name}): {str(ancestor)!r} is not writable; point "
                        f"{name} at a writable directory")


def check_environment(command: str | None) -> None:
    """Every check that applies to ``command`` (the first CLI word)."""
    if command in HEAVY_COMMANDS:
        check_distributed()
        check_cache_dir()


def environment_versions() -> dict[str, str]:
    """Versions of truthprune and the libraries its results depend on (recorded in every checkpoint)."""
    from importlib import metadata

    out = {}
    for dist in ("truthprune", "torch", "transformers", "datasets", "scikit-learn", "pydantic", "compressed-tensors"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out
