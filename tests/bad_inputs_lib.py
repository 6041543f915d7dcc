"""Harness of the bad-input suite (tests/test_bad_inputs.py): run the CLI in this process, judge
each case, and count the outcomes for the summary line the conftest prints.

A case is judged on four things, in this order (the first that fails names its category):

* **traceback**: an exception escaped ``main`` (anything but SystemExit), or "Traceback" was printed;
* **silent**: the exit code is not the expected one, or the one ``error:`` line (or the expected
  warning) is missing: the user was not told, or was told something else;
* **lost**: a file the case must not touch changed, or a temporary, lock or probe entry was left;
* **clean**: none of the above.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

MAX_LINE = 1600  # an error line longer than this was not capped (truthprune.cli.main caps at 1500 + "error: ")
LEFTOVER = re.compile(r"(\.tmp-\d+-[0-9a-f]{8}$|\.old-\d+-[0-9a-f]{8}$|\.lock$|^\.truthprune-probe-|\.stale-\d+$)")


@dataclass
class Tally:
    counts: dict[str, int] = field(default_factory=lambda: {"clean": 0, "traceback": 0, "silent": 0, "lost": 0})

    def add(self, category: str) -> None:
        self.counts[category] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        c = self.counts
        return f"{self.total} cases: {c['clean']} clean, {c['traceback']} traceback, {c['silent']} silent, {c['lost']} lost"


TALLY = Tally()


@dataclass
class Result:
    code: int | None
    out: str
    err: str
    exc: str | None = None  # formatted traceback of an escaped exception

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error:")]


class _CurrentStderr(logging.StreamHandler):
    """A log handler that writes to whatever sys.stderr is now (the captured one during a case)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value):  # logging.StreamHandler.__init__ assigns it
        pass


@contextlib.contextmanager
def environment(env: dict[str, str | None]):
    saved = {k: os.environ.get(k) for k in env}
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def invoke(argv: list[str], env: dict[str, str | None] | None = None, cwd: Path | None = None) -> Result:
    """``truthprune ARGV`` in this process: stdout/stderr captured, SystemExit turned into a code."""
    from truthprune.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    handler = _CurrentStderr()
    handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    old_cwd = os.getcwd()
    code, exc = None, None
    try:
        with environment(env or {}), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            if cwd is not None:
                os.chdir(cwd)
            try:
                main([str(a) for a in argv])
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:  # noqa: BLE001 - this is exactly what the suite counts
                exc = traceback.format_exc()
    finally:
        os.chdir(old_cwd)
        root.removeHandler(handler)
    return Result(code, out.getvalue(), err.getvalue(), exc)


def snapshot(paths: list[Path]) -> dict[str, bytes | None]:
    """Bytes of every file under ``paths`` (None for a path that does not exist)."""
    snap: dict[str, bytes | None] = {}
    for p in paths:
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file():
                    snap[str(f)] = f.read_bytes()
        elif p.is_file():
            snap[str(p)] = p.read_bytes()
        else:
            snap[str(p)] = None
    return snap


def leftovers(roots: list[Path]) -> list[str]:
    found = []
    for root in roots:
        if root.is_dir():
            found += [str(p) for p in root.rglob("*") if LEFTOVER.search(p.name)]
    return found


@dataclass
class Case:
    """One row: the command, what it must answer, and what it must leave alone."""

    id: str
    argv: list[str]
    code: int = 2
    msg: str | None = None  # regex that the one error line (code != 0) or the output (code 0) must match
    warn: str | None = None  # regex that must appear in stderr (a warning)
    setup: Callable[[Any], None] | None = None  # setup(ctx) writes the case's inputs under ctx.case
    env: dict[str, str | None] = field(default_factory=dict)
    keep: list[str] = field(default_factory=list)  # paths whose bytes must be identical afterwards
    absent: list[str] = field(default_factory=list)  # paths that must not exist afterwards
    plan_time: bool = True  # the model must not be loaded (the check comes before the work)
    cwd: str | None = None
    planted: list[str] = field(default_factory=list)  # locks/temporaries the case itself planted (not leftovers)
    post: Callable[[Any], str | None] | None = None  # extra filesystem check: an explanation when it fails
    patch: Callable[[Any, Any], None] | None = None  # patch(monkeypatch, ctx): simulate a fault inside the work
    plugins: list[str] = field(default_factory=list)  # fake third-party distributions (bad_inputs_data.PLUGIN_SOURCES)
    no: str | None = None  # regex that must NOT appear in stderr (a load-report table, a progress bar)
    out_check: Callable[[str], str | None] | None = None  # check of stdout (e.g. it parses as JSON): explanation or None

    def __str__(self) -> str:
        return self.id


def judge(case: Case, result: Result, changed: list[str], left: list[str], present: list[str]) -> tuple[str, str]:
    """(category, explanation) of one finished case."""
    text = result.out + result.err
    if result.exc is not None or "Traceback (most recent call last)" in text:
        return "traceback", result.exc or text[-3000:]
    if result.code != case.code:
        return "silent", f"exit {result.code}, expected {case.code}; stderr: {result.err[-1500:]}"
    if case.code != 0:
        signal_lines = [ln for ln in result.err.splitlines() if re.match(r"(interrupted|terminated)", ln)]
        lines = signal_lines if case.code in (129, 130, 131, 143) else result.error_lines
        if len(lines) != 1:
            return "silent", f"expected one error line, got {lines!r}; stderr: {result.err[-1500:]}"
        if case.msg and not re.search(case.msg, lines[0], flags=re.IGNORECASE):
            return "silent", f"error line {lines[0]!r} does not match {case.msg!r}"
    elif case.msg and not re.search(case.msg, text, flags=re.IGNORECASE):
        return "silent", f"output does not match {case.msg!r}: {text[-1500:]}"
    if case.warn and not re.search(case.warn, result.err, flags=re.IGNORECASE):
        return "silent", f"no warning matching {case.warn!r}: {result.err[-1500:]}"
    if case.no and re.search(case.no, result.err):
        return "silent", f"stderr shows {case.no!r}: {result.err[-1500:]}"
    long = [ln for ln in result.error_lines if len(ln) > MAX_LINE]
    if long:
        return "silent", f"an error line of {len(long[0])} characters (the cap is {MAX_LINE})"
    if case.out_check is not None:
        problem = case.out_check(result.out)
        if problem:
            return "silent", f"stdout: {problem}"
    if changed or left or present:
        return "lost", f"changed {changed}, left behind {left}, should be absent {present}"
    return "clean", ""
