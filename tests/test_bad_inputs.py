"""The bad-input suite: every command fed broken files, models, configs, environments, plugins and
faults, each row checked for the promised behaviour (docs/reliability.md):

exit code as expected, ONE ``error:`` line naming the problem (or the expected warning), no
traceback, and on disk nothing half-written, no stale temporary or lock, and every previous
output byte-identical. Most rows run the CLI in this process (fast); the concurrency, kill -9 and
SIGINT rows use subprocesses, and the full-disk rows a small tmpfs (skipped where mounting is not
permitted). tests/conftest.py prints the tally: ``N cases: N clean, 0 traceback, 0 silent, 0 lost``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib: the helper modules beside us

import bad_inputs_data as data  # noqa: E402
import bad_inputs_rows as rows1  # noqa: E402
import bad_inputs_rows2 as rows2  # noqa: E402
import bad_inputs_rows3 as rows3  # noqa: E402
import bad_inputs_rows4 as rows4  # noqa: E402
import bad_inputs_rows5 as rows5  # noqa: E402
import bad_inputs_rows_serving as rows_serving  # noqa: E402
from bad_inputs_lib import TALLY, Case, leftovers  # noqa: E402
from bad_inputs_runner import base, one_thread, run_case  # noqa: E402,F401  (fixtures)

ROWS: list[Case] = [
    *rows1.usage_rows(), *rows1.config_rows(), *rows1.env_rows(), *rows1.model_rows(), *rows1.text_rows(),
    *rows1.truth_rows(), *rows1.tqa_rows(), *rows2.report_rows(), *rows2.output_rows(), *rows2.stale_rows(),
    *rows2.interrupt_rows(), *rows2.plugin_rows(), *rows2.allocate_rows(), *rows2.sweep_rows(),
    *rows3.all_rows(), *rows4.all_rows(), *rows5.all_rows(), *rows_serving.serving_rows(),
]


@pytest.mark.parametrize("case", ROWS, ids=str)
def test_bad_input(case: Case, base, tmp_path, monkeypatch):
    ctx = SimpleNamespace(base=base.root, case=tmp_path, dead_pid=base.dead_pid)
    category, why = run_case(case, ctx, monkeypatch)
    assert category == "clean", f"{category}: {why}"


def test_the_table_is_large_and_covers_every_command():
    commands = {" ".join(a for a in c.argv[:2] if not a.startswith("-") and "{" not in a).split(" ")[0] for c in ROWS}
    assert {"run", "prune", "probe", "eval", "allocate", "sweep", "compare", "report", "config", "plugins"} <= commands
    assert len({c.id for c in ROWS}) == len(ROWS) >= 150


# ----------------------------------------------------------------------------- a full disk


def _fill(fs: Path, leave: int) -> None:
    """Fill ``fs`` until ENOSPC, then free ``leave`` bytes."""
    filler = fs / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    size = filler.stat().st_size
    with open(filler, "r+b") as fh:
        fh.truncate(max(0, size - leave))


@pytest.fixture(scope="module")
def small_fs(tmp_path_factory):
    """A 2 MiB tmpfs (needs root and mount permission; skipped otherwise)."""
    mnt = tmp_path_factory.mktemp("enospc")
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], capture_output=True)


FULL = "no space left"
ENOSPC_ROWS = [
    Case("enospc/compare-new-out", ["compare", "{D}/run_good", "{F}/r", "--out", "{F}/cmp"], msg=FULL, absent=["cmp"]),
    Case("enospc/report-rerender", ["report", "{F}/r"], msg=FULL, keep=["r"]),
    Case("enospc/run-overwrite-report", [*rows1.RUN, "--out", "{F}/r", "--overwrite"], msg=FULL, keep=["r"],
         plan_time=False),
    Case("enospc/run-save", [*rows1.RUN, "--out", "{C}/o", "--save", "{F}/s"], msg=FULL, absent=["s"], plan_time=False),
    Case("enospc/probe-out", [*rows1.PROBE, "--out", "{F}/p.json"], msg=FULL, absent=["p.json"], plan_time=False),
]


@pytest.mark.parametrize("case", ENOSPC_ROWS, ids=str)
def test_full_disk(case: Case, base, small_fs, tmp_path, monkeypatch):
    for item in small_fs.iterdir():
        shutil.rmtree(item) if item.is_dir() else item.unlink()
    shutil.copytree(base.root / "run_good", small_fs / "r")
    _fill(small_fs, leave=4096 if case.id == "enospc/probe-out" else 8192)  # room for the lock, not the output
    case = Case(**{**case.__dict__, "argv": [a.replace("{F}", str(small_fs)) for a in case.argv]})
    ctx = SimpleNamespace(base=base.root, case=small_fs, dead_pid=base.dead_pid)
    try:
        category, why = run_case(case, ctx, monkeypatch)
    finally:
        (small_fs / "filler").unlink(missing_ok=True)
    assert category == "clean", f"{category}: {why}"


READ_ONLY_ROWS = [
    Case("readonly/run-out", [*rows1.RUN, "--out", "{F}/x"], msg="not writable"),
    Case("readonly/run-save", [*rows1.RUN, "--out", "{C2}/o", "--save", "{F}/s"], msg="not writable"),
    Case("readonly/prune-save", [*rows1.PRUNE, "--save", "{F}/s"], msg="not writable"),
    Case("readonly/probe-out", [*rows1.PROBE, "--out", "{F}/p.json"], msg="not writable"),
    Case("readonly/compare-out", ["compare", "{F}/r", "{D}/run_good", "--out", "{F}/c"], msg="not writable"),
    Case("readonly/sweep-out", [*rows1.SWEEP, "--out", "{F}/sw"], msg="not writable"),
    Case("readonly/report-rerender", ["report", "{F}/r"], msg="not writable", keep=["{F}/r"]),
]


@pytest.fixture(scope="module")
def read_only_fs(tmp_path_factory, base):
    """A tmpfs holding a copy of the finished run, remounted read-only (skipped where not permitted)."""
    mnt = tmp_path_factory.mktemp("readonly")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    shutil.copytree(base.root / "run_good", mnt / "r")
    if subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True).returncode:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        pytest.skip("cannot remount read-only here")
    yield mnt
    subprocess.run(["umount", str(mnt)], capture_output=True)


@pytest.mark.parametrize("case", READ_ONLY_ROWS, ids=str)
def test_unwritable_target(case: Case, base, read_only_fs, tmp_path, monkeypatch):
    """An unwritable parent is found at plan time by trying (root ignores permission bits, so a read-only mount)."""
    def sub(a: str) -> str:
        return a.replace("{F}", str(read_only_fs)).replace("{C2}", str(tmp_path))

    case = Case(**{**case.__dict__, "argv": [sub(a) for a in case.argv], "keep": [sub(k) for k in case.keep]})
    ctx = SimpleNamespace(base=base.root, case=tmp_path, dead_pid=base.dead_pid)
    category, why = run_case(case, ctx, monkeypatch)
    assert category == "clean", f"{category}: {why}"


# ----------------------------------------------------------------------------- real processes: signals, races, kill -9

# the child restores Python's SIGINT handler: a parent that ignores SIGINT (nohup, CI) must not make these no-ops
CHILD = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler);"
         "[signal.signal(s, signal.SIG_DFL) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)];"
         "from truthprune.cli.main import main; main(sys.argv[1:])")


def _spawn(args: list[str], cwd: Path, pythonpath: Path | None = None, **env: str) -> subprocess.Popen:
    import os

    full = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    if pythonpath is not None:
        full["PYTHONPATH"] = os.pathsep.join([str(pythonpath), full.get("PYTHONPATH", "")])
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], cwd=cwd, env=full, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _count(category: str, why: str) -> None:
    TALLY.add(category)
    assert category == "clean", f"{category}: {why}"


def _judge_proc(code: int, err: str, expected: int, line_regex: str, roots: list[Path]) -> tuple[str, str]:
    import re

    if "Traceback (most recent call last)" in err:
        return "traceback", err[-3000:]
    if code != expected:
        return "silent", f"exit {code}, expected {expected}: {err[-2000:]}"
    lines = [ln for ln in err.splitlines() if re.search(line_regex, ln)]
    if len(lines) != 1:
        return "silent", f"expected one line matching {line_regex!r}: {err[-2000:]}"
    left = leftovers(roots)
    return ("lost", f"left behind {left}") if left else ("clean", "")


@pytest.mark.parametrize("how", ["external-sigint-while-a-plugin-imports", "plugin-import-sends-sigint",
                                 "external-sigterm-while-a-plugin-imports", "external-sighup-while-a-plugin-imports",
                                 "external-sigquit-while-a-plugin-imports"])
def test_sigint_during_startup_imports(how, base, tmp_path):
    """Ctrl-C while the CLI is still importing (plugins load at start-up): one line, exit 130;
    SIGTERM (a batch system's time limit): one line, exit 143; SIGHUP and SIGQUIT (a closed
    terminal or ssh connection) unwind the same way: exit 129 and 131."""
    import signal
    import time

    marker = tmp_path / "marker"
    source = ("import os, pathlib, signal, time\n"
              "pathlib.Path(os.environ['TPBAD_MARKER']).write_text('importing')\n"
              + ("os.kill(os.getpid(), signal.SIGINT)\n" if how.startswith("plugin") else "")
              + "time.sleep(30)\n")
    plug = data.make_plugin(tmp_path, "slow", source=source)
    proc = _spawn(["plugins"], tmp_path, pythonpath=plug, TPBAD_MARKER=str(marker))
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    sig = {"sigterm": signal.SIGTERM, "sighup": signal.SIGHUP, "sigquit": signal.SIGQUIT}.get(how.split("-")[1], signal.SIGINT)
    if how.startswith("external"):
        time.sleep(0.2)
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    expected = 130 if sig == signal.SIGINT else 128 + int(sig)
    _count(*_judge_proc(proc.returncode, err, expected, "interrupted" if sig == signal.SIGINT else r"terminated \(SIG",
                        [tmp_path]))


def test_two_concurrent_compares_into_one_out(base, tmp_path):
    """Two writers of the same --out at once: exactly one writes, the other is told, nothing is lost."""
    shutil.copytree(base.root / "run_good", tmp_path / "r")
    args = ["compare", str(tmp_path / "r"), str(base.root / "run_good"), "--out", str(tmp_path / "cmp")]
    procs = [_spawn(args, tmp_path) for _ in range(2)]
    results = sorted(((p.wait(timeout=120), p.stderr.read()) for p in procs), key=lambda r: r[0])
    category, why = _judge_proc(*results[1], 2, "^error: .*(being written|already exists)", [tmp_path])
    if category == "clean" and results[0][0] != 0:
        category, why = "silent", f"neither writer succeeded: {results}"
    if category == "clean" and not (tmp_path / "cmp" / "compare.json").is_file():
        category, why = "lost", "the comparison is missing"
    _count(category, why)


def test_concurrent_runs_one_out_and_one_shared_cache(base, tmp_path):
    """The reported worst case: two `run`s into one --out without --overwrite both 'succeeded'.
    A third run into another --out shares the same result cache at the same time and must succeed."""
    import json

    args = [a.replace("{D}", str(base.root)) for a in rows1.RUN]
    cache = str(tmp_path / "cache")
    procs = [_spawn([*args, "--out", str(tmp_path / out)], tmp_path, TRUTHPRUNE_CACHE=cache) for out in ("out", "out", "other")]
    done = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    results = sorted(done[:2], key=lambda r: r[0])
    category, why = _judge_proc(*results[1], 2, "^error: .*(being written|already exists)", [tmp_path])
    if category == "clean" and (results[0][0] != 0 or done[2][0] != 0):
        category, why = "silent", f"a run that should succeed failed: {results[0][1][-1500:]} {done[2][1][-1500:]}"
    if category == "clean" and "Traceback" in done[2][1]:
        category, why = "traceback", done[2][1][-3000:]
    if category == "clean":
        reports = [json.loads((tmp_path / out / "report.json").read_text()) for out in ("out", "other")]
        category, why = ("clean", "") if all(r["truthprune_report"] == 1 for r in reports) else ("lost", "report damaged")
    _count(category, why)


def test_kill9_during_a_write_is_cleaned_up_by_the_next_writer(base, tmp_path, monkeypatch):
    """kill -9 mid-write leaves a PID-named temporary and a lock; the next writer removes both."""
    import signal

    code = ("import sys, time\nfrom truthprune.outputs.atomic import atomic_dir\n"
            "with atomic_dir(sys.argv[1]) as tmp:\n"
            "    (tmp / 'model.safetensors').write_bytes(bytes(1 << 20))\n"
            "    print('ready', flush=True)\n    time.sleep(60)\n")
    target = tmp_path / "x"
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert leftovers([tmp_path]), "the killed writer should have left its temporary and lock"
    shutil.copytree(base.root / "run_good", tmp_path / "r")
    case = Case("kill9/next-writer-cleans", ["compare", "{C}/r", "{D}/run_good", "--out", "{C}/x"], code=0,
                msg="comparison written", warn="removed .x.tmp-")
    ctx = SimpleNamespace(base=base.root, case=tmp_path, dead_pid=base.dead_pid)
    category, why = run_case(case, ctx, monkeypatch)  # counted there
    assert category == "clean", f"{category}: {why}"


def test_hub_dataset_without_network_fails_fast_and_quietly(base, tmp_path):
    """--data wikitext2 with no network and an empty cache: one line naming the local-copy flag (it
    used to retry with a warning per request for half a minute first)."""
    args = ["eval", "ppl", "--model", str(base.root / "tiny"), "--seqlen", "32", "--device", "cpu", "--data", "wikitext2"]
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "",
           "HF_DATASETS_OFFLINE": "", "TRANSFORMERS_OFFLINE": ""}
    proc = _spawn(args, tmp_path, **env)
    _, err = proc.communicate(timeout=300)
    category, why = _judge_proc(proc.returncode, err, 2, "^error: .*unreachable.*--data PATH", [tmp_path])
    if category == "clean" and "WARNING" in err:
        category, why = "silent", f"warnings before the error: {err[-2000:]}"
    _count(category, why)
