"""The example third-party plugin runs the plugin author kit against itself, as any plugin can."""

from truthprune.testing import check_plugin, check_pruner
from truthprune_random.plugin import RandomPruner


def test_random_meets_the_plugin_contracts():
    assert check_plugin("random")


def test_random_with_another_seed():
    assert check_pruner(RandomPruner, {"seed": 3})
