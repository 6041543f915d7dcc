"""The plugin author kit (truthprune.testing) run against this plugin, with the default base and others."""

import pytest

from truthprune.testing import check_plugin, check_pruner
from truthprune_dsnot import DSnoTPruner


def test_dsnot_meets_the_plugin_contracts():
    assert check_plugin("dsnot")


@pytest.mark.parametrize("options", [{"base": "sparsegpt"}, {"base": "magnitude", "threshold": 0.0}])
def test_with_other_bases(options):
    assert check_pruner(DSnoTPruner, options)
