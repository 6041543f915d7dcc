"""Bad-input rows that need the operating system's help: device nodes (mknod), bind mounts,
a file-size limit (``ulimit -f``), and real processes hit by SIGHUP, SIGQUIT, SIGINT and SIGTERM
while they hold a lock, write a report or wait for other ranks. Counted in the same tally as
tests/test_bad_inputs.py; the device and bind-mount rows are skipped where the system does not
permit them (they need root), never pointed at the real /dev or $HOME.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib: the helper modules beside us

import bad_inputs_data as data  # noqa: E402
from bad_inputs_lib import TALLY, Case, leftovers  # noqa: E402
from bad_inputs_rows import PROBE, PRUNE, RUN, _copy_run  # noqa: E402
from bad_inputs_rows3 import TRUTHFULNESS  # noqa: E402
from bad_inputs_runner import base, one_thread, run_case  # noqa: E402,F401  (fixtures)

CHILD = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler);"
         "[signal.signal(s, signal.SIG_DFL) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)];"
         "from truthprune.cli.main import main; main(sys.argv[1:])")


def _count(category: str, why: str) -> None:
    TALLY.add(category)
    assert category == "clean", f"{category}: {why}"


def _ctx(base, tmp_path):
    return SimpleNamespace(base=base.root, case=tmp_path, dead_pid=base.dead_pid)


# ----------------------------------------------------------------------------- device nodes

DEVICE_ROWS = [
    Case("device/run-out", [*RUN, "--out", "{C}/null", "--overwrite"], msg="character device"),
    Case("device/prune-save", [*PRUNE, "--save", "{C}/null", "--overwrite"], msg="character device"),
    Case("device/probe-out", [*PROBE, "--out", "{C}/null", "--overwrite"], msg="character device"),
    Case("device/probe-out-no-overwrite", [*PROBE, "--out", "{C}/null"], msg="already exists"),
    Case("device/compare-out", ["compare", "{D}/run_good", "{C}/r", "--out", "{C}/null", "--overwrite"], msg="character device",
         setup=_copy_run("r")),
    Case("device/truthfulness-out", [*TRUTHFULNESS, "--out", "{C}/null.json", "--overwrite"], msg="character device"),
    Case("device/ppl-model-weights", ["eval", "ppl", "--model", "{C}/m", "--seqlen", "32", "--device", "cpu", "--data",
                                      "{D}/eval.txt"], msg="character device"),
]


def _mknod(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # what /dev/null is, made in the case directory


@pytest.mark.parametrize("case", DEVICE_ROWS, ids=str)
def test_device_node_is_never_replaced(case: Case, base, tmp_path, monkeypatch):
    """A character device (a /dev/null made in the temporary directory) as an output or an input."""
    name = "null.json" if case.id == "device/truthfulness-out" else "null"
    try:
        if case.id == "device/ppl-model-weights":
            shutil.copytree(base.root / "tiny", tmp_path / "m")
            (tmp_path / "m" / "model.safetensors").unlink()
            _mknod(tmp_path / "m" / "model.safetensors")
            name = "m/model.safetensors"
        else:
            _mknod(tmp_path / name)
    except OSError as err:
        pytest.skip(f"cannot create a device node here: {err}")

    def still_a_device(ctx):
        mode = os.lstat(ctx.case / name).st_mode
        return None if stat.S_ISCHR(mode) else "the device node was replaced"

    case = Case(**{**case.__dict__, "post": still_a_device})
    category, why = run_case(case, _ctx(base, tmp_path), monkeypatch)  # counted there
    assert category == "clean", f"{category}: {why}"


# ----------------------------------------------------------------------------- bind mounts

BIND_ROWS = [
    Case("bind/run-out-is-bound-calibration-dir", [*RUN, "--calibration-opt", "path={B}/calib.txt", "--out", "{C}/d",
                                                   "--overwrite"], msg="would replace --calibration-opt path", keep=["d"]),
    Case("bind/run-out-is-the-bind-mount", [*RUN, "--calibration-opt", "path={C}/d/calib.txt", "--out", "{B}",
                                            "--overwrite"], msg="would replace --calibration-opt path|mount point", keep=["d"]),
    Case("bind/probe-out-bound-truth-dir", [*PROBE[:-4], "--generalization-repeats", "0", "--truth-data", "{B}", "--out",
                                            "{C}/d", "--overwrite"], msg="would replace --truth-data", keep=["d"]),
]


@pytest.mark.parametrize("case", BIND_ROWS, ids=str)
def test_bind_mounted_input(case: Case, base, tmp_path, monkeypatch):
    """An input reached through a bind mount has the same inode as the original: never replaced."""
    d, b = tmp_path / "d", tmp_path / "b"
    shutil.copytree(base.root / "truth" / "ok", d)
    shutil.copy(base.root / "calib.txt", d / "calib.txt")
    b.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "--bind", str(d), str(b)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        case = Case(**{**case.__dict__, "argv": [a.replace("{B}", str(b)) for a in case.argv]})
        category, why = run_case(case, _ctx(base, tmp_path), monkeypatch)  # counted there
        assert category == "clean", f"{category}: {why}"
    finally:
        subprocess.run(["umount", str(b)], capture_output=True)


# ----------------------------------------------------------------------------- real processes


def _spawn(args: list[str], cwd: Path, pythonpath: Path | None = None, preexec=None, **env: str) -> subprocess.Popen:
    full = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    if pythonpath is not None:
        full["PYTHONPATH"] = os.pathsep.join([str(pythonpath), full.get("PYTHONPATH", "")])
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], cwd=cwd, env=full, text=True, preexec_fn=preexec,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _judge(code: int, err: str, expected: int, line_regex: str, roots: list[Path]) -> tuple[str, str]:
    import re

    if "Traceback (most recent call last)" in err or "Fatal Python error" in err:
        return "traceback", err[-3000:]
    if code != expected:
        return "silent", f"exit {code}, expected {expected}: {err[-2000:]}"
    lines = [ln for ln in err.splitlines() if re.search(line_regex, ln)]
    if len(lines) != 1:
        return "silent", f"expected one line matching {line_regex!r}: {err[-2000:]}"
    left = leftovers(roots)
    return ("lost", f"left behind {left}") if left else ("clean", "")


def _file_limit(nbytes: int):
    def preexec():
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return preexec


@pytest.mark.parametrize("how", ["compare-overwrite", "prune-save"])
def test_file_size_limit_is_handled_like_a_full_disk(how, base, tmp_path):
    """``ulimit -f`` (EFBIG): one line naming the limit, nothing partial kept, the previous output intact."""
    from bad_inputs_lib import snapshot

    root = str(base.root)
    shutil.copytree(base.root / "run_good", tmp_path / "r")
    if how == "compare-overwrite":
        shutil.copytree(base.root / "run_good", tmp_path / "prev")  # a finished (marked) output, replaced by --overwrite
        args = ["compare", str(tmp_path / "r"), f"{root}/run_good", "--out", str(tmp_path / "prev"), "--overwrite"]
        limit, keep = 8_000, [tmp_path / "prev"]
    else:
        args = [a.replace("{D}", root) for a in PRUNE] + ["--save", str(tmp_path / "s")]
        limit, keep = 40_000, []
    before = snapshot(keep)
    proc = _spawn(args, tmp_path, preexec=_file_limit(limit))
    _, err = proc.communicate(timeout=300)
    category, why = _judge(proc.returncode, err, 2, "^error: .*file-size limit", [tmp_path])
    if category == "clean" and (snapshot(keep) != before or (how == "prune-save" and (tmp_path / "s").exists())):
        category, why = "lost", "the previous output changed, or a partial checkpoint was kept"
    _count(category, why)


SLOW_SOURCE = """
import os, pathlib, time
import torch
from truthprune import CalibrationSource, hookimpl, window_samples
class S(CalibrationSource):
    name = "slowsource"
    def samples(self, tokenizer, nsamples, seqlen, seed):
        pathlib.Path(os.environ["TPBAD_MARKER"]).write_text("calibrating")
        time.sleep(60)
        return window_samples(torch.ones(nsamples, seqlen, dtype=torch.long), "slow")
