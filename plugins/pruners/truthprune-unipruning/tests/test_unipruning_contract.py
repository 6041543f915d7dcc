"""The plugin author kit (truthprune.testing) run against this plugin: the pruner (dense
statistics, default allocator = the controller) and the allocator, both registered as 'unipruning'."""

from truthprune.testing import check_allocator, check_plugin, check_pruner
from truthprune_unipruning import UniPruningAllocator, UniPruningPruner


def test_unipruning_meets_the_plugin_contracts():
    done = check_plugin("unipruning")
    assert any(line.startswith("pruner") for line in done) and any(line.startswith("allocator") for line in done)


def test_controller_options_and_other_allocators():
    assert check_allocator(UniPruningAllocator, {"delta": 0.05, "iterations": 50})
    assert check_pruner(UniPruningPruner, allocator="uniform")
