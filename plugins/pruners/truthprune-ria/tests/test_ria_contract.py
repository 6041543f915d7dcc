"""The plugin author kit (truthprune.testing) run against this plugin: the same contract checks
core enforces, on a tiny model. With ``permute=false`` the pruner is not block-aware, so the kit
also calls ``prune`` directly (masks, determinism, 2:4 honoured exactly)."""

import pytest

from truthprune.testing import check_plugin, check_pruner
from truthprune_ria import RIAPruner


def test_ria_meets_the_plugin_contracts():
    assert check_plugin("ria")


@pytest.mark.parametrize("options", [{"permute": False}, {"permute": False, "a": 0.0}])
def test_direct_prune_contract_without_permutation(options):
    done = check_pruner(RIAPruner, options)
    assert any("2:4 honoured exactly" in line for line in done)
