"""Entries of truthprune's result caches (perplexities, activations, importance scores...).

Why one reader: a cache entry cut short (a full disk, a crash of another process, a copy
interrupted) used to crash every later run until someone found and deleted the file. Every
cache read goes through :func:`read_cache_entry`: an entry that does not read back is removed
with one warning and the caller recomputes it (and writes it again, atomically).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def read_cache_entry(path: str | Path, reader: Callable[[Path], T], what: str = "cache entry") -> T | None:
    """``reader(path)``, or None (recompute) when ``path`` is absent or does not read back; a damaged
    entry is removed with a warning. ``reader`` raises on damage (any exception but an interrupt)."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        return reader(p)
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except Exception as err:  # noqa: BLE001 - truncated JSON, a short .npy or .pt: all mean "damaged"
        log.warning("discarded the damaged %s %s (%s: %s); it is recomputed", what, p, type(err).__name__,
                    (str(err).splitlines() or [""])[0][:120])
        try:
            p.unlink()
        except OSError:
            pass
        return None


def read_json_entry(path: Path) -> Any:
    import json

    return json.loads(path.read_text(encoding="utf-8"))
