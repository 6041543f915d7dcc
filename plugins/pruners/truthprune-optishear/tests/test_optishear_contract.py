"""The plugin author kit (truthprune.testing) run against this plugin's pruner and allocator, and
the torch-free registration import (`truthprune plugins` must stay fast)."""

from truthprune.testing import check_allocator, check_pruner, check_torch_free_import


def test_optishear_pruner_meets_the_contract():
    assert check_pruner("optishear")
    assert check_pruner("optishear", {"beta": 0.5, "gamma": 0.7})


def test_optishear_allocator_meets_the_contract():
    assert check_allocator("optishear", {"sparsity": [0.42, 0.5, 0.58]})


def test_registration_module_imports_without_torch_or_pymoo():
    assert check_torch_free_import("truthprune_optishear.plugin")
