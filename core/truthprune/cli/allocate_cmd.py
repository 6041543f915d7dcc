"""``truthprune allocate``: per-layer sparsities from saved layer statistics, without a model.

Why: allocations are cheap pure functions of per-layer signals (OWL outlier ratios, truth
separation ratios). Running them from a JSON file lets users inspect or compare allocators,
and reproduce the reference's published vectors, in milliseconds and without torch.

The file has the layout of one model's ``inputs`` object in the reference vectors:
``outlier_ratio_percent`` [L], ``separation_ratio`` {dataset: [L]}, and optional
hyper-parameters ``lambda``, ``M``, ``swl_scaling``, ``tplo_pivot``, ``target_sparsity``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from ..errors import UserError
from .main import app

# file key -> allocator Config field it feeds (only used when the allocator declares the field)
FILE_OPTION_FIELDS = {"lambda": "lam", "M": "m", "swl_scaling": "c", "tplo_pivot": "pivot"}
OUTLIER_KEY = "outlier_ratio_percent"
SEPARATION_KEY = "separation_ratio"
TARGET_KEY = "target_sparsity"


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _number_list(path: Path, key: str, value: Any) -> list[float]:
    if not isinstance(value, list) or not value or not all(_is_number(v) for v in value):
        raise UserError(f"{path}: {key!r} must be a non-empty list of finite numbers (one per layer)")
    return [float(v) for v in value]


def read_stats_file(path: Path) -> dict[str, Any]:
    """Load and type-check the statistics file; every problem is a one-line UserError."""
    from ..textio import read_text_file

    text = read_text_file(path, "stats file", "pass --stats FILE.json", max_bytes=100_000_000)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"stats file {path} is not valid JSON ({err.msg} at line {err.lineno})") from None
    except RecursionError:
        raise UserError(f"stats file {path} is nested too deeply to be a statistics file") from None
    if not isinstance(data, dict):
        raise UserError(f"stats file {path} must hold a JSON object with {OUTLIER_KEY!r} and/or {SEPARATION_KEY!r}")
    if OUTLIER_KEY not in data and SEPARATION_KEY not in data:
        hint = " (it looks like a whole vectors file: pass one model's 'inputs' object)" if any(
            isinstance(v, dict) and "inputs" in v for v in data.values()
        ) else ""
        raise UserError(f"stats file {path} has neither {OUTLIER_KEY!r} nor {SEPARATION_KEY!r}{hint}")
    out: dict[str, Any] = {}
    if OUTLIER_KEY in data:
        out[OUTLIER_KEY] = _number_list(path, OUTLIER_KEY, data[OUTLIER_KEY])
    if SEPARATION_KEY in data:
        sep = data[SEPARATION_KEY]
        if not isinstance(sep, dict) or not sep:
            raise UserError(f"{path}: {SEPARATION_KEY!r} must be an object {{dataset: [ratio per layer]}}")
        out[SEPARATION_KEY] = {str(k): _number_list(path, f"{SEPARATION_KEY}.{k}", v) for k, v in sep.items()}
    for key in (*FILE_OPTION_FIELDS, TARGET_KEY):
        if key in data:
            if not _is_number(data[key]):
                raise UserError(f"{path}: {key!r} must be a number, got {data[key]!r}")
            out[key] = data[key]
    return out


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--option {text!r} must look like KEY=VALUE, e.g. --option outlier_weight=0.3")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def allocate_from_stats(
    allocator: str,
    stats: dict[str, Any],
    sparsity: float | None = None,
    pivot: str | None = None,
    options: list[str] | None = None,
) -> tuple[list[float], list[float] | None, Any]:
    """Run a registered allocator on file statistics: (sparsities, truth profile, allocator)."""
    from ..interfaces import LayerInfo
    from ..plugins import get_registry
    from ..separation import truth_profile

    cls = get_registry().get("allocator", allocator)
    fields = cls.Config.model_fields
    target = sparsity if sparsity is not None else stats.get(TARGET_KEY)
    if target is None:
        raise UserError(f"no target sparsity: pass --sparsity (the stats file has no {TARGET_KEY!r})")
    if not 0.0 <= float(target) < 1.0:
        raise UserError(f"sparsity {target} is outside [0, 1); pass e.g. --sparsity 0.5")

    opts = {field: stats[key] for key, field in FILE_OPTION_FIELDS.items() if key in stats and field in fields}
    if pivot is not None:
        if "pivot" not in fields:
            raise UserError(f"allocator {allocator!r} has no pivot; drop --tplo-pivot")
        if pivot.strip().lower() == "auto":
            opts["pivot"] = None
        else:
            try:
                opts["pivot"] = int(pivot)
            except ValueError:
                raise UserError(f"--tplo-pivot {pivot!r} must be a layer index or 'auto'") from None
    opts.update(dict(_parse_option(o) for o in options or []))

    ratios = stats.get(OUTLIER_KEY)
    profile = truth_profile(stats[SEPARATION_KEY]) if SEPARATION_KEY in stats else None
    lengths = {k: len(v) for k, v in ((OUTLIER_KEY, ratios), (SEPARATION_KEY, profile)) if v is not None}
    if len(set(lengths.values())) > 1:
        raise UserError(f"layer counts disagree in the stats file: {lengths}; give one value per decoder layer")
    num_layers = next(iter(lengths.values()))
    if cls.needs_truth_profile and profile is None:
        raise UserError(f"allocator {allocator!r} needs the truth profile: add {SEPARATION_KEY!r} to the stats file")
    if cls.needs_dense_pass and ratios is None:
        raise UserError(f"allocator {allocator!r} needs layer statistics: add {OUTLIER_KEY!r} to the stats file")

    instance = get_registry().create("allocator", allocator, opts)
    extras = {OUTLIER_KEY: ratios} if ratios is not None else {}
    info = LayerInfo(num_layers=num_layers, params_per_layer=[1] * num_layers, truth_profile=profile, extras=extras)
    sparsities = [float(s) for s in instance.allocate(float(target), info)]
    if len(sparsities) != num_layers:
        raise UserError(f"allocator {allocator!r} returned {len(sparsities)} sparsities for {num_layers} layers")
    return sparsities, profile, instance


@app.command("allocate")
def allocate_command(
    allocator: str = typer.Option(..., "--allocator", "-a", help="Registered allocator, e.g. owl, swl, tplo, tplo-joint."),
    stats_file: Path = typer.Option(..., "--stats", help="JSON with outlier_ratio_percent and/or separation_ratio."),
    sparsity: float | None = typer.Option(None, "--sparsity", "-s", help="Target sparsity (default: the file's target_sparsity)."),
    tplo_pivot: str | None = typer.Option(None, "--tplo-pivot", help="TPLO pivot layer, or 'auto'; overrides the file's tplo_pivot."),
    option: list[str] = typer.Option([], "--option", "-o", help="Extra allocator option KEY=VALUE (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help='Print {"sparsity": [...], "truth_profile": [...]} only.'),
) -> None:
    """Per-layer sparsities from saved layer statistics (no model, no torch)."""
    stats = read_stats_file(stats_file)
    sparsities, profile, instance = allocate_from_stats(allocator, stats, sparsity, tplo_pivot, option)
    if as_json:
        typer.echo(json.dumps({"sparsity": sparsities, "truth_profile": profile}))
        return
    from rich.console import Console
    from rich.table import Table

    columns: dict[str, list[float]] = {"sparsity": sparsities}
    if profile is not None:
        columns["truth_profile"] = profile
    for key, values in instance.diagnostics().items():
        if len(values) == len(sparsities) and key not in columns:
            columns[key] = values
    mean = sum(sparsities) / len(sparsities)
    caption = f"mean sparsity {mean:.6f}, min {min(sparsities):.4f}, max {max(sparsities):.4f}"
    pivot_used = getattr(instance, "pivot_used", None)
    if pivot_used is not None:
        caption += f", pivot {pivot_used}"
    table = Table(title=f"allocator {allocator!r} on {stats_file.name}", caption=caption)
    table.add_column("layer", justify="right")
    for name in columns:
        table.add_column(name, justify="right")
    for i in range(len(sparsities)):
        table.add_row(str(i), *(f"{columns[name][i]:.6f}" for name in columns))
    Console().print(table)
