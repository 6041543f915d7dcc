"""The plugin author kit (truthprune.testing) run against this plugin: the same contract checks
core enforces (mask/allocation/probe shapes, known statistics, torch-free registration), on a tiny model."""

import pytest

from truthprune.testing import check_plugin


@pytest.mark.parametrize("name", ["tplo", "swl", "tplo-joint"])
def test_tplo_meets_the_plugin_contracts(name):
    assert check_plugin(name)
