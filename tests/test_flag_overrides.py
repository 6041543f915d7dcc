"""Flags vs the TOML config: boolean --x/--no-x pairs override a file either way, and --nm with a
different explicit sparsity is a one-line plan-time error (it used to replace it silently)."""

from __future__ import annotations

import json

import pytest

from truthprune.cli.main import main


def _show(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(["config", "show", *args])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_no_flag_turns_off_a_toml_true(tmp_path, capsys):
    toml = tmp_path / "run.toml"
    toml.write_text("overwrite = true\nquiet = true\nchat_template = true\n")
    code, out, _ = _show(capsys, "--config", str(toml), "--no-overwrite", "--no-chat-template")
    cfg = json.loads(out)
    assert code == 0 and cfg["overwrite"] is False and cfg["chat_template"] is False and cfg["quiet"] is True
    code, out, _ = _show(capsys, "--config", str(toml))
    assert json.loads(out)["overwrite"] is True


def test_flag_turns_on_over_a_toml_false(tmp_path, capsys):
    toml = tmp_path / "run.toml"
    toml.write_text("overwrite = false\n")
    code, out, _ = _show(capsys, "--config", str(toml), "--overwrite")
    assert code == 0 and json.loads(out)["overwrite"] is True


def test_nm_with_a_different_explicit_sparsity_is_an_error(capsys):
    code, out, err = _show(capsys, "--nm", "2:4", "--sparsity", "0.7")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "nm 2:4 prunes 0.5" in lines[0] and "sparsity 0.7" in lines[0] and "drop --sparsity" in lines[0]


def test_nm_alone_or_with_its_own_sparsity_is_fine(capsys):
    code, out, _ = _show(capsys, "--nm", "1:4")
    assert code == 0 and json.loads(out)["sparsity"] == 0.25
    code, out, _ = _show(capsys, "--nm", "2:4", "--sparsity", "0.5")
    assert code == 0 and json.loads(out)["nm"] == "2:4"
