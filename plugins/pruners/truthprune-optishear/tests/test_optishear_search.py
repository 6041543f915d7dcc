"""The resumable NSGA-III search: a killed search resumes to the same result, another search's
state is refused, and on a tiny model the search finds a metric with lower model-wise
reconstruction error than Wanda's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from truthprune import UserError
from truthprune.testing import tiny_calibration, tiny_llama
from truthprune_optishear.fitness import ModelFitness
from truthprune_optishear.search import run_search
from truthprune_optishear.space import WANDA, SearchSpace, decode, layer_sparsities

SPACE = SearchSpace(knots=2, span=0.1)
SETTINGS = {"what": "toy"}


def _toy(x):
    return float(np.sum((np.asarray(x) - np.array([0.7, 0.3, 0.05, -0.05])) ** 2))


class Killed(Exception):
    pass


def _killing(after):
    calls = []

    def evaluate(x):
        if len(calls) == after:
            raise Killed
        calls.append(x)
        return _toy(x)

    return evaluate, calls


def test_killed_search_resumes_to_the_same_result(tmp_path):
    whole = run_search(_toy, SPACE, SETTINGS, tmp_path / "whole.json", population=6, trials=24, seed=3)
    path = tmp_path / "killed.json"
    evaluate, calls = _killing(after=11)  # the Wanda reference + 10 candidates, then killed
    with pytest.raises(Killed):
        run_search(evaluate, SPACE, SETTINGS, path, population=6, trials=24, seed=3)
    saved = json.loads(path.read_text())
    assert len(saved["evaluations"]) == 10 and not saved["done"]
    evaluate, calls = _killing(after=10 ** 6)
    resumed = run_search(evaluate, SPACE, SETTINGS, path, population=6, trials=24, seed=3)
    assert len(calls) == 24 - 10  # only the candidates that were not stored are evaluated
    assert resumed["evaluations"] == whole["evaluations"] and resumed["best"] == whole["best"]
    assert resumed["best"]["error"] < _toy([*WANDA, 0.0, 0.0]) == resumed["wanda_error"]


def test_state_of_another_search_is_refused(tmp_path):
    path = tmp_path / "s.json"
    run_search(_toy, SPACE, SETTINGS, path, population=4, trials=4, seed=0)
    with pytest.raises(UserError, match="other settings"):
        run_search(_toy, SPACE, {"what": "else"}, path, population=4, trials=4, seed=0)
    path.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        run_search(_toy, SPACE, SETTINGS, path, population=4, trials=4, seed=0)


def test_search_on_a_tiny_model_beats_wandas_reconstruction_error(tmp_path):
    """Acceptance: the candidates are real prunes of a tiny Llama through the engine at 70 %, the
    error is the relative error of its final hidden states; Wanda's (beta 1, gamma 0, uniform) is
    measured by the same function, and the best candidate found is strictly lower."""
    fitness = ModelFitness(tiny_llama(), tiny_calibration(nsamples=4, seqlen=32), 0.7, None, batch_size=4)

    def evaluate(x):
        beta, gamma, knots = decode(x, SPACE)
        return fitness(beta, gamma, layer_sparsities(knots, 0.7, fitness.params))

    state = run_search(evaluate, SPACE, {"tiny": 1}, tmp_path / "tiny.json", population=6, trials=18, seed=0)
    wanda = fitness(*WANDA, None)
    assert state["wanda_error"] == pytest.approx(wanda, rel=1e-6)
    assert state["best"]["error"] < wanda
    assert fitness(*WANDA, None) == wanda  # the dense weights came back after every candidate
