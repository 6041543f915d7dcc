"""Calibration options that cannot work fail at plan time, before any model is loaded."""

from __future__ import annotations

import subprocess
import sys

import pytest

from truthprune import UserError
from truthprune.run.config import build_config
from truthprune.run.pipeline import plan_run


def plan(tmp_path, **overrides):
    return plan_run(build_config(None, {"out": str(tmp_path / "out"), **overrides}))


def test_empty_text_file_fails_at_plan_time(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(UserError, match="is empty"):
        plan(tmp_path, calibration=["text"], calibration_options={"path": str(empty)})


def test_text_without_path_and_missing_local_copy(tmp_path):
    with pytest.raises(UserError, match="path=FILE"):
        plan(tmp_path, calibration=["text"])
    with pytest.raises(UserError, match="is not a file"):
        plan(tmp_path, calibration=["wikitext2"], calibration_options={"path": str(tmp_path / "nope.txt")})


def test_good_text_file_is_read_once_and_reused(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("one record\n\nanother record\n")
    p = plan(tmp_path, calibration=["text"], calibration_options={"path": str(f)})
    f.unlink()  # samples() must use what check() read
    assert p.sources[0]._records() == ["one record", "another record"]


def test_cli_empty_calibration_file_exits_2_fast(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    r = subprocess.run(
        [sys.executable, "-m", "truthprune", "run", "--calibration", "text", "--calibration-opt", f"path={empty}",
         "--out", str(tmp_path / "o"), "--quiet"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: calibration file")
    assert "Traceback" not in r.stderr and not (tmp_path / "o").exists()


def test_offline_pydoc_ppl_is_capped_unless_asked_and_files_are_scored_in_full():
    from truthprune.run.stages import ppl_windows

    assert ppl_windows(build_config(None, {})) == 16  # the default ppl_data is pydoc
    assert ppl_windows(build_config(None, {"ppl_max_windows": 200})) == 200
    assert ppl_windows(build_config(None, {"ppl_data": "some/test.txt"})) is None
