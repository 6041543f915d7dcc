"""Plugin discovery through entry points: built-ins, installed plugins, broken ones, clashes.

Fake distributions are written as ``*.dist-info`` folders on PYTHONPATH and exercised through the
real CLI in a subprocess, exactly as an installed plugin would be found.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from truthprune import UserError, get_registry


def make_dist(root: Path, dist: str, module: str, source: str, ep_name: str | None = None) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(f"[truthprune]\n{ep_name or dist} = {module}\n")


def cli(*args: str, path: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    if path is not None:
        full_env["PYTHONPATH"] = str(path) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "truthprune", *args], capture_output=True, text=True, env=full_env, timeout=120)


GOOD = """
from truthprune import Pruner, PruneResult, hookimpl
class Shiny(Pruner):
    name = "shiny"
    description = "A test pruner."
    def prune(self, weight, stats, target):
        raise NotImplementedError
@hookimpl
def register_pruners(register):
    register(Shiny)
"""


def test_builtins_listed_as_json():
    out = cli("plugins", "--json")
    assert out.returncode == 0, out.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(out.stdout)}
    assert rows[("pruner", "magnitude")]["distribution"] == "truthprune"
    assert rows[("allocator", "uniform")]["distribution"] == "truthprune"
    assert rows[("probe", "mass-mean")]["distribution"] == "truthprune"
    assert rows[("calibration", "text")]["distribution"] == "truthprune"


def test_installed_example_plugin_is_discovered():
    entry = get_registry().entry("pruner", "random")
    assert entry.distribution == "truthprune-random-example"


def test_new_distribution_adds_names(tmp_path):
    make_dist(tmp_path, "truthprune-shiny", "tp_shiny", GOOD)
    out = cli("plugins", "--json", path=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = [r for r in json.loads(out.stdout) if r["name"] == "shiny"]
    assert rows and rows[0]["distribution"] == "truthprune-shiny"


def test_broken_plugin_warns_once_and_cli_keeps_working(tmp_path):
    make_dist(tmp_path, "truthprune-broken", "tp_broken", "raise RuntimeError('boom at import')\n")
    out = cli("plugins", path=tmp_path)
    assert out.returncode == 0
    warnings = [line for line in out.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "truthprune-broken" in warnings[0] and "boom at import" in warnings[0]
    assert "magnitude" in out.stdout


def test_strict_mode_makes_broken_plugin_fatal(tmp_path):
    make_dist(tmp_path, "truthprune-broken", "tp_broken", "raise RuntimeError('boom')\n")
    out = cli("plugins", path=tmp_path, env={"TRUTHPRUNE_STRICT_PLUGINS": "1"})
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "boom" in out.stderr and "Traceback" not in out.stderr


def test_duplicate_name_names_both_distributions(tmp_path):
    """A clash only warns (other commands keep working); using the name, or strict mode, refuses it."""
    make_dist(tmp_path, "truthprune-shiny", "tp_shiny", GOOD)
    make_dist(tmp_path, "truthprune-shiny-two", "tp_shiny_two", GOOD)
    out = cli("plugins", path=tmp_path)
    assert out.returncode == 0 and "magnitude" in out.stdout
    assert "truthprune-shiny" in out.stderr and "truthprune-shiny-two" in out.stderr
    used = cli("run", "--pruner", "shiny", "--out", str(tmp_path / "out"), path=tmp_path)
    assert used.returncode == 2 and "registered twice" in used.stderr and "Traceback" not in used.stderr
    strict = cli("plugins", path=tmp_path, env={"TRUTHPRUNE_STRICT_PLUGINS": "1"})
    assert strict.returncode == 2 and "truthprune-shiny-two" in strict.stderr


def test_load_only_selected_plugins(tmp_path):
    make_dist(tmp_path, "truthprune-shiny", "tp_shiny", GOOD)
    out = cli("plugins", "--json", path=tmp_path, env={"TRUTHPRUNE_LOAD_PLUGINS": "truthprune-shiny"})
    names = {r["name"] for r in json.loads(out.stdout)}
    assert "shiny" in names and "magnitude" in names  # built-ins always load
    assert "wanda" in names and "owl" not in names and "random" not in names  # wanda is a core built-in


def test_unknown_name_suggests_closest():
    with pytest.raises(UserError, match=r"did you mean 'wanda'\?.*installed pruners: .*magnitude"):
        get_registry().get("pruner", "wandaa")


def test_unknown_pruner_on_cli_exits_2_with_hint():
    out = cli("run", "--pruner", "wandaa")
    assert out.returncode == 2
    assert "did you mean 'wanda'?" in out.stderr and "Traceback" not in out.stderr


def test_invalid_plugin_option_names_field():
    with pytest.raises(UserError, match="unknown option 'alpha'"):
        get_registry().create("pruner", "wanda", {"alpha": 1})
    with pytest.raises(UserError, match="option 'variant'"):
        get_registry().create("pruner", "wanda", {"variant": "maybe"})
