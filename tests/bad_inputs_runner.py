"""Running one bad-input row in this process (tests/test_bad_inputs*.py): the shared inputs,
placeholders, the plan-time guard, fake plugins on sys.path, and the judging of the result."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import bad_inputs_data as data
import bad_inputs_data3 as data3
import bad_inputs_rows as rows1
from bad_inputs_lib import TALLY, Case, invoke, judge, leftovers, snapshot
from truthprune.testing.pytest_fixtures import one_thread  # noqa: E402,F401  (autouse: tiny matmuls on one thread)


@pytest.fixture(scope="session")
def base(tmp_path_factory):
    """The shared inputs, plus one finished run (``run_good``) made by the CLI itself."""
    root = data3.build(data.build(tmp_path_factory.mktemp("bad_inputs")))
    result = invoke([*(a.replace("{D}", str(root)) for a in rows1.RUN), "--out", str(root / "run_good")], cwd=root)
    assert result.code == 0 and result.exc is None, result.exc or result.err[-3000:]
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return SimpleNamespace(root=root, dead_pid=proc.pid)  # dead_pid: a process that has exited


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fmt(text: str, ctx) -> str:
    text = text.replace("{D}", str(ctx.base)).replace("{C}", str(ctx.case))
    return text.replace("{PORT}", str(_free_port())) if "{PORT}" in text else text


def _no_model_load(monkeypatch) -> None:
    """Rows that must fail at plan time: loading the model is a failure of the row."""
    import truthprune
    import truthprune.models.loading as loading

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded, but this input must be refused before any work")

    monkeypatch.setattr(truthprune, "load_model", refuse)  # first: reading it caches the real one in the facade
    monkeypatch.setattr(loading, "load_model", refuse)


def _with_plugins(keys: list[str], base: Path):
    """Put fake third-party distributions on sys.path for one case; returns the undo function."""
    from truthprune.plugin.registry import reset_registry

    paths = [str(base / f"plug_{k}") for k in keys]
    sys.path[:0] = paths
    importlib.invalidate_caches()
    reset_registry()

    def undo():
        for p in paths:
            sys.path.remove(p)
        for name in [m for m in sys.modules if m.startswith("tpbad_")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        reset_registry()

    return undo


def run_case(case: Case, ctx, monkeypatch) -> tuple[str, str]:
    """Set up, run and judge one row; returns (category, explanation) and counts it."""
    if case.setup is not None:
        case.setup(ctx)
    keep = [Path(_fmt(k, ctx)) if k.startswith("{") else ctx.case / k for k in case.keep]
    before = snapshot(keep)
    if case.plan_time:
        _no_model_load(monkeypatch)
    if case.patch is not None:
        case.patch(monkeypatch, ctx)
    undo = _with_plugins(case.plugins, ctx.base) if case.plugins else None
    try:
        env = {k: (None if v is None else _fmt(v, ctx)) for k, v in case.env.items()}
        result = invoke([_fmt(a, ctx) for a in case.argv], env=env, cwd=ctx.case / (case.cwd or ""))
    finally:
        if undo is not None:
            undo()
    after = snapshot(keep)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    planted = [str(ctx.case / p) for p in case.planted]
    left = [p for p in leftovers([ctx.case, ctx.base]) if not any(p == q or p.startswith(q + "/") for q in planted)]
    present = [a for a in case.absent if (ctx.case / a).exists()]
    if case.post is not None:
        problem = case.post(ctx)
        if problem:
            changed.append(f"post-check: {problem}")
    category, why = judge(case, result, changed, left, present)
    TALLY.add(category)
    return category, why


