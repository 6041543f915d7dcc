"""Every command in README.md is valid as written.

The commands are taken from the README itself (its bash blocks, and inline commands such as
`torchrun ... -m truthprune prune ...`), in the order a reader meets them, and each is run from a
directory laid out like the repository root (``examples/`` and ``../shared/data`` where they
are). A command that loads a model runs with ``--dry-run``: every check, the plan, no model. The
others (``plugins``, ``config show``, ``allocate``, ``compare``) are fast and run for real. After
each command a small stand-in of what it would have written (a tiny checkpoint for ``--save``, a
report for ``run --out``) is put in place, so a later command that reads an earlier one's output
(``--model pruned/wanda``, ``compare runs/demo runs/wanda``) is checked against the name the
README really used. The test fails when an example stops being valid, when two examples write
the same output, or when a make target the README names is gone.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tiny_models (pytest runs in importlib mode)

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHARED = ROOT.parent / "shared" / "data"
RUN_FOR_REAL = {("plugins",), ("config", "show"), ("allocate",), ("compare",), ("report",)}


def _commands(text: str) -> list[list[str]]:
    """Shell commands of the README's bash blocks and inline `truthprune ...`/`torchrun ...` spans."""
    out: list[list[str]] = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                out.append(words)
    for span in re.findall(r"`((?:truthprune|torchrun) [^`]+)`", text):
        words = shlex.split(span)
        if not any(w.startswith("--") for w in words):  # prose naming a command ("`truthprune run`"), not an example
            continue
        if words not in out:
            out.append(words)
    return out


def readme_commands() -> list[list[str]]:
    return _commands(README.read_text())


def _truthprune_args(words: list[str]) -> list[str] | None:
    """The arguments after ``truthprune`` (torchrun's ``-m truthprune ...`` included), else None."""
    if words[0] == "truthprune":
        return words[1:]
    if words[0] == "torchrun" and "-m" in words:
        k = words.index("-m")
        return words[k + 2:] if words[k + 1] == "truthprune" else None
    return None


