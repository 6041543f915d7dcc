"""``truthprune allocate``: per-layer sparsities from saved layer statistics, without a model.

Why: allocations are cheap pure functions of per-layer signals (OWL outlier ratios, truth
separation ratios). Running them from a JSON file lets users inspect or compare allocators,
and reproduce the reference's published vectors, in milliseconds and without torch.

The file has the layout of one model's ``inputs`` object in the reference vectors: the per-layer
signals the installed allocators declare (``SparsityAllocator.layer_signals``, e.g. OWL's outlier
ratios) as lists [L], ``separation_ratio`` {dataset: [L]} (core's truth profile), the number
options they declare (``file_options``, e.g. ``lambda``) and ``target_sparsity``. Core names no
allocator: which keys mean what comes from the allocators, and so do the shortcut flags
(``option_flags``, e.g. ``--tplo-pivot``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from ..errors import UserError
from .app import app

SEPARATION_KEY = "separation_ratio"
TARGET_KEY = "target_sparsity"


def declared_keys() -> tuple[list[str], list[str]]:
    """(per-layer signal keys, number option keys) that the installed allocators declare."""
    from ..plugin.registry import get_registry

    reg = get_registry()
    classes = [reg.get("allocator", n) for n in reg.names("allocator")]
    signals = sorted({k for c in classes for k in getattr(c, "layer_signals", ())})
    numbers = sorted({k for c in classes for k in dict(getattr(c, "file_options", {}) or {})})
    return signals, numbers


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _number_list(path: Path, key: str, value: Any) -> list[float]:
    if not isinstance(value, list) or not value or not all(_is_number(v) for v in value):
        raise UserError(f"{path}: {key!r} must be a non-empty list of finite numbers (one per layer)")
    return [float(v) for v in value]


def read_stats_file(path: Path) -> dict[str, Any]:
    """Load and type-check the statistics file; every problem is a one-line UserError."""
    from ..textio import parse_json, read_text_file

    text = read_text_file(path, "stats file", "pass --stats FILE.json", max_bytes=100_000_000)
    data = parse_json(text, str(path), "stats file")
    signals, numbers = declared_keys()
    layer_keys = " or ".join(repr(k) for k in [*signals, SEPARATION_KEY])
    if not isinstance(data, dict):
        raise UserError(f"stats file {path} must hold a JSON object with {layer_keys}")
    if not any(k in data for k in [*signals, SEPARATION_KEY]):
        hint = " (it looks like a whole vectors file: pass one model's 'inputs' object)" if any(
            isinstance(v, dict) and "inputs" in v for v in data.values()
        ) else ""
        raise UserError(f"stats file {path} has neither {layer_keys}{hint}")
    out: dict[str, Any] = {}
    for key in signals:
        if key in data:
            out[key] = _number_list(path, key, data[key])
    if SEPARATION_KEY in data:
        sep = data[SEPARATION_KEY]
        if not isinstance(sep, dict) or not sep:
            raise UserError(f"{path}: {SEPARATION_KEY!r} must be an object {{dataset: [ratio per layer]}}")
        out[SEPARATION_KEY] = {str(k): _number_list(path, f"{SEPARATION_KEY}.{k}", v) for k, v in sep.items()}
    for key in (*numbers, TARGET_KEY):
        if key in data:
            if not _is_number(data[key]):
                raise UserError(f"{path}: {key!r} must be a number, got {data[key]!r}")
            out[key] = data[key]
    return out


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--allocator-opt {text!r} must look like KEY=VALUE, e.g. --allocator-opt outlier_weight=0.3")
    from ..textio import option_value

    return key.strip(), option_value(raw, f"--allocator-opt {key.strip()}")


def allocate_from_stats(
    allocator: str,
    stats: dict[str, Any],
    sparsity: float | None = None,
    flags: dict[str, str] | None = None,
    options: list[str] | None = None,
) -> tuple[list[float], list[float] | None, Any]:
    """Run a registered allocator on file statistics: (sparsities, truth profile, allocator).

    ``flags``: values of the allocators' shortcut flags by flag name (``{"tplo-pivot": "auto"}``)."""
    from ..plugin.contracts import check_allocation
    from ..plugin.interfaces import LayerInfo
    from ..plugin.registry import get_registry
    from ..truth.separation import truth_profile

    cls = get_registry().get("allocator", allocator)
    fields = cls.Config.model_fields
    target = sparsity if sparsity is not None else stats.get(TARGET_KEY)
    if target is None:
        raise UserError(f"no target sparsity: pass --sparsity (the stats file has no {TARGET_KEY!r})")
    if not 0.0 <= float(target) < 1.0:
        raise UserError(f"sparsity {target} is outside [0, 1); pass e.g. --sparsity 0.5")

    opts = {field: stats[key] for key, field in dict(cls.file_options).items() if key in stats and field in fields}
    declared = get_registry().allocator_flags()
    for flag, raw in (flags or {}).items():
        if raw is None:
            continue
        field = declared[flag][0]
        if field not in fields:
            raise UserError(f"allocator {allocator!r} has no {field} option; drop --{flag}")
        opts[field] = _parse_option(f"{field}={raw}")[1]
    opts.update(dict(_parse_option(o) for o in options or []))

    signals = {k: stats[k] for k in declared_keys()[0] if k in stats}
    profile = truth_profile(stats[SEPARATION_KEY]) if SEPARATION_KEY in stats else None
    lengths = {k: len(v) for k, v in (*signals.items(), (SEPARATION_KEY, profile)) if v is not None}
    if len(set(lengths.values())) > 1:
        raise UserError(f"layer counts disagree in the stats file: {lengths}; give one value per decoder layer")
    num_layers = next(iter(lengths.values()))
    if cls.needs_truth_profile and profile is None:
        raise UserError(f"allocator {allocator!r} needs the truth profile: add {SEPARATION_KEY!r} to the stats file")
    if cls.needs_dense_pass and not any(k in signals for k in cls.layer_signals):
        if not cls.layer_signals:
            raise UserError(f"allocator {allocator!r} measures its statistics in a dense pass over a model; it cannot "
                            "allocate from a stats file (use truthprune run)")
        wanted = " or ".join(repr(k) for k in cls.layer_signals)
        raise UserError(f"allocator {allocator!r} needs layer statistics: add {wanted} to the stats file")

    instance = get_registry().create("allocator", allocator, opts)
    info = LayerInfo(num_layers=num_layers, params_per_layer=[1] * num_layers, truth_profile=profile, extras=dict(signals))
    sparsities = check_allocation(instance, instance.allocate(float(target), info), num_layers)
    return sparsities, profile, instance


