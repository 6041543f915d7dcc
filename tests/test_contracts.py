"""Core enforces plugin contracts: a broken plugin raises PluginContractError naming itself.

Every plugin here is a fake defined in the test (no plugin distribution needed): a pruner whose
mask has the shape ``[in]`` (which would broadcast and prune whole columns), a float mask, an
updated weight of the wrong shape, allocators with a wrong length or an out-of-range value, a
pruner asking for an unknown statistic at registration, and probes with wrongly shaped answers.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from truthprune import (
    STAT_SQ_NORM,
    PluginContractError,
    Probe,
    Pruner,
    PruneResult,
    SparsityAllocator,
    UserError,
    hookimpl,
    prune_model,
)
from truthprune.plugin.contracts import checked_probe
from truthprune.plugin.registry import Registry


class _Uniform(SparsityAllocator):
    name = "fake-uniform"

    def allocate(self, target, info):
        return [target] * info.num_layers


class ColumnMaskPruner(Pruner):
    """Returns a mask of shape [in]: it would broadcast over every row."""

    name = "column-mask"

    def prune(self, weight, stats, target):
        return PruneResult(mask=torch.zeros(weight.shape[1], dtype=torch.bool))


class FloatMaskPruner(Pruner):
    name = "float-mask"

    def prune(self, weight, stats, target):
        return PruneResult(mask=torch.zeros(weight.shape))


class BadWeightPruner(Pruner):
    name = "bad-weight"

    def prune(self, weight, stats, target):
        return PruneResult(mask=torch.zeros(weight.shape, dtype=torch.bool), weight=weight[:, :-1].clone())


class GoodPruner(Pruner):
    name = "first-half"

    def prune(self, weight, stats, target):
        mask = torch.zeros(weight.shape, dtype=torch.bool)
        mask[:, : weight.shape[1] // 2] = True
        return PruneResult(mask=mask)


def _run(model, calib, pruner, allocator=None):
    return prune_model(model, calib, pruner, allocator or _Uniform(), 0.5, batch_size=4, quiet=True)


def test_mask_of_shape_in_is_a_contract_error_naming_the_pruner(tiny_llama, tiny_calibration):
    before = [p.detach().clone() for p in tiny_llama.parameters()]
    with pytest.raises(PluginContractError) as err:
        _run(tiny_llama, tiny_calibration, ColumnMaskPruner())
    msg = str(err.value)
    assert "pruner 'column-mask'" in msg and "ColumnMaskPruner" in msg and "distribution" in msg
    assert "has shape [32] but the weight is [32, 32]" in msg and "not in your input" in msg
    assert not isinstance(err.value, UserError)  # not the user's fault: the CLI does not exit 2
    # nothing was pruned with the broadcast mask
    assert all(torch.equal(a, b) for a, b in zip(before, tiny_llama.parameters()))


def test_float_mask_and_wrong_updated_weight_are_contract_errors(tiny_llama, tiny_calibration):
    with pytest.raises(PluginContractError, match="dtype torch.float32"):
        _run(tiny_llama, tiny_calibration, FloatMaskPruner())
    with pytest.raises(PluginContractError, match=r"updated weight .* shape \[32, 31\]"):
        _run(tiny_llama, tiny_calibration, BadWeightPruner())


def test_a_correct_pruner_passes(tiny_llama, tiny_calibration):
    report = _run(tiny_llama, tiny_calibration, GoodPruner())
    assert report.overall == pytest.approx(0.5)


class _Short(_Uniform):
    name = "short"

    def allocate(self, target, info):
        return [target] * (info.num_layers - 1)


class _OutOfRange(_Uniform):
    name = "out-of-range"

    def allocate(self, target, info):
        return [1.2] + [target] * (info.num_layers - 1)


class _Infeasible(_Uniform):
    """A correct allocator that cannot meet the target with its options says so itself."""

    name = "honest"

    def allocate(self, target, info):
        raise UserError("allocator 'honest': spread 0.3 with target 0.9 leaves [0, 1); use a smaller spread")


def test_allocation_length_and_range_are_the_allocators_fault(tiny_llama, tiny_calibration):
    with pytest.raises(PluginContractError, match=r"allocator 'short'.*returned 2 sparsities for a model with 3"):
        _run(tiny_llama, tiny_calibration, GoodPruner(), _Short())
    with pytest.raises(PluginContractError, match=r"allocator 'out-of-range'.*layer 0 sparsity 1.2"):
        _run(tiny_llama, tiny_calibration, GoodPruner(), _OutOfRange())


def test_infeasible_user_target_stays_a_user_error(tiny_llama, tiny_calibration):
    with pytest.raises(UserError, match=r"sparsity 1.5 is outside \[0, 1\)$"):  # no CLI flag advice in the library
        prune_model(tiny_llama, tiny_calibration, GoodPruner(), _Uniform(), 1.5, quiet=True)
    with pytest.raises(UserError, match="smaller spread"):
        _run(tiny_llama, tiny_calibration, GoodPruner(), _Infeasible())


def _module_registering(cls):
    mod = types.ModuleType("fake_plugin")

    @hookimpl
    def register_pruners(register):
        register(cls)

    mod.register_pruners = register_pruners
    return mod


def test_unknown_required_stat_is_refused_at_registration():
    class Hungry(GoodPruner):
        name = "hungry"
        required_stats = frozenset({STAT_SQ_NORM, "hessian_diag"})

    reg = Registry()
    with pytest.raises(PluginContractError, match=r"pruner 'hungry' \(distribution truthprune-hungry 9.9.*'hessian_diag'"):
        reg.add_plugin(_module_registering(Hungry), "hungry", "truthprune-hungry", "9.9")
    ok = Registry()
    ok.add_plugin(_module_registering(GoodPruner), "good", "truthprune-good", "1.0")
    assert ok.entry("pruner", "first-half").distribution == "truthprune-good"


class _WideProbe(Probe):
    name = "wide"

    def fit(self, acts, labels, meta=None):
        self._d = acts.shape[1]
        return self

    def predict(self, acts, meta=None):
        return np.zeros((acts.shape[0], 2), dtype=int)

    @property
    def direction(self):
        return np.ones(self._d + 1)


class _Soft(_WideProbe):
    name = "soft"

    def predict(self, acts, meta=None):
        return np.full(acts.shape[0], 0.5)


def test_probe_outputs_are_checked():
    x, y = np.random.default_rng(0).normal(size=(10, 4)), np.array([0, 1] * 5)
    p = checked_probe(_WideProbe()).fit(x, y)
    with pytest.raises(PluginContractError, match=r"probe 'wide'.*predict\(\) on 10 rows returned shape \[10, 2\]"):
        p.score(x, y)
    with pytest.raises(PluginContractError, match=r"direction has shape \[5\]; it must be \[4\]"):
        p.direction
    with pytest.raises(PluginContractError, match="values other than 0 and 1"):
        checked_probe(_Soft()).fit(x, y).predict(x)


def test_cli_turns_contract_error_into_one_line_exit_3(monkeypatch, capsys):
    import truthprune.environment
    from truthprune.cli import main as cli_main
    from truthprune.plugin.contracts import violation

    def broken(_command):
        raise violation(GoodPruner, "the mask is wrong")

    monkeypatch.setattr(truthprune.environment, "check_environment", broken)
    with pytest.raises(SystemExit) as exc:
        cli_main.main(["plugins"])
    assert exc.value.code == cli_main.PLUGIN_CONTRACT_EXIT == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: pruner 'first-half'") and "bug in the plugin" in err[0]


def test_checked_probe_survives_pickling():
    """Cached dense probes are pickled (bench/truth_retention.py); unpickling must not recurse."""
    import pickle

    from truthprune.plugin.contracts import CheckedProbe

    copy = pickle.loads(pickle.dumps(CheckedProbe(_NamedProbe())))
    assert copy.name == "picklable"


class _NamedProbe:
    name = "picklable"
