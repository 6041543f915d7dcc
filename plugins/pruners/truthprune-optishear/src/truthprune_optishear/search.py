"""A resumable NSGA-III search (pymoo's ask/tell loop) whose state is one JSON file.

Why replay instead of pickling pymoo: NSGA-III is deterministic for a seed and the fitness of
each candidate, so the file only needs the settings and every evaluation in the order pymoo asked
for them. A resumed search rebuilds the algorithm from the seed and replays it: each candidate
pymoo asks for again is checked against the stored one (bit-identical floats, as JSON writes
them exactly) and takes its stored error instead of a new prune. The first candidate without a
stored error is evaluated, so a killed search continues where it stopped and ends at the same
result as an uninterrupted one. The file is rewritten atomically after every evaluation, so a
kill loses at most the evaluation in progress.

NSGA-III (Deb and Jain 2014) is the algorithm the OptiShear paper uses; with one objective it is
a genetic algorithm with simulated binary crossover, polynomial mutation and elitist survival on
the single reference direction, and a second objective could be added without changing the loop.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .space import WANDA, SearchSpace

FORMAT = "truthprune-optishear-search/1"


def read_state(path: Path) -> dict[str, Any] | None:
    """The state in ``path``, or None when there is no file yet; UserError when it is not one."""
    from truthprune import UserError, read_text_file

    if not path.exists():
        return None
    text = read_text_file(path, "search state", "pass --state FILE.json (a new name starts a new search)")
    try:
        state = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}); remove it to start the search anew") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not an OptiShear search state (format {FORMAT!r}); pass another --state")
    return state


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Atomic rewrite: a temporary file in the same directory, then os.replace."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)


def check_resumable(state: dict[str, Any], settings: dict[str, Any], path: Path) -> None:
    from truthprune import UserError

    old = state.get("settings", {})
    diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
    if diff:
        k = diff[0]
        raise UserError(f"{path} holds a search with other settings ({k}: {old.get(k)!r} there, {settings.get(k)!r} now); "
                        "rerun with the same settings to resume it, or pass another --state")


def generations_for(trials: int, population: int) -> int:
    return max(1, math.ceil(trials / population))


def run_search(
    evaluate: Callable[[np.ndarray], float],
    space: SearchSpace,
    settings: dict[str, Any],
    state_path: Path,
    population: int,
    trials: int,
    seed: int,
    on_result: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    progress: Callable[[int, int, float, bool], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the search; return the final state (also written to ``state_path``).

    ``evaluate(x) -> error`` prunes with candidate x and returns its reconstruction error;
    ``on_result(best)`` adds what the caller derives from the best candidate (e.g. per-layer
    sparsities) to the state; ``progress(done, total, error, replayed)`` reports each candidate.
    """
    from pymoo.algorithms.moo.nsga3 import NSGA3
    from pymoo.core.evaluator import Evaluator
    from pymoo.core.problem import Problem
    from pymoo.problems.static import StaticProblem
    from pymoo.util.ref_dirs import get_reference_directions
    from truthprune import UserError

    state = read_state(state_path)
    if state is not None:
        check_resumable(state, settings, state_path)
    else:
        state = {"format": FORMAT, "settings": settings, "evaluations": [], "done": False}
    stored = state["evaluations"]
    if "wanda_error" not in state:  # the reference every candidate is compared with
        state["wanda_error"] = float(evaluate(np.array([*WANDA] + [0.0] * space.knots)))
        write_state(state_path, state)

    lower, upper = space.bounds()
    problem = Problem(n_var=space.n_var, n_obj=1, xl=lower, xu=upper)
    algorithm = NSGA3(ref_dirs=get_reference_directions("das-dennis", 1, n_partitions=1), pop_size=population)
    generations = generations_for(trials, population)
    algorithm.setup(problem, termination=("n_gen", generations), seed=seed, verbose=False)
    total, k = generations * population, 0
    while algorithm.has_next():
        pop = algorithm.ask()
        errors = []
        for x in pop.get("X"):
            if k < len(stored):
                if not np.array_equal(np.asarray(stored[k]["x"], dtype=np.float64), x):
                    raise UserError(f"{state_path}: evaluation {k} does not replay (another pymoo version?); "
                                    "remove the file to start the search anew")
                error, replayed = float(stored[k]["error"]), True
            else:
                error, replayed = float(evaluate(x)), False
                if not math.isfinite(error):
                    error = float("inf")
                stored.append({"x": [float(v) for v in x], "error": error})
                write_state(state_path, state)
            errors.append(error)
            k += 1
            if progress is not None:
                progress(k, total, error, replayed)
        Evaluator().eval(StaticProblem(problem, F=np.array(errors).reshape(-1, 1)), pop)
        algorithm.tell(infills=pop)
    best_k = int(np.argmin([e["error"] for e in stored]))
    best = {"x": stored[best_k]["x"], "error": stored[best_k]["error"], "evaluation": best_k}
    state["best"] = {**best, **(on_result(best) if on_result else {})}
    state["done"] = True
    write_state(state_path, state)
    return state