def _with_allocator_flags(func):
    """Add the installed allocators' shortcut flags (``--tplo-pivot`` ...) to the command; they
    arrive in ``flags`` by flag name."""
    import functools
    import inspect

    from .run_cmd import allocator_flag_params, allocator_flags

    names = allocator_flags()
    fixed = list(inspect.signature(func).parameters.values())[:-1]  # all but the last, ``flags``

    @functools.wraps(func)
    def wrapper(**kwargs):
        flags = {names[p][0]: kwargs.pop(p) for p in names}
        return func(**kwargs, flags=flags)

    wrapper.__signature__ = inspect.Signature([*fixed, *allocator_flag_params()])
    return wrapper


@app.command("allocate")
@_with_allocator_flags
def allocate_command(
    allocator: str = typer.Option(..., "--allocator", "-a", help="Registered allocator (see `truthprune plugins`)."),
    stats_file: Path = typer.Option(..., "--stats", help="JSON with the allocator's per-layer statistics (e.g. outlier ratios) and/or separation_ratio."),
    sparsity: float | None = typer.Option(None, "--sparsity", "-s", help="Target sparsity (default: the file's target_sparsity)."),
    option: list[str] = typer.Option([], "--allocator-opt", help="Allocator option KEY=VALUE (repeatable), as in run."),
    old_option: list[str] = typer.Option([], "--option", "-o", hidden=True, help="The old name of --allocator-opt."),
    as_json: bool = typer.Option(False, "--json", help='Print {"sparsity": [...], "truth_profile": [...]} only.'),
    flags: dict[str, Any] | None = None,  # the allocators' shortcut flags, added by _with_allocator_flags
) -> None:
    """Per-layer sparsities from saved layer statistics (no model, no torch)."""
    stats = read_stats_file(stats_file)
    sparsities, profile, instance = allocate_from_stats(allocator, stats, sparsity, flags, [*option, *old_option])
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
