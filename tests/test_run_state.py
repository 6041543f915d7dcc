"""The run is one list of stages over a typed RunState (truthprune.run.pipeline.STAGES).

Why these checks: before the refactor a run carried an untyped ``plan.cache`` dict (dense
activations, truth sets, a profile written and never read) and the dense probe stage returned a
``{"pending": True}`` placeholder that a later stage filled in. The greps keep those shapes out
of core; the stage tests check that every stage is a RunState -> RunState function and that the
order is written once.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import re
import tokenize
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "core" / "truthprune"


def _code_and_strings(path: Path) -> str:
    """The file as written, without its comments (docstrings stay: they are strings)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for tok in tokenize.generate_tokens(io.StringIO("".join(lines)).readline):
        if tok.type == tokenize.COMMENT:
            (row, col), end = tok.start, tok.end[1]
            lines[row - 1] = lines[row - 1][:col] + lines[row - 1][end:]
    return "".join(lines)


@pytest.mark.parametrize("pattern, what", [
    (r"\.cache\s*\[", "an untyped cache dict indexed on the plan/state"),
    (r"\.cache\.(get|setdefault)\(", "an untyped cache dict on the plan/state"),
    (r"pending", "a placeholder result filled in later"),
])
def test_core_has_no_side_channel(pattern, what):
    hits = [f.relative_to(CORE).as_posix() for f in sorted(CORE.rglob("*.py")) if re.search(pattern, _code_and_strings(f), re.I)]
    assert not hits, f"{what} ({pattern!r}) in {hits}; put the value on truthprune.run.state.RunState instead"


def test_the_grep_sees_a_placeholder(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('def stage(plan):\n    plan.cache["dense_acts"] = 1\n    return {"pending": True}\n')
    text = _code_and_strings(bad)
    assert re.search(r"\.cache\s*\[", text) and re.search("pending", text)
    commented = tmp_path / "commented.py"
    commented.write_text("x = 1  # a comment may say pending\n")
    assert _code_and_strings(commented) == "x = 1  \n"



def test_every_stage_maps_a_run_state_to_a_run_state():
    from truthprune.run.pipeline import STAGES
    from truthprune.run.state import RunState

    names = [s.name for s in STAGES]
    assert len(names) == len(set(names))
    assert names.index("dense-eval") < names.index("dense-truth") < names.index("prune") < names.index("pruned-eval") \
        < names.index("truth-compare") < names.index("report") < names.index("save") < names.index("write-report")
    for stage in STAGES:
        params = list(inspect.signature(stage.run).parameters)
        assert len(params) == 1, f"stage {stage.name} takes {params}, not just the state"
    assert dataclasses.is_dataclass(RunState) and RunState.__dataclass_params__.frozen
    assert "cache" not in {f.name for f in dataclasses.fields(RunState)}


def test_the_stage_order_is_written_once():
    """run, prune and sweep execute pipeline.STAGES: no command calls the stage functions itself."""
    stage_fns = ("calibrate(", "prune_model(", "dense_eval(", "pruned_eval(", "truth_profile(", "build_report(")
    for f in [CORE / "cli" / "run_cmd.py", CORE / "cli" / "prune_cmd.py", CORE / "run" / "sweep.py"]:
        text = _code_and_strings(f)
        assert "execute(" in text, f
        called = [fn for fn in stage_fns if re.search(r"(?<![\w.])(st\.|stages\.)?" + re.escape(fn), text)]
        assert not called, f"{f.name} calls stage functions {called} itself; compose pipeline.STAGES instead"


def test_plan_has_no_unused_probe_or_cache():
    from truthprune.run.state import RunPlan

    fields = {f.name for f in dataclasses.fields(RunPlan)}
    assert not {"cache", "probe"} & fields
