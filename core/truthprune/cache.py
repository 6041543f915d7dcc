"""truthprune's caches: where they live, and their entries (perplexities, activations, importance
scores, converted models...).

Foundation layer: the model loader, the activation extractor, the evaluations and the run stages
all cache through this module, so none of them imports another for it.

Why one reader: a cache entry cut short (a full disk, a crash of another process, a copy
interrupted) used to crash every later run until someone found and deleted the file. Every
cache read goes through :func:`read_cache_entry`: an entry that does not read back is removed
with one warning and the caller recomputes it (and writes it again, atomically).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def cache_root() -> Path:
    """``TRUTHPRUNE_CACHE`` or the platform user cache (``$XDG_CACHE_HOME/truthprune``)."""
    env = os.environ.get("TRUTHPRUNE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "truthprune"


def file_key(path: Path) -> str:
    """A short key for one version of a file (its path, size and modification time)."""
    st = path.stat()
    return hashlib.sha256(f"{path}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:16]


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
    return json.loads(path.read_text(encoding="utf-8"))


def cached_json(kind: str, key: dict[str, Any], compute: Callable[[], Any]) -> Any:
    """The cached JSON result of ``kind`` for ``key``, or ``compute()``, stored (atomically) and returned."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    path = cache_root() / "results" / kind / f"{digest}.json"
    cached = read_cache_entry(path, read_json_entry, f"cached {kind} result")
    if cached is not None:
        log.info("%s: using cached result %s", kind, path)
        return cached
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")  # per process: parallel runs share the cache
    tmp.write_text(json.dumps(value, default=str))
    tmp.replace(path)
    return value
