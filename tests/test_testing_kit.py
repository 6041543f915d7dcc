"""The plugin author kit (truthprune.testing) itself: it passes core's built-ins, it catches a
deliberately broken pruner with PluginContractError naming it, and its failures name the plugin.
Only in-test fakes and core built-ins: no plugin distribution is needed."""

from __future__ import annotations

import pytest
import torch

from truthprune import PluginContractError, Pruner, PruneResult, SparsityAllocator
from truthprune.testing import (
    ContractFailure,
    TinyTokenizer,
    check_allocator,
    check_pruner,
    fake_linear_stats,
    tiny_calibration,
    tiny_llama,
)


class ColumnMaskPruner(Pruner):
    """Deliberately broken: a mask of shape [in] that would broadcast over every row."""

    name = "broken-columns"
    description = "broken on purpose"

    def prune(self, weight, stats, target):
        return PruneResult(mask=torch.zeros(weight.shape[1], dtype=torch.bool))


class IgnoresNM(Pruner):
    name = "ignores-nm"
    description = "prunes the first half of every row, whatever the target says"

    def prune(self, weight, stats, target):
        mask = torch.zeros(weight.shape, dtype=torch.bool)
        mask[:, : weight.shape[1] // 2] = True
        return PruneResult(mask=mask)


class Lopsided(SparsityAllocator):
    name = "lopsided"
    description = "everything on the last layer: the weighted mean misses the target"

    def allocate(self, target, info):
        return [0.0] * (info.num_layers - 1) + [0.9]


def test_broken_pruner_gives_contract_error_naming_it():
    with pytest.raises(PluginContractError, match=r"pruner 'broken-columns' .*ColumnMaskPruner.*shape \[64\]"):
        check_pruner(ColumnMaskPruner)


def test_kit_failures_name_the_plugin():
    with pytest.raises(ContractFailure, match=r"pruner 'ignores-nm'.*2:4"):
        check_pruner(IgnoresNM)
    with pytest.raises(ContractFailure, match=r"allocator 'lopsided'.*weighted mean"):
        check_allocator(Lopsided)


@pytest.mark.parametrize("name", ["magnitude", "uniform", "mass-mean"])
def test_core_builtins_meet_the_contracts(name):
    from truthprune.testing import check_plugin

    assert check_plugin(name)


def test_fixtures_are_consistent_and_seeded():
    st = fake_linear_stats(16, n_tokens=32, seed=3, streams=("truth",))
    assert torch.allclose(st.sq_norm, st.gram.diagonal()) and st.sum.shape == (16,)
    assert set(st.streams) == {"truth"} and not torch.equal(st.streams["truth"].gram, st.gram)
    assert torch.equal(fake_linear_stats(16, seed=3).gram, fake_linear_stats(16, seed=3).gram)
    assert TinyTokenizer()("ab")["input_ids"][0] == 1 and TinyTokenizer()("ab", add_special_tokens=False)["input_ids"] == [100, 101]
    calib = tiny_calibration(4, 16)
    assert calib.input_ids.shape == (4, 16) and tiny_llama()(calib.input_ids).logits.shape == (4, 16, 128)


def test_command_line_runner_reports_failure(capsys):
    from truthprune.testing.__main__ import main

    assert main(["no-such-plugin"]) == 1
    assert "no plugin named 'no-such-plugin'" in capsys.readouterr().err
