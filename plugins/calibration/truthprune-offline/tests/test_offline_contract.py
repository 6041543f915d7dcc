"""The plugin author kit (truthprune.testing) run against generated (sampled from the kit's tiny
random Llama, cache off so nothing is written)."""

from truthprune.testing import check_calibration_source


def test_generated_meets_the_source_contract():
    assert check_calibration_source("generated", {"cache": False})
