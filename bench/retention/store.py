"""Result files of the retention benchmark: atomic writes and identity checks (resumability).

Every result file carries an ``identity`` (the settings that determine it) and its hash. A
rerun reuses a file only when the hash matches the current settings; otherwise the point is
recomputed and the file replaced. A write goes to a temporary file in the same directory and is
renamed into place, so an interrupted run never leaves a half-written result.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any


def identity_hash(identity: Any) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json(path: str | Path, obj: Any) -> None:
    _atomic_bytes(Path(path), (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())


def write_pickle(path: str | Path, obj: Any) -> None:
    _atomic_bytes(Path(path), pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def read_pickle(path: str | Path) -> Any:
    """The pickled object, or None when it cannot be read back (a pickle names the modules of its
    classes, so one written before a module moved no longer loads): the caller recomputes it."""
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except (OSError, EOFError, pickle.UnpicklingError, ImportError, AttributeError):
        return None


def load_matching(path: str | Path, identity: Any) -> dict | None:
    """The stored result at ``path`` when its identity hash matches ``identity``, else None."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        obj = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return obj if obj.get("identity_hash") == identity_hash(identity) else None


def point_name(label: str, setting: dict) -> str:
    """File-system name of one (method, sparsity or N:M) point: ``wanda@0.5``, ``ours+tplo@2-4``."""
    tag = setting["nm"].replace(":", "-") if setting.get("nm") else f"{setting['sparsity']:g}"
    return re.sub(r"[^A-Za-z0-9_.+@-]", "_", f"{label}@{tag}")


__all__ = ["identity_hash", "write_json", "write_pickle", "read_pickle", "load_matching", "point_name"]
