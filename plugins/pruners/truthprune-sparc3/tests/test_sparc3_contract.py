"""The plugin author kit (truthprune.testing) run against this plugin: registration, torch-free
import, and (a whole-model pruner) an engine run on the tiny Llama reaching the target."""

from truthprune.testing import check_plugin, check_pruner


def test_sparc3_meets_the_plugin_contracts():
    assert check_plugin("sparc3")


def test_sparc3_truth_target_meets_the_pruner_contract():
    """target=truth through the kit's engine run (the generated statement sets, the kit's tokenizer)."""
    assert check_pruner("sparc3", {"target": "truth", "per_set": 8})
