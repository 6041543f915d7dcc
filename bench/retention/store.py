"""Result files of the retention benchmark: atomic writes and identity checks (resumability).

Results are JSON; arrays (activations) are safetensors. Never pickles: a pickle names the
modules of the classes it holds and stops loading when core's modules move.

Every result file carries an ``identity`` (the settings that determine it) and its hash. A
rerun reuses a file only when the hash matches the current settings; otherwise the point is
recomputed and the file replaced. A write goes to a temporary file in the same directory and is
renamed into place, so an interrupted run never leaves a half-written result.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np


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


def write_tensors(path: str | Path, arrays: dict[str, np.ndarray], meta: dict[str, str] | None = None) -> None:
    """``arrays`` (name -> numpy array) as one safetensors file, atomically."""
    from safetensors.numpy import save

    _atomic_bytes(Path(path), save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata=meta))


def read_tensors(path: str | Path) -> dict[str, np.ndarray] | None:
    """The arrays of a safetensors file, or None when it is missing or unreadable (recomputed)."""
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (OSError, ValueError, RuntimeError):
        return None


def tensor_meta(path: str | Path) -> dict[str, str]:
    """The metadata of a safetensors file ({} when missing or unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "numpy") as fh:
            return dict(fh.metadata() or {})
    except (OSError, ValueError, RuntimeError):
        return {}


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


def point_name(label: str, setting: dict, prune_seed: int | None = None) -> str:
    """File-system name of one (method, sparsity or N:M, prune seed) point: ``wanda@0.5@p0``, ``ours@2-4@p2``."""
    tag = setting["nm"].replace(":", "-") if setting.get("nm") else f"{setting['sparsity']:g}"
    seed = "" if prune_seed is None else f"@p{prune_seed}"
    return re.sub(r"[^A-Za-z0-9_.+@-]", "_", f"{label}@{tag}{seed}")


__all__ = ["identity_hash", "write_json", "write_tensors", "read_tensors", "tensor_meta", "load_matching", "point_name"]