def _flag(args: list[str], name: str) -> str | None:
    for k, a in enumerate(args):
        if a == name and k + 1 < len(args):
            return args[k + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def _outputs(args: list[str]) -> list[str]:
    return [v.rstrip("/") for v in (_flag(args, "--out"), _flag(args, "--save")) if v]


def test_readme_has_the_commands_and_make_targets():
    cmds = readme_commands()
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    makes = [c for c in cmds if c[0] == "make"]
    assert {"run", "test", "test-fast"} <= {c[1] for c in makes}
    for c in makes:
        assert c[1] in targets, f"README names `make {c[1]}`, which the Makefile lacks"
    tp = [a for a in map(_truthprune_args, cmds) if a is not None]
    assert len(tp) >= 15, "the README's examples were not found"
    commands = {a[0] for a in tp}
    assert {"run", "prune", "plugins", "probe", "eval", "compare", "allocate", "config", "finetune"} <= commands


def test_make_run_is_the_documented_demo():
    recipe = re.search(r"^run: .*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert recipe == "truthprune run --pruner tplo --probe logreg --out runs/demo --overwrite"
    assert shlex.split(recipe) in readme_commands()


def test_each_example_writes_its_own_output():
    seen: dict[str, str] = {}
    for words in readme_commands():
        args = _truthprune_args(words)
        if args is None:
            continue
        for out in _outputs(args):
            assert out not in seen, f"{out!r} is written by both `{seen[out]}` and `{' '.join(words)}`"
            seen[out] = " ".join(words)
        if args[0] in ("run", "sweep") and not _flag(args, "--out") and "--dry-run" not in args:
            pytest.fail(f"`{' '.join(words)}` writes the default runs/latest; give it its own --out")


def test_the_parser_reads_blocks_and_inline_spans():
    text = ("x\n```bash\ntruthprune run --out runs/a   # note\nmake run\n```\nand `torchrun --nproc-per-node 2 -m truthprune "
            "prune --save p`, but not `truthprune run` alone.\n")
    cmds = _commands(text)
    assert cmds == [["truthprune", "run", "--out", "runs/a"], ["make", "run"],
                    ["torchrun", "--nproc-per-node", "2", "-m", "truthprune", "prune", "--save", "p"]]
    assert _truthprune_args(cmds[2]) == ["prune", "--save", "p"] and _outputs(cmds[0]) == ["runs/a"]


# ----------------------------------------------------------------------------- stand-ins


def _tiny_checkpoint(path: Path) -> None:
    from tiny_models import build, word_tokenizer

    model = build("llama")
    model.config.max_position_embeddings = 2048  # the examples' 512-token windows fit, as in SmolLM2
    path.mkdir(parents=True)
    model.save_pretrained(path)
    word_tokenizer("smollm2").save_pretrained(path)


def _stand_in_report(path: Path, pruner: str) -> None:
    """A small valid report.json, as `truthprune run` writes it (what compare and report read)."""
    layers = [{"index": i, "target": 0.5, "achieved": 0.5, "params": 100} for i in range(2)]
    est = lambda v: {"value": v, "ci": [v - 0.1, v + 0.1]}  # noqa: E731
    report = {
        "truthprune_report": 1,
        "config": {"model": "smollm2-135m", "sparsity": 0.5, "pruner": pruner, "eval": ["ppl", "probe"], "ppl_data": "pydoc",
                   "seqlen": 512, "ppl_max_windows": None, "probe": "logreg", "probe_options": {}, "truth_data": None,
                   "truth_datasets": None, "chat_template": False, "seed": 0},
        "model": {"spec": "smollm2-135m", "path": "smollm2-135m", "layers": 2, "dtype": "float32"},
        "seed": 0,
        "calibration": {"sources": ["pydoc"], "nsamples": 32, "seqlen": 512},
        "pruning": {"pruner": pruner, "allocator": "uniform", "layers": layers, "overall": 0.5, "allocation": [0.5, 0.5]},
        "dense": {"ppl": {"ppl": 15.0, "windows": 16, "seqlen": 512}, "probe": {"best_accuracy": 0.8, "layer_accuracy": [0.7, 0.8]}},
        "pruned": {"ppl": {"ppl": 30.0, "windows": 16, "seqlen": 512},
                   "probe": {"best_accuracy": 0.7, "layer_accuracy": [0.6, 0.7],
                             "retention": {"layer": 1, "dense_accuracy": est(0.8), "pruned_accuracy": est(0.7),
                                           "retention": est(0.67), "transfer_retention": est(0.3)}}},
    }
    path.mkdir(parents=True)
    (path / "report.json").write_text(json.dumps(report))


def _lm_eval_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("lm_eval") is not None


def _workdir(tmp_path: Path) -> Path:
    """A directory laid out like the repository root: examples/ here, the shared data at ../shared/data."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "examples").symlink_to(ROOT / "examples")
    if SHARED.is_dir():
        (tmp_path / "shared").mkdir()
        (tmp_path / "shared" / "data").symlink_to(SHARED)
    return repo


def test_every_readme_command_is_valid_at_plan_time(tmp_path, monkeypatch, capsys):
    from truthprune.cli.main import main

    repo = _workdir(tmp_path)
    monkeypatch.chdir(repo)
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    skipped = []
    for words in readme_commands():
        args = _truthprune_args(words)
        if args is None:
            continue
        shown = " ".join(words)
        if any("../shared/data" in a for a in args) and not SHARED.is_dir():
            skipped.append(shown)
        else:
            real = any(tuple(args[:len(k)]) == k for k in RUN_FOR_REAL)
            argv = args if real else [*args, "--dry-run"]
            with pytest.raises(SystemExit) as exc:
                main(argv)
            out, err = capsys.readouterr()
            if "--lm-eval-tasks" in args and not _lm_eval_installed():
                assert exc.value.code == 2 and "pip install 'lm-eval" in err, (shown, err)
            else:
                assert exc.value.code == 0, f"README command failed at plan time: {shown}\n{err[-2000:]}"
                assert real or "plan" in out, (shown, out)
        # what the command would have written, for the commands after it
        for flag, value in (("--save", _flag(args, "--save")), ("--out", _flag(args, "--out"))):
            if not value or args[0] in ("compare",) or Path(value).exists():
                continue
            if flag == "--save":
                _tiny_checkpoint(repo / value)
            elif args[0] == "run":
                _stand_in_report(repo / value, _flag(args, "--pruner") or "wanda")
    assert not [p for p in repo.iterdir() if p.name not in ("examples", "runs", "pruned")], "a dry run wrote something"
    if skipped:
        pytest.skip(f"../shared/data is absent: {len(skipped)} README commands not checked")
