"""The plugin author kit (truthprune.testing) run against pydoc and generated (sampled from the
kit's tiny random Llama, cache off so nothing is written)."""

from truthprune.testing import check_calibration_source, check_plugin


def test_pydoc_meets_the_plugin_contracts():
    assert check_plugin("pydoc")


def test_generated_meets_the_source_contract():
    assert check_calibration_source("generated", {"cache": False})
