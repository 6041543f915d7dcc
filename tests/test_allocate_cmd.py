"""``truthprune allocate``: file validation, option mapping and torch-free start, using only the
built-in ``uniform`` allocator (the OWL/SWL/TPLO vectors are tested in their plugins)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from truthprune import UserError
from truthprune.cli.allocate_cmd import allocate_from_stats, read_stats_file

STATS = {
    "outlier_ratio_percent": [1.0, 2.0, 3.0],
    "separation_ratio": {"a": [1.0, 1.0, 2.0], "b": [0.0, 1.0, 3.0]},
    "target_sparsity": 0.4,
}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "truthprune", *args], capture_output=True, text=True, timeout=120)


def _write(tmp_path, data, name="stats.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_uniform_from_file_and_profile(tmp_path):
    out = _cli("allocate", "--allocator", "uniform", "--stats", str(_write(tmp_path, STATS)), "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["sparsity"] == [0.4, 0.4, 0.4]  # the file's target_sparsity when --sparsity is absent
    # a: [.25, .25, .5]; b: [0, .25, .75] -> mean [.125, .25, .625]
    assert got["truth_profile"] == pytest.approx([0.125, 0.25, 0.625])


def test_table_output(tmp_path):
    out = _cli("allocate", "-a", "uniform", "--stats", str(_write(tmp_path, STATS)), "--sparsity", "0.5")
    assert out.returncode == 0, out.stderr
    assert "truth_profile" in out.stdout and "mean sparsity 0.500000" in out.stdout


def test_profile_is_null_without_separation_ratios(tmp_path):
    stats = {"outlier_ratio_percent": [1.0, 2.0]}
    out = _cli("allocate", "-a", "uniform", "--stats", str(_write(tmp_path, stats)), "-s", "0.5", "--json")
    assert json.loads(out.stdout) == {"sparsity": [0.5, 0.5], "truth_profile": None}


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ({"other": 1}, "has neither"),
        ({"Llama": {"inputs": {}}}, "whole vectors file"),
        ({"outlier_ratio_percent": [1.0, "x"]}, "list of finite numbers"),
        ({"outlier_ratio_percent": []}, "list of finite numbers"),
        ({"separation_ratio": [1.0, 2.0]}, "must be an object"),
        ({"outlier_ratio_percent": [1.0], "lambda": "big"}, "'lambda' must be a number"),
    ],
)
def test_bad_files_are_user_errors(tmp_path, content, fragment):
    with pytest.raises(UserError, match=fragment):
        read_stats_file(_write(tmp_path, content))


def test_missing_file_exits_2_with_one_line(tmp_path):
    out = _cli("allocate", "-a", "uniform", "--stats", str(tmp_path / "absent.json"), "-s", "0.5")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "does not exist" in out.stderr


@pytest.mark.parametrize(
    "stats, kwargs, fragment",
    [
        ({"outlier_ratio_percent": [1.0]}, {}, "no target sparsity"),
        (STATS, {"sparsity": 1.0}, "outside [0, 1)"),
        ({"outlier_ratio_percent": [1.0, 2.0], "separation_ratio": {"a": [1.0]}}, {"sparsity": 0.5}, "layer counts disagree"),
        (STATS, {"sparsity": 0.5, "flags": {"tplo-pivot": "3"}}, "has no pivot option; drop --tplo-pivot"),
        (STATS, {"sparsity": 0.5, "options": ["novalue"]}, "KEY=VALUE"),
        (STATS, {"sparsity": 0.5, "options": ["lam=0.1"]}, "unknown option 'lam'"),
    ],
)
def test_bad_requests_are_user_errors(stats, kwargs, fragment):
    with pytest.raises(UserError, match=fragment.replace("[", r"\[").replace(")", r"\)")):
        allocate_from_stats("uniform", stats, **kwargs)


def test_unknown_allocator_suggests_a_name(tmp_path):
    out = _cli("allocate", "-a", "unifrom", "--stats", str(_write(tmp_path, STATS)))
    assert out.returncode == 2 and "did you mean 'uniform'" in out.stderr


def test_allocate_does_not_import_torch(tmp_path):
    path = _write(tmp_path, STATS)
    code = (
        "import sys\nfrom truthprune.cli.main import main\n"
        f"try:\n    main(['allocate', '-a', 'uniform', '--stats', {str(path)!r}, '--json'])\n"
        "except SystemExit:\n    pass\nprint('TORCH', 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "TORCH False" in out.stdout, out.stdout + out.stderr
