"""The plugin author kit (truthprune.testing) run against c4 and wikitext2 on small local files
(the sources never download in tests): shapes, masks, reproducibility, torch-free registration."""

import json

from truthprune.testing import check_calibration_source, check_torch_free_import

WORDS = " ".join(f"word{i} means thing{i * 7 % 101}." for i in range(400))


def test_wikitext2_meets_the_source_contract(tmp_path):
    path = tmp_path / "valid.txt"
    path.write_text("".join(f" = Section {k} =\n\n {WORDS}\n\n" for k in range(3)))
    assert check_calibration_source("wikitext2", {"path": str(path)})


def test_c4_meets_the_source_contract(tmp_path):
    path = tmp_path / "c4.json"
    path.write_text("".join(json.dumps({"text": f"Document {k}. {WORDS}", "url": "x"}) + "\n" for k in range(8)))
    assert check_calibration_source("c4", {"path": str(path)})


def test_registration_is_torch_free():
    assert check_torch_free_import("truthprune_hub.plugin")
