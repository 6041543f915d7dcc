"""The plugin author kit (truthprune.testing) run against this plugin: the same contract checks
core enforces (mask/allocation/probe shapes, known statistics, torch-free registration), on a tiny model."""

import pytest

from truthprune.testing import check_plugin


@pytest.mark.parametrize("name", ["sparsegpt"])
def test_sparsegpt_meets_the_plugin_contracts(name):
    assert check_plugin(name)


def test_dense_target_meets_the_pruner_contract():
    from truthprune.testing import check_pruner
    from truthprune_sparsegpt import SparseGPTPruner

    assert check_pruner(SparseGPTPruner, {"target": "dense"})
