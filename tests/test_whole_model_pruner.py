"""Whole-model pruners (``Pruner.uses_model`` + ``prepare``): the engine calls ``prepare`` once with
the resident dense model, its per-linear answer reaches ``prune`` in ``LinearStats.extra``, a
malformed answer is the plugin's fault, and the offload mode refuses such pruners before work."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from truthprune import PluginContractError, PruneResult, Pruner, UserError, get_registry, prune_model
from truthprune.pruning.masks import mask_from_scores


class ModelScorePruner(Pruner):
    """Scores every weight by |W| times a per-layer factor computed from the whole model in prepare."""

    name = "model-score"
    description = "Test pruner: |W| flipped, computed once from the whole model."
    uses_model = True

    def __init__(self, config=None, answer=None):
        super().__init__(config)
        self.calls, self.seen, self._answer = [], [], answer

    def prepare(self, model, calibration, context):
        self.calls.append((model, len(calibration), dict(context)))
        assert not torch.is_inference_mode_enabled()  # it may differentiate
        if self._answer is not None:
            return self._answer
        return {i: {name: {"score": lin.weight.detach().abs().flip(1).clone()} for name, lin in linears.items()}
                for i, linears in context["linears"].items()}

    def prune(self, weight, stats, target):
        self.seen.append(stats)
        return PruneResult(mask=mask_from_scores(stats.extra["score"], target))


def _uniform():
    return get_registry().create("allocator", "uniform")


def test_prepare_is_called_once_and_its_extras_reach_prune(tiny_llama, tiny_calibration):
    dense = {n: p.detach().clone() for n, p in tiny_llama.named_parameters()}
    pruner = ModelScorePruner()
    report = prune_model(tiny_llama, tiny_calibration, pruner, _uniform(), 0.5, batch_size=4, quiet=True)
    assert len(pruner.calls) == 1
    model, n, context = pruner.calls[0]
    assert model is tiny_llama and n == len(tiny_calibration)
    assert set(context) == {"device", "batch_size", "quiet", "linears"} and sorted(context["linears"]) == [0, 1, 2]
    assert len(pruner.seen) == 3 * 7 and all(st.n_tokens == 0 for st in pruner.seen)  # no statistics asked for
    layer = tiny_llama.model.layers[1]
    w0 = dense["model.layers.1.mlp.up_proj.weight"]
    expected = mask_from_scores(w0.abs().flip(1), type("T", (), {"sparsity": 0.5, "nm": None})())
    assert torch.equal(layer.mlp.up_proj.weight == 0, expected)  # the mask came from the prepare score
    assert abs(report.overall - 0.5) < 0.02


@pytest.mark.parametrize("answer, fragment", [
    ([1, 2], "must return None or a dict"),
    ({7: {}}, "layer 7"),
    ({0: {"self_attn.nope": {}}}, "'self_attn.nope'"),
    ({0: {"mlp.up_proj": 3}}, "must map layer 0"),
])
def test_malformed_prepare_answer_is_the_plugins_fault(tiny_llama, tiny_calibration, answer, fragment):
    with pytest.raises(PluginContractError, match=fragment):
        prune_model(tiny_llama, tiny_calibration, ModelScorePruner(answer=answer), _uniform(), 0.5, batch_size=4, quiet=True)


def test_offload_refuses_a_whole_model_pruner(tiny_calibration, tmp_path):
    from truthprune import prune_checkpoint

    with pytest.raises(UserError, match="whole model"):
        prune_checkpoint(str(tmp_path / "nowhere"), tmp_path / "out", tiny_calibration, ModelScorePruner(), _uniform(), 0.5)
    assert not (tmp_path / "out").exists()


def test_prune_offload_refuses_it_at_plan_time():
    from truthprune.run.offload import check_offload

    plan = SimpleNamespace(config=SimpleNamespace(model="x"), quantizer=None, sources=[],
                           allocator=SimpleNamespace(needs_truth_profile=False), pruner=ModelScorePruner())
    with pytest.raises(UserError, match="drop --offload"):
        check_offload(plan)


def test_kit_checks_a_whole_model_pruner_through_the_engine_only():
    from truthprune.testing import check_pruner

    done = check_pruner(ModelScorePruner)
    assert any("engine run" in line for line in done) and not any("deterministic" in line for line in done)


PICKY = """
from truthprune import PruneResult, Pruner, SparsityAllocator, UserError, hookimpl
class Picky(SparsityAllocator):
    name = "picky"
    description = "A test allocator that needs an option."
    def check(self):
        raise UserError("allocator 'picky' needs its file: pass --allocator-opt from=FILE")
    def allocate(self, target, info):
        return [target] * info.num_layers
class Whole(Pruner):
    name = "whole"
    description = "A test whole-model pruner."
    uses_model = True
    def prune(self, weight, stats, target):
        raise NotImplementedError
@hookimpl
def register_allocators(register):
    register(Picky)
@hookimpl
def register_pruners(register):
    register(Whole)
"""


@pytest.mark.parametrize("args, fragment", [
    (("--allocator", "picky"), "pass --allocator-opt from=FILE"),
    (("--pruner", "whole", "--offload"), "drop --offload"),
])
def test_plan_time_refusals_through_the_cli(tmp_path, args, fragment):
    """Allocator.check() and the offload refusal of a whole-model pruner: one line, exit 2, before
    the model loads, nothing written."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_plugins import cli, make_dist  # the fake-distribution helpers of the plugin-discovery tests

    from truthprune.testing import save_tiny_checkpoint

    make_dist(tmp_path, "truthprune-picky", "tp_picky", PICKY)
    model = save_tiny_checkpoint(tmp_path / "tiny")
    out = cli("prune", "--model", str(model), "--seqlen", "32", *args, "--save", str(tmp_path / "x"), path=tmp_path)
    assert out.returncode == 2 and fragment in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "x").exists()
