"""What a run has computed so far: :class:`RunState`, the one value every stage reads and returns,
and its :class:`RunPlan` (the validated plugins and options, made by :func:`truthprune.run.pipeline.plan_run`).

Why a typed state instead of a dict on the plan: each field says which stage fills it and which
stages read it, so following a run means reading :data:`truthprune.run.pipeline.STAGES` top to
bottom; nothing is left as a placeholder to be filled in by a later stage. The state is frozen:
a stage returns a new state (``state.but(field=value)``) instead of mutating the one it got.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

log = logging.getLogger("truthprune.run")

if TYPE_CHECKING:  # torch-heavy types: only for annotations
    import numpy as np

    from ..models.loading import LoadedModel
    from ..models.spec import ModelRef
    from ..plugin.interfaces import CalibrationSamples
    from ..pruning.engine.steps import PruneReport
    from ..pruning.quantization import QuantizedLinears
    from ..truth.datasets import StatementSet
    from .config import RunConfig


@dataclass(frozen=True)
class TruthSets:
    """The true/false statement sets of a run (loaded or generated once) and where they came from.

    ``sets`` are whole (the truth profile an allocator reads is computed on them); ``probe_sets``
    are the probes' statement budget (``--truth-max-per-set``), ``probe_rows`` the rows of each
    whole set they kept, so activations of a whole set can be sliced instead of recomputed."""

    sets: list[StatementSet]
    description: str
    probe_sets: list[StatementSet] | None = None  # None: the whole sets
    probe_rows: dict[str, Any] | None = None  # set name -> row indices into the whole set

    @property
    def probed(self) -> list[StatementSet]:
        return self.sets if self.probe_sets is None else self.probe_sets


@dataclass(frozen=True)
class TruthProfile:
    """The dense model's normalised per-layer truth separation (for allocators that ask for it)."""

    values: list[float]
    sets: list[str]  # the statement sets it was computed on


@dataclass
class StageLog:
    """What one execution of the stages did: seconds per stage and what each used (report.json's
    "timings" and "stages"). Only :func:`truthprune.run.pipeline.execute` writes it; the report holds
    these same objects, so a stage that runs after the report is built (save) still lands in it."""

    timings: dict[str, float] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str, lines: Any = None, **used: Any):
        """Time stage ``name`` (``lines``: the StageLine that shows it running, truthprune.progress)."""
        log.info("stage %s: %s", name, ", ".join(f"{k}={v}" for k, v in used.items()) or "-")
        t0 = time.perf_counter()
        with lines.running(name) if lines is not None else nullcontext():
            yield
        dt = time.perf_counter() - t0
        self.timings[name] = round(dt, 3)
        self.stages.append({"stage": name, "seconds": round(dt, 3), **{k: str(v) for k, v in used.items()}})
        log.info("stage %s done in %.1f s", name, dt)


@dataclass(frozen=True)
class RunState:
    """Everything a run has produced so far. Stages fill fields in this order (pipeline.STAGES)."""

    plan: RunPlan
    load: Callable[[Any], LoadedModel] | None = None  # replaces the load stage (a sweep's shared model)
    log: StageLog = field(default_factory=StageLog)  # the stage log (execute only)
    auxiliary: dict[str, CalibrationSamples] | None = None  # check-memory: the pruner's streams (calibrate reuses them)
    loaded: LoadedModel | None = None  # load
    dense: dict[str, Any] = field(default_factory=dict)  # dense-eval (+ dense-vs-pruned: "probe")
    truth_sets: TruthSets | None = None  # dense-truth / truth-profile, whichever runs first
    dense_acts: dict[str, np.ndarray] | None = None  # dense-truth: activations per probed statement set
    dense_whole_acts: dict[str, np.ndarray] | None = None  # dense-truth: whole sets the truth profile also needs
    truth_profile: TruthProfile | None = None  # truth-profile
    calibration: CalibrationSamples | None = None  # calibrate
    pruning: PruneReport | None = None  # prune
    quantized: QuantizedLinears | None = None  # prune, with --quantizer: the codes --save writes
    pruned: dict[str, Any] = field(default_factory=dict)  # pruned-eval (+ dense-vs-pruned: "probe")
    truthfulness_items: tuple[Any, Any] | None = None  # --eval truthfulness: (items, notes), loaded once
    lm_eval_failed: dict[str, str] = field(default_factory=dict)  # task -> reason; not retried after the dense model
    report: dict[str, Any] | None = None  # report (+ save: "saved_model")
    out: Path | None = None  # write-report: the report directory

    def but(self, **changes: Any) -> RunState:
        """A copy with ``changes`` applied (the state itself is never mutated)."""
        return dataclasses.replace(self, **changes)

    @property
    def profile_values(self) -> list[float] | None:
        return None if self.truth_profile is None else self.truth_profile.values




@dataclass(frozen=True)
class RunPlan:
    """The validated plugins of a run, created before anything heavy happens. Frozen: a command
    that refines it (prune's device, --offload) makes a new one with ``dataclasses.replace``."""

    config: RunConfig
    pruner: Any
    kind: Any  # the pruner's kind (truthprune.run.kinds): its plan check and its prune step
    allocator: Any
    sources: list[Any]
    model_ref: ModelRef  # --model resolved once, at plan time (truthprune.models.spec)
    writes_report: bool = True  # run: evaluate and write --out; prune: neither (only --save)
    truth_sets: TruthSets | None = None  # loaded at plan time when the probe or the allocator needs them
    lm_eval_skipped: dict[str, str] | None = None  # {"skipped": reason} when --lm-eval-tasks cannot run at all
    quantizer: Any | None = None  # applied by the engine right after the pruner, per linear
    device: str | None = None  # prune: the device resolved before loading (torchrun: one per rank)
    activations_dir: str | None = None  # prune --activations-dir: layer activations memory-mapped from files
    offload: bool = False  # prune --offload: the weights stay on disk, one layer in memory (truthprune.run.offload)
    check_memory: bool = True  # refuse before loading when the model + activations will not fit (a huge --nsamples)
    estimates: dict[str, float] = field(default_factory=dict)  # stage -> rough seconds (truthprune.run.estimate)
