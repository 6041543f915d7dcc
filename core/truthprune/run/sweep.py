"""``truthprune sweep``: a grid of pruners x sparsities in one process, then a comparison.

Why one process: the model is loaded once and its dense weights are restored from an in-memory
copy before each run (instead of reloading from disk), and the dense baselines (perplexity,
probe activations) are cached on disk by the weights' fingerprint, so every run after the first
reuses them.

Every grid point is validated (plugin names, options, output paths) before the first run starts,
so a typo in the last pruner name fails in a second, not after an hour. Each run is written
atomically into ``OUT/<pruner>-<sparsity>/``; an interrupted sweep therefore leaves only finished
runs, and rerunning the same command reuses them (same config) and runs the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import RunConfig
from ..errors import UserError
from . import stages as run_stages
from ..outputs.atomic import check_target
from ..outputs.markers import MARKER, read_marker, replace_refusal, write_marker
from ..progress import say
from ..reporting.compare import load_runs, write_comparison
from ..reporting.report import load_report

log = logging.getLogger("truthprune.sweep")

# config keys that do not change a run's results: a finished run differing only in these is reused
_NOT_RESULTS = ("out", "save", "overwrite", "quiet", "wait", "allow_pickle")


def split_list(text: str | None, flag: str) -> list[str] | None:
    """'a,b, c' -> ['a', 'b', 'c']; None stays None (the flag was not given)."""
    if text is None:
        return None
    items = [x.strip() for x in text.split(",")]
    if not items or any(not x for x in items):
        raise UserError(f"{flag} {text!r} has an empty item; give a comma-separated list such as {flag} a,b")
    dupes = sorted({x for x in items if items.count(x) > 1})
    if dupes:
        raise UserError(f"{flag} lists {dupes[0]!r} twice; give each value once")
    return items


def parse_sparsities(text: str | None) -> list[float] | None:
    items = split_list(text, "--sparsity")
    if items is None:
        return None
    out = []
    for item in items:
        try:
            out.append(float(item))
        except ValueError:
            raise UserError(f"--sparsity {item!r} is not a number; give fractions such as --sparsity 0.3,0.5,0.7") from None
    return out


def point_name(pruner: str, sparsity: float) -> str:
    """Directory name of a grid point: ``wanda-0.5``."""
    return f"{pruner}-{sparsity:g}"


def comparable_config(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in _NOT_RESULTS}


@dataclass
class GridPoint:
    name: str
    config: RunConfig
    plan: Any  # run.pipeline.RunPlan
    reuse: bool  # a finished run with the same config is already there

    @property
    def out(self) -> Path:
        return Path(self.config.out)


def _finished_with_same_config(cfg: RunConfig) -> bool:
    import json

    if not (Path(cfg.out) / "report.json").is_file():
        return False
    try:
        old = load_report(cfg.out)["config"]
    except UserError:
        return False
    new = json.loads(json.dumps(cfg.model_dump(), default=str))
    return comparable_config(old) == comparable_config(new)


def plan_sweep(make_config: Callable[[dict[str, Any]], RunConfig], pruners: list[str], sparsities: list[float],
               out: str, save: str | None, overwrite: bool, dry_run: bool = False) -> list[GridPoint]:
    """Build and validate every grid point (no model is loaded). ``make_config(overrides)`` builds a RunConfig;
    ``dry_run`` checks the outputs without locking them."""
    from .pipeline import plan_run

    check_target(Path(out) / "compare", True, what="--out")  # rewritten at the end: a foreign compare/ fails now
    names = [point_name(p, s) for p in pruners for s in sparsities]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise UserError(f"two grid points share the directory {clash[0]!r} (sparsities equal when rounded); give distinct values")
    points = []
    for pruner in pruners:
        for sparsity in sparsities:
            name = point_name(pruner, sparsity)
            overrides = {"pruner": pruner, "sparsity": sparsity, "out": str(Path(out) / name), "overwrite": overwrite}
            if save is not None:
                overrides["save"] = str(Path(save) / name)
            cfg = make_config(overrides)
            reuse = not overwrite and _finished_with_same_config(cfg) and (cfg.save is None or Path(cfg.save).is_dir())
            if not reuse and Path(cfg.out).exists() and not overwrite:
                raise UserError(f"{cfg.out!r} holds a run with other settings; pass --overwrite to redo it or choose another --out")
            # a reused point is still planned, so its names and options are validated like the rest
            plan = plan_run(cfg.model_copy(update={"overwrite": True}) if reuse else cfg, dry_run=dry_run)
            points.append(GridPoint(name, cfg, plan, reuse))
    return points


class SharedModel:
    """Load the model once; before each run restore its dense weights from a CPU copy.

    Restoring copies the exact same bytes, so each run starts from the weights a fresh load
    would give (and the same fingerprint, so the dense caches hit).
    """

    def __init__(self) -> None:
        self.loaded: Any = None
        self._key: tuple | None = None
        self._dense: dict[str, Any] | None = None

    @staticmethod
    def _load_key(cfg: RunConfig) -> tuple:
        return cfg.model, cfg.device, cfg.dtype, cfg.trust_remote_code

    def __call__(self, cfg: RunConfig):
        if self.loaded is None:
            self.loaded = run_stages.load(cfg)
            self._key = self._load_key(cfg)
            self._dense = {k: v.detach().to("cpu", copy=True) for k, v in self.loaded.model.state_dict().items()}
            return self.loaded
        if self._load_key(cfg) != self._key:
            raise RuntimeError(f"a sweep shares one model, but a run asked for {self._load_key(cfg)} after {self._key}")
        self.loaded.model.load_state_dict(self._dense)
        self.loaded.invalidate_fingerprint()
        return self.loaded


def run_sweep(points: list[GridPoint], compare_out: str | Path) -> Path:
    """Run every grid point that is not already finished, then write the comparison."""
    from .pipeline import execute

    shared = SharedModel()
    for k, point in enumerate(points, 1):
        quiet = point.plan.config.quiet
        if point.reuse:
            log.info("[%d/%d] %s: reusing the finished run in %s", k, len(points), point.name, point.out)
            say(f"sweep {k}/{len(points)}: {point.name}: reusing the finished run in {point.out} (same config; --overwrite "
                "redoes it)", quiet=quiet)
            continue
        log.info("[%d/%d] %s -> %s", k, len(points), point.name, point.out)
        say(f"sweep {k}/{len(points)}: {point.name} -> {point.out}", quiet=quiet)
        execute(point.plan, load=shared)
    runs = load_runs([p.out for p in points])
    return write_comparison(runs, compare_out, overwrite=True)


def mark_sweep(out: str | Path) -> None:
    """Mark the sweep directory as a truthprune output (kind ``sweep``) when everything in it is one
    (its runs and its comparison): a directory that also holds other files stays unmarked, so
    ``--overwrite`` elsewhere can never replace those."""
    d = Path(out)
    entries = [e for e in d.iterdir() if e.name != MARKER]
    if read_marker(d) is None and all(e.is_dir() and not e.is_symlink() and replace_refusal(e) is None for e in entries):
        write_marker(d, "sweep", files=[])
