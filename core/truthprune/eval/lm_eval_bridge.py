"""Optional EleutherAI lm-evaluation-harness tasks on the in-memory (dense, then pruned) model.

``pip install 'truthprune[lmeval]'`` adds lm-eval; ``truthprune run --lm-eval-tasks arc_easy,...``
then wraps the loaded model and tokenizer in lm-eval's ``HFLM`` (no reload from disk, so the
pruned weights are what gets measured) and calls ``lm_eval.simple_evaluate`` once per requested
task, before and after pruning.

lm-eval not being installed stops the run at plan time (:func:`check`, exit 2 with the install
command). Two ways a task can still not happen, neither of which stops a run:

* a task cannot be loaded (typically its data set is on the Hugging Face hub and there is no
  network): one warning line, the task is recorded under ``skipped`` and not retried for the
  pruned model;
* a task fails while evaluating: the same, with the error's first line.

Unknown task names and missing ``--lm-eval-include`` directories are user errors and fail at plan
time, before the model is loaded. lm-eval is imported only inside these functions.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import logging
import math
from pathlib import Path
from typing import Any

from ..errors import UserError

log = logging.getLogger("truthprune.run")

def install_command() -> str:
    """The pip command that installs the lm-eval this truthprune was built against (its ``lmeval``
    extra), e.g. ``pip install 'lm-eval>=0.4.2'``: truthprune itself is not on the package index,
    so ``pip install 'truthprune[lmeval]'`` would not find it."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        reqs = requires("truthprune") or []
    except PackageNotFoundError:
        reqs = []
    for req in reqs:
        spec, _, marker = req.partition(";")
        if "lmeval" in marker:
            return f"pip install '{spec.strip().replace(' ', '')}'"
    return "pip install lm-eval"

# TaskManager builds an index of every task YAML lm-eval ships (~10 s); one per include set per process
_TASK_MANAGERS: dict[tuple[str, ...], Any] = {}


def _import_lm_eval():
    """The lm_eval module, or None (with the reason logged at debug level) when it cannot be imported."""
    try:
        import lm_eval
    except ImportError as err:
        log.debug("import lm_eval failed: %r", err)
        return None
    return lm_eval


def lm_eval_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lm_eval")
    except PackageNotFoundError:
        return None


def task_manager(include: list[str] | tuple[str, ...] = ()):
    """lm-eval's TaskManager with the built-in tasks plus ``include`` directories (cached)."""
    from lm_eval.tasks import TaskManager

    key = tuple(str(Path(p).resolve()) for p in include)
    if key not in _TASK_MANAGERS:
        log.info("lm-eval: indexing tasks%s", f" (+ {', '.join(key)})" if key else "")
        _TASK_MANAGERS[key] = TaskManager(include_path=list(key) or None)
    return _TASK_MANAGERS[key]


def check(config) -> dict[str, Any] | None:
    """Plan-time check of ``--lm-eval-*``: None when no tasks were asked for or all is well.
    lm-eval not installed, unknown task names and include directories that do not exist raise
    :class:`UserError` (exit 2 before anything loads: a run that was asked for tasks it cannot
    measure should not spend minutes and then report them as skipped)."""
    tasks = list(config.lm_eval_tasks)
    if not tasks:
        return None
    if _import_lm_eval() is None:
        raise UserError(f"--lm-eval-tasks needs lm-eval, which is not installed; install it with: {install_command()}")
    for d in config.lm_eval_include:
        if not Path(d).is_dir():
            raise UserError(f"--lm-eval-include {d!r} is not a directory of lm-eval task YAML files")
    tm = task_manager(config.lm_eval_include)
    known = set(tm.all_tasks)
    for name in tasks:
        if name in known or Path(name).is_file():
            continue
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.75)
        hint = f" did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UserError(
            f"unknown lm-eval task {name!r};{hint} `lm-eval ls tasks` lists them; "
            "a task of your own needs --lm-eval-include DIR (a directory of task YAML files)"
        )
    return None