@hookimpl
def register_calibration_sources(register):
    register(S)
"""


@pytest.mark.parametrize("sig", ["SIGHUP", "SIGQUIT"])
def test_hangup_during_a_run_unwinds_like_sigterm(sig, base, tmp_path):
    """An ssh drop (SIGHUP) or SIGQUIT while a run holds its --out lock: one line, exit 128 + n,
    no stale lock, nothing written; the killed process no longer blocks the next run."""
    plug = data.make_plugin(tmp_path, "slowsource", source=SLOW_SOURCE)
    marker = tmp_path / "marker"
    from bad_inputs_rows4 import RUN_NO_CALIB

    args = [a.replace("{D}", str(base.root)) for a in RUN_NO_CALIB]
    args[args.index("--calibration") + 1] = "slowsource"
    proc = _spawn([*args, "--out", str(tmp_path / "out")], tmp_path, pythonpath=plug, TPBAD_MARKER=str(marker))
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    category, why = _judge(proc.returncode, err, 128 + int(getattr(signal, sig)), rf"^terminated \({sig}", [tmp_path])
    if category == "clean" and (tmp_path / "out").exists():
        category, why = "lost", "a half-written --out was left"
    _count(category, why)


def test_sigint_during_report_writes_never_aborts(base, tmp_path):
    """SIGINT at spread-out moments of ``truthprune report`` (rendering and the final swap): never
    "Fatal Python error", exit 0 or 130 (or killed by the signal once the command has finished),
    report.json byte-identical, report.md present."""
    run = tmp_path / "r"
    shutil.copytree(base.root / "run_good", run)
    report = (run / "report.json").read_bytes()
    ready = CHILD.replace("from truthprune", "print('ready', flush=True); from truthprune")  # signals handled from here
    for delay in (0.5, 1.5, 3.0):
        proc = subprocess.Popen([sys.executable, "-c", ready, "report", str(run)], cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.readline()
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        # -2: the signal came while the interpreter was shutting down after a finished command
        # (Python has then restored the default action); the shell reports 130 as well
        bad = ("Fatal Python error" in err or "Traceback" in err, proc.returncode not in (0, 130, -2),
               (run / "report.json").read_bytes() != report, not (run / "report.md").is_file(), bool(leftovers([tmp_path])))
        if any(bad):
            _count("lost" if any(bad[2:]) else "traceback" if bad[0] else "silent", f"after {delay} s: exit {proc.returncode}, {bad} {err[-2000:]}")
            return
    _count("clean", "")


def test_sigterm_while_waiting_for_other_ranks(base, tmp_path):
    """A rank waiting for the others used to wait 30 minutes inside one call, deaf to SIGTERM: now
    it is terminated at once (exit 143, one line) while it waits (rank 0 here, which announces the
    wait; a lone rank 1 is the in-process row dist/prune-rank1-without-rank0)."""
    import threading
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [a.replace("{D}", str(base.root)) for a in PRUNE] + ["--save", str(tmp_path / "s")]
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "TRUTHPRUNE_DIST_TIMEOUT": "600"}
    proc = _spawn(args, tmp_path, **env)
    guard = threading.Timer(180, proc.kill)  # never hang the suite
    guard.daemon = True
    guard.start()
    seen = []
    for line in proc.stderr:  # until it waits in the rendezvous
        seen.append(line)
        if "meeting the other ranks" in line:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _count("silent", "SIGTERM was ignored while waiting for rank 0")
        return
    guard.cancel()
    err = "".join(seen) + err
    _count(*_judge(proc.returncode, err, 143, r"^terminated \(SIGTERM", [tmp_path]))
