"""The ``text`` calibration source's record splitting: empty lines by default, whitespace-only
lines too with ``split=blank-lines`` (WikiText's raw files mark paragraphs with a line holding one space)."""

from __future__ import annotations

import pytest

from truthprune import UserError, get_registry
from truthprune.calibration.windows import read_text_records, text_file_records

WIKI_LIKE = " \n = Lobster = \n \n The lobster is blue .\n It turns red .\n \n \n = = Range = = \n \n It lives in the sea .\n"


def test_default_splits_on_empty_lines_only():
    assert text_file_records("a b\nc\n\nd e\n") == ["a b c", "d e"]
    assert text_file_records(WIKI_LIKE) == ["= Lobster = The lobster is blue . It turns red . = = Range = = It lives in the sea ."]


def test_blank_lines_split_on_whitespace_only_lines():
    assert [r for r in text_file_records(WIKI_LIKE, "blank-lines") if r] == [
        "= Lobster =", "The lobster is blue . It turns red .", "= = Range = =", "It lives in the sea ."]
    assert text_file_records("a\n\nb", "blank-lines") == text_file_records("a\n\nb")
    with pytest.raises(UserError, match="split"):
        text_file_records("a", "paragraphs")


def test_text_source_option(tmp_path):
    path = tmp_path / "wiki.txt"
    path.write_text(WIKI_LIKE * 20)
    assert len(read_text_records(path)) == 1
    assert len(read_text_records(path, split="blank-lines")) == 80
    registry = get_registry()
    assert registry.create("calibration", "text", {"path": str(path), "split": "blank-lines"}).config.split == "blank-lines"
    with pytest.raises(UserError, match="split"):
        registry.create("calibration", "text", {"path": str(path), "split": "lines"})
