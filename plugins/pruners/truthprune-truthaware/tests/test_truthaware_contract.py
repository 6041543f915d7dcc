"""The plugin author kit (truthprune.testing) run against this plugin: the same contract checks
core enforces (mask/allocation/probe shapes, known statistics, torch-free registration), on a tiny model."""

import pytest

from truthprune.testing import check_plugin


@pytest.mark.parametrize("name", ["truthaware"])
def test_truthaware_meets_the_plugin_contracts(name):
    assert check_plugin(name)


@pytest.mark.parametrize("options", [{"target": "dense"}, {"control": "nonfactual", "tokens": "all"}])
def test_v2_options_meet_the_pruner_contract(options):
    from truthprune.testing import check_pruner
    from truthprune_truthaware import TruthAwarePruner

    assert check_pruner(TruthAwarePruner, {"per_set": 20, **options})
