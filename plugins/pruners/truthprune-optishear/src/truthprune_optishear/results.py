"""Reading an OptiShear result for the pruner and the allocator (torch-free: runs at plan time).

Two layouts are accepted: a search state written by ``truthprune optishear search`` (its
``best`` candidate and top-level ``optishear_sparsity``), and, for the allocator, the output of
``truthprune allocate --json`` (``{"sparsity": [...]}``), so any allocator's ratios can be reused.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

SPARSITY_KEY = "optishear_sparsity"


def _load(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{path} does not exist; pass the --state file of `truthprune optishear search`")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a JSON file ({type(err).__name__})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


def read_metric(path: str) -> tuple[float, float]:
    """(beta, gamma) of the best candidate of a finished search."""
    data = _load(path)
    best = data.get("best")
    if not data.get("done") or not isinstance(best, dict) or not {"beta", "gamma"} <= set(best):
        raise ValueError(f"{path} holds no finished OptiShear search (no 'best' metric); finish or resume the search first")
    beta, gamma = best["beta"], best["gamma"]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in (beta, gamma)):
        raise ValueError(f"{path}: best beta/gamma must be finite non-negative numbers, got {beta!r}, {gamma!r}")
    return float(beta), float(gamma)


def read_sparsities(path: str) -> list[float]:
    """Per-layer sparsities: ``optishear_sparsity`` of a search, or ``sparsity`` of `truthprune allocate --json`."""
    data = _load(path)
    values = data.get(SPARSITY_KEY, data.get("sparsity"))
    if values is None:
        raise ValueError(f"{path} has neither {SPARSITY_KEY!r} (a finished search with --knots > 0) nor 'sparsity' "
                         "(truthprune allocate --json)")
    if not isinstance(values, list) or not values or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v < 1 for v in values):
        raise ValueError(f"{path}: per-layer sparsities must be a non-empty list of numbers in [0, 1)")
    return [float(v) for v in values]
