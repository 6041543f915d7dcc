"""Plan-time checks of a ``run``/``prune``/``sweep`` configuration that plugins cannot make.

Why a module of its own: each of these used to fail only after the work (a misaligned negated
twin after ten minutes of extraction, ``--out existing_file/sub`` after the evaluation) or with
a traceback (``[calibration_options] text = 5``, a corrupt checkpoint). :func:`check_run_config`
runs first in :func:`truthprune.run.pipeline.plan_run`; :func:`claim_run_outputs` runs last, so
nothing is locked or created for a plan that fails.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..environment import check_distributed
from ..eval.hub import hub_reachable
from ..eval.perplexity import eval_text
from ..eval.truthfulqa import load_truthfulqa, read_truthfulqa_csv
from ..models.context import check_seqlen
from ..models.spec import ModelRef, model_ref
from ..models.formats import check_model_spec
from ..models.spec import model_input_paths
from ..outputs.atomic import check_disjoint, check_target, declare_inputs, prepare_output, resolve_target
from ..outputs.targets import contains


def check_calibration_options(config: Any) -> None:
    """``[calibration_options.<source>]`` must be a table for every source named."""
    opts = config.calibration_options
    for name in config.calibration:
        if name in opts and not isinstance(opts[name], dict):
            raise UserError(
                f"calibration_options.{name} = {opts[name]!r}: options of the source {name!r} must be a table, "
                f"e.g. [calibration_options.{name}] path = \"FILE\" (or --calibration-opt {name}.path=FILE)"
            )


def check_run_config(config: Any) -> ModelRef:
    """Config-shape and model checks; nothing is loaded, locked or created. Returns the model
    reference the plan carries from here on."""
    check_calibration_options(config)
    check_distributed()
    check_seed(config.seed)
    check_device(config.device)
    check_model_spec(config.model, allow_pickle=bool(getattr(config, "allow_pickle", False)))
    ref = model_ref(config.model)
    check_seqlen(config.seqlen, ref.context)
    check_eval_data(config)
    return ref


def check_seed(seed: int) -> None:
    """numpy and torch seeds are unsigned 32-bit: a larger or negative one failed after the plan."""
    if not 0 <= int(seed) < 2**32:
        raise UserError(f"--seed {seed} must be between 0 and {2**32 - 1}")


def check_device(device: str) -> None:
    """The form of --device now (whether CUDA is there is known only once torch is imported)."""
    import re

    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(device)):
        raise UserError(f"--device {device!r} is not one of auto, cpu, cuda, cuda:N")


def check_context(model: str, seqlen: int) -> None:
    """--seqlen against the model's context, from its config.json when readable before it loads
    (the commands that plan no run: eval, probe)."""
    check_seqlen(seqlen, model_ref(model).context)


def check_eval_data(config: Any) -> None:
    """Read the user's evaluation data now (perplexity text, TruthfulQA), not after the prune. A hub
    data set is read now only when the hub cannot be reached (then it must come from the cache, or
    it fails at once with the flag that points at a local copy)."""
    hub_data = ("ppl" in config.eval and config.ppl_data == "wikitext2") or (
        "truthfulqa" in config.eval and config.truthfulqa_data in (None, "hub"))
    offline = hub_data and not hub_reachable()  # then the (cached) hub data is read now, or fails now
    if "ppl" in config.eval and (config.ppl_data not in ("pydoc", "wikitext2") or (offline and config.ppl_data == "wikitext2")):
        eval_text(config.ppl_data)
    if "truthfulqa" in config.eval:
        if config.truthfulqa_data in (None, "hub"):
            if offline:
                load_truthfulqa("hub", fix="pass --truthfulqa-data PATH/TO/TruthfulQA.csv")
        else:
            read_truthfulqa_csv(config.truthfulqa_data)


def check_truth_sets(config: Any, allocator: Any) -> Any | None:
    """Load the statement sets a run will use, so their errors (and skipped pairs) show now; the
    plan keeps them (:class:`truthprune.run.state.TruthSets`), so the run does not load them again."""
    if "probe" not in config.eval and not getattr(allocator, "needs_truth_profile", False):
        return None
    from ..truth.probing.runner import load_truth_sets
    from .truth_stages import budgeted

    return budgeted(config, *load_truth_sets(config.truth_data, config.truth_datasets, seed=config.seed))


def run_inputs(config: Any) -> list[tuple[str, str]]:
    """(flag, path) of every local input of a run: the model (for an embedded or .gguf model also
    its converted copy in the cache), calibration files, evaluation data, truth statements."""
    found = [*model_input_paths(config.model), ("--ppl-data", config.ppl_data),
             ("--truthfulqa-data", config.truthfulqa_data), ("--truth-data", config.truth_data)]
    for key, value in config.calibration_options.items():
        for k, v in (value.items() if isinstance(value, dict) else [(key, value)]):
            if isinstance(v, str):
                found.append((f"--calibration-opt {k}", v))
    return [(flag, str(p)) for flag, p in found if isinstance(p, str) and p and os.path.lexists(p)]


def check_inputs_survive(target: Any, flag: str, inputs: list[tuple[str, str]]) -> None:
    """An output may not be, or contain, one of the run's inputs: writing it (with --overwrite) would
    delete the model or the data the run is reading, e.g. --save pointing at the --model directory.
    Paths are compared resolved and by inode (:func:`truthprune.outputs.targets.contains`)."""
    declare_inputs(inputs)
    out = resolve_target(target, flag)
    for in_flag, path in inputs:
        if contains(out, path):
            inside = "" if contains(path, out) else " (it lies inside)"
            raise UserError(f"{flag} {str(out)!r} would replace {in_flag} {path!r}{inside}, an input of this command; "
                            "write the output somewhere else")


def _rank() -> int:
    try:
        return int(os.environ.get("RANK", "0") or 0)
    except ValueError:
        return 0


def claim_run_outputs(config: Any, report: bool = True, claim: bool = True) -> list[Path]:
    """--out/--save: disjoint, writable, locked (rank 0 only under torchrun); ``claim`` False
    (--dry-run) checks the same without locking or creating anything."""
    wait = bool(getattr(config, "wait", False))
    targets = []
    if report:
        check_disjoint(config.out, "--out", config.save, "--save")
        targets.append((config.out, "--out"))
    if config.save:
        targets.append((config.save, "--save"))
    for target, flag in targets:
        check_inputs_survive(target, flag, run_inputs(config))
    if _rank() > 0 or not claim:  # only rank 0 writes; the others (and a dry run) check and move on
        for target, flag in targets:
            check_target(target, config.overwrite, what=flag)
        return []
    claimed: list[Path] = []
    for target, flag in targets:
        claimed.append(prepare_output(target, config.overwrite, wait=wait, what=flag))
    return claimed