def _files_digest(paths: list[str]) -> str:
    """Changes when any of these files, or any file under these directories, changes (name, size, mtime)."""
    h = hashlib.blake2b(digest_size=12)
    for d in paths:
        root = Path(d).resolve()
        h.update(str(root).encode())
        for p in sorted(root.rglob("*")) if root.is_dir() else [root]:
            if p.is_file():
                st = p.stat()
                h.update(f"{p.name if p == root else p.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


@contextlib.contextmanager
def _preserve_rng():
    """simple_evaluate reseeds random/numpy/torch; keep the run's own random streams untouched."""
    import random

    import numpy as np
    import torch

    py, npy, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


@contextlib.contextmanager
def _quiet_logger(name: str, level: int = logging.ERROR):
    logger = logging.getLogger(name)
    old = logger.level
    logger.setLevel(max(level, old))
    try:
        yield
    finally:
        logger.setLevel(old)


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def _metric_name(key: str) -> str:
    """lm-eval's ``"acc,none"`` -> ``"acc"``; ``"exact_match,strict-match"`` -> ``"exact_match (strict-match)"``."""
    metric, _, filt = key.partition(",")
    return metric if filt in ("", "none") else f"{metric} ({filt})"


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """The JSON-safe part of simple_evaluate's result for one requested task (or group/tag)."""
    results: dict[str, dict[str, float | None]] = {}
    stderr: dict[str, dict[str, float | None]] = {}
    for entry, values in (raw.get("results") or {}).items():
        for key, value in values.items():
            if key in ("alias", "name", "sample_len", "samples") or "," not in key:
                continue
            metric = _metric_name(key)
            if metric.split(" ")[0].endswith("_stderr"):
                stderr.setdefault(entry, {})[metric.replace("_stderr", "", 1)] = _number(value)
            else:
                results.setdefault(entry, {})[metric] = _number(value)
    n_samples = {k: v.get("effective") for k, v in (raw.get("n-samples") or {}).items() if isinstance(v, dict)}
    return {
        "results": results,
        "stderr": stderr,
        "n_samples": n_samples,
        "n_shot": dict(raw.get("n-shot") or {}),
        "versions": {k: str(v) for k, v in (raw.get("versions") or {}).items()},
        "higher_is_better": dict(raw.get("higher_is_better") or {}),
    }


def _error_line(task: str, err: BaseException) -> str:
    if isinstance(err, ConnectionError):
        return (f"lm-eval task {task!r} needs its data set from the Hugging Face hub, which is unreachable; "
                "use a local task (--lm-eval-include DIR, dataset_path: json) or run with network; skipping")
    first = (str(err).splitlines() or [""])[0][:200]
    return f"lm-eval task {task!r} failed ({type(err).__name__}: {first}); skipping"


def run_task(model, tokenizer, task: str, *, limit: int | None, num_fewshot: int | None, batch_size: int,
             include: list[str]) -> dict[str, Any]:
    """One requested task through lm-eval on the in-memory model; raises what lm-eval raises."""
    import copy

    import lm_eval
    from lm_eval.models.huggingface import HFLM

    # HFLM sets a pad token on the tokenizer it is given: hand it a copy, not the run's tokenizer
    with _quiet_logger("lm_eval.models.huggingface"):
        lm = HFLM(pretrained=model, tokenizer=copy.deepcopy(tokenizer), batch_size=batch_size)
    with _preserve_rng():
        raw = lm_eval.simple_evaluate(
            model=lm, tasks=[task], limit=limit, num_fewshot=num_fewshot,
            task_manager=task_manager(include), log_samples=False,
        )
    return summarize(raw or {})


def evaluate(cfg, skipped: dict[str, str] | None, failed: dict[str, str], loaded, fingerprint: str, role: str,
             cached_json) -> dict[str, Any]:
    """``{"tasks": {task: summary}, "skipped": {task: reason}, ...}`` for the run's --lm-eval-tasks.

    ``cached_json(kind, key, compute)`` caches each task's result by the weights' fingerprint,
    so a sweep measures the dense model once. A task that failed for the dense model is not
    retried for the pruned one (its reason is recorded again): ``failed`` (task -> reason) is
    updated in place. ``skipped`` is the plan's reason when no task can run at all.
    """
    if skipped is not None:
        return dict(skipped)
    out: dict[str, Any] = {
        "tasks": {}, "skipped": {}, "limit": cfg.lm_eval_limit, "num_fewshot": cfg.lm_eval_fewshot,
        "include": list(cfg.lm_eval_include), "lm_eval_version": lm_eval_version(),
    }
    digest = _files_digest(cfg.lm_eval_include) if cfg.lm_eval_include else None
    for task in cfg.lm_eval_tasks:
        if task in failed:
            out["skipped"][task] = failed[task]
            continue
        key = {"fp": fingerprint, "task": task, "limit": cfg.lm_eval_limit, "fewshot": cfg.lm_eval_fewshot,
               "include": digest, "task_file": _files_digest([task]) if Path(task).is_file() else None,
               "lm_eval": out["lm_eval_version"]}
        try:
            result = cached_json("lm_eval", key, lambda t=task: run_task(
                loaded.model, loaded.tokenizer, t, limit=cfg.lm_eval_limit, num_fewshot=cfg.lm_eval_fewshot,
                batch_size=cfg.batch_size, include=cfg.lm_eval_include))
        except MemoryError:
            raise
        except Exception as err:  # lm-eval's own failures (offline hub, a broken task) must not end the run
            log.debug("lm-eval task %s failed", task, exc_info=True)
            failed[task] = out["skipped"][task] = _error_line(task, err)
            log.warning(failed[task])
            continue
        out["tasks"][task] = result
        metrics: dict[str, list[str]] = {}
        for entry, metric in summary_entries({"tasks": {task: result}}):
            v = result["results"][entry][metric]
            metrics.setdefault(entry, []).append(f"{metric} {'-' if v is None else f'{v:.4f}'}")
        for entry, shown in metrics.items():
            log.info("%s lm-eval %s: %s", role, entry, ", ".join(shown))
    return out


def summary_entries(section: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(entry, metric) pairs for report.md's summary table, in request order.

    A requested group with its own aggregate shows that aggregate only; a tag or a group without
    an aggregate shows each of its tasks.
    """
    pairs: list[tuple[str, str]] = []
    for task, result in ((section or {}).get("tasks") or {}).items():
        results = result.get("results") or {}
        entries = [task] if results.get(task) else list(results)
        for entry in entries:
            pairs += [(entry, metric) for metric in results[entry]]
    return pairs
