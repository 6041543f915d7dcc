"""Fifth part of the bad-input table: no output may replace an input, however it is reached
(a symbolic link, ``..``, a hard link, a directory holding it), and finetune's own paths
(--save, --checkpoint-dir, non-finite settings, a diverging loss). Setups from bad_inputs_rows3."""

from __future__ import annotations

import shutil

from bad_inputs_lib import Case
from bad_inputs_rows import PROBE, PRUNE, RUN, _copy_run
from bad_inputs_rows2 import _both, _copy_model, _marked
from bad_inputs_rows3 import FINETUNE, NOT_OURS, TRUTHFULNESS, _file, _hardlink, _home, _link, _project, _swap, _with


def input_rows() -> list[Case]:
    """No output may be or contain an input, however it is reached."""
    prune_m = _with(PRUNE, "--model", "{C}/m")
    probe_td = _with(PROBE, "--truth-data", "{C}/td")
    copy_td = lambda ctx: shutil.copytree(ctx.base / "truth" / "ok", ctx.case / "td")  # noqa: E731
    return [
        Case("input/prune-save-link-to-model", [*prune_m, "--save", "{C}/l", "--overwrite"],
             setup=_both(_copy_model, _link("l", "m")), msg="would replace --model", keep=["m"]),
        Case("input/prune-save-dotdot-model", [*prune_m, "--save", "{C}/x/../m", "--overwrite"],
             setup=_both(_copy_model, lambda ctx: (ctx.case / "x").mkdir()), msg="would replace --model", keep=["m"]),
        Case("input/prune-save-model-via-link-parent", [*prune_m, "--save", "{C}/lp/m", "--overwrite"],
             setup=_both(_copy_model, _link("lp", ".")), msg="would replace --model", keep=["m"]),
        Case("input/prune-save-parent-of-model", [*prune_m, "--save", "{C}", "--overwrite"], cwd="w",
             setup=_both(_copy_model, lambda ctx: (ctx.case / "w").mkdir()), msg="would replace --model", keep=["m"]),
        Case("input/run-save-holds-model", [*RUN, "--model", "{C}/mm/m", "--out", "{C}/o", "--save", "{C}/mm", "--overwrite"],
             setup=lambda ctx: shutil.copytree(ctx.base / "tiny", ctx.case / "mm" / "m"), msg="would replace --model",
             keep=["mm"]),
        Case("input/run-out-is-model-link", [*RUN, "--model", "{C}/l", "--out", "{C}/m", "--overwrite"],
             setup=_both(_copy_model, _link("l", "m")), msg="would replace --model", keep=["m"]),
        Case("input/run-out-holds-config", [*RUN, "--config", "{C}/o/run.toml", "--out", "{C}/o", "--overwrite"],
             setup=_file("o/run.toml", "sparsity = 0.4\n"), msg="would replace --config", keep=["o"]),
        Case("input/run-out-marked-holds-config", [*RUN, "--config", "{C}/o/run.toml", "--out", "{C}/o", "--overwrite"],
             setup=_both(_marked("o", "run"), _file("o/run.toml", "sparsity = 0.4\n")), msg="would replace --config",
             keep=["o"]),
        Case("input/prune-save-holds-config", [*PRUNE, "--config", "{C}/s/c.toml", "--save", "{C}/s", "--overwrite"],
             setup=_file("s/c.toml", "nsamples = 4\n"), msg="would replace --config", keep=["s"]),
        Case("input/run-out-hardlink-dir-of-config", [*RUN, "--config", "{C}/a/run.toml", "--out", "{C}/b", "--overwrite"],
             setup=_both(_file("a/run.toml", "sparsity = 0.4\n"), lambda ctx: (ctx.case / "b").mkdir(),
                         _hardlink("b/run.toml", "a/run.toml")), msg=NOT_OURS, keep=["a", "b"]),
        Case("input/probe-out-truth-csv", [*probe_td, "--out", "{C}/td/cities.csv", "--overwrite"], setup=copy_td,
             msg="part of --truth-data", keep=["td"]),
        Case("input/probe-out-truth-dir", [*probe_td, "--out", "{C}/td", "--overwrite"], setup=copy_td,
             msg="would replace --truth-data", keep=["td"]),
        Case("input/probe-out-parent-of-truth", [*_with(PROBE, "--truth-data", "{C}/data/td"), "--out", "{C}/data",
                                                 "--overwrite"],
             setup=lambda ctx: shutil.copytree(ctx.base / "truth" / "ok", ctx.case / "data" / "td"),
             msg="would replace --truth-data", keep=["data"]),
        Case("input/probe-out-link-to-truth-csv", [*probe_td, "--out", "{C}/l.json", "--overwrite"],
             setup=_both(copy_td, _link("l.json", "td/facts.csv")), msg="would replace --truth-data|symbolic link",
             keep=["td"]),
        Case("input/run-out-holds-ppl-data", [*_with(RUN, "--ppl-data", "{C}/e/eval.txt"), "--out", "{C}/e", "--overwrite"],
             setup=lambda ctx: (ctx.case / "e").mkdir() or shutil.copy(ctx.base / "eval.txt", ctx.case / "e"),
             msg="would replace --ppl-data", keep=["e"]),
        Case("input/run-save-holds-calibration", [*_with(RUN, "--calibration-opt", "path={C}/c/calib.txt"),
                                                  "--out", "{C}/o", "--save", "{C}/c", "--overwrite"],
             setup=lambda ctx: (ctx.case / "c").mkdir() or shutil.copy(ctx.base / "calib.txt", ctx.case / "c"),
             msg="would replace --calibration-opt path", keep=["c"]),
        Case("input/run-out-link-holds-calibration", [*_with(RUN, "--calibration-opt", "path={C}/c/calib.txt"),
                                                      "--out", "{C}/l", "--overwrite"],
             setup=_both(lambda ctx: (ctx.case / "c").mkdir() or shutil.copy(ctx.base / "calib.txt", ctx.case / "c"),
                         _link("l", "c")), msg="would replace --calibration-opt path", keep=["c"]),
        Case("input/compare-out-link-to-run", ["compare", "{C}/r", "{D}/run_good", "--out", "{C}/l", "--overwrite"],
             setup=_both(_copy_run("r"), _link("l", "r")), msg="same path|would replace run directory", keep=["r"]),
        Case("input/compare-out-dotdot-run", ["compare", "{C}/r", "{D}/run_good", "--out", "{C}/x/../r", "--overwrite"],
             setup=_both(_copy_run("r"), lambda ctx: (ctx.case / "x").mkdir()), msg="same path|would replace", keep=["r"]),
        Case("input/prune-activations-inside-save", [*PRUNE, "--save", "{C}/s", "--activations-dir", "{C}/s/acts",
                                                     "--overwrite"], setup=_both(_marked("s"), lambda ctx: (ctx.case / "s" / "acts").mkdir()),
             msg="lies inside --save", keep=["s"]),
        Case("input/truthfulness-out-hardlink-tqa", [*TRUTHFULNESS, "--truthfulqa-data", "{C}/tqa.csv", "--out", "{C}/h.json",
                                                     "--overwrite"],
             setup=_both(lambda ctx: shutil.copy(ctx.base / "tqa" / "ok.csv", ctx.case / "tqa.csv"),
                         _hardlink("h.json", "tqa.csv")), msg="would replace --truthfulqa-data", keep=["tqa.csv"]),
        Case("input/truthfulness-out-in-truth-data", [*TRUTHFULNESS, "--truth-data", "{C}/td", "--out", "{C}/td/x.json",
                                                      "--overwrite"],
             setup=_both(copy_td, _file("td/x.json", '{"mine": 1}')), msg="part of --truth-data", keep=["td"]),
        Case("input/truthfulness-out-is-model", [*TRUTHFULNESS[:2], "--model", "{C}/m", *TRUTHFULNESS[4:], "--out",
                                                 "{C}/m/config.json", "--overwrite"], setup=_copy_model,
             msg="part of --model|would replace --model", keep=["m"]),
    ]


def finetune_rows() -> list[Case]:
    """finetune never deletes its model, another input or a --checkpoint-dir it did not create."""
    ft_m = _swap(_swap(FINETUNE, "{D}/tiny", "{C}/m"), "{C}/ft", "{C}/ft")
    return [
        Case("finetune/save-is-model", _swap(ft_m, "{C}/ft", "{C}/m") + ["--overwrite"], setup=_copy_model,
             msg="would replace --model", keep=["m"]),
        Case("finetune/save-link-to-model", _swap(ft_m, "{C}/ft", "{C}/l") + ["--overwrite"],
             setup=_both(_copy_model, _link("l", "m")), msg="would replace --model", keep=["m"]),
        Case("finetune/save-parent-of-model", _swap(ft_m, "{C}/ft", "{C}") + ["--overwrite"], cwd="w",
             setup=_both(_copy_model, lambda ctx: (ctx.case / "w").mkdir()), msg="would replace --model|working", keep=["m"]),
        Case("finetune/checkpoint-dir-is-model", [*ft_m, "--checkpoint-dir", "{C}/m"], setup=_copy_model,
             msg="--checkpoint-dir .* overlaps --model", keep=["m"]),
        Case("finetune/checkpoint-dir-contains-model", [*ft_m, "--checkpoint-dir", "{C}"], cwd="w",
             setup=_both(_copy_model, lambda ctx: (ctx.case / "w").mkdir()), msg="--checkpoint-dir", keep=["m"]),
        Case("finetune/checkpoint-dir-is-save", [*ft_m, "--checkpoint-dir", "{C}/ft"], setup=_copy_model,
             msg="overlaps --save", keep=["m"]),
        Case("finetune/checkpoint-dir-holds-save", [*_swap(ft_m, "{C}/ft", "{C}/ck/ft"), "--checkpoint-dir", "{C}/ck"],
             setup=_copy_model, msg="overlaps --save", keep=["m"]),
        Case("finetune/checkpoint-dir-holds-calibration", [*FINETUNE[:8], "path={C}/c/calib.txt", *FINETUNE[9:],
                                                           "--checkpoint-dir", "{C}/c"],
             setup=lambda ctx: (ctx.case / "c").mkdir() or shutil.copy(ctx.base / "calib.txt", ctx.case / "c"),
             msg="overlaps --calibration-opt path", keep=["c"]),
        Case("finetune/checkpoint-dir-cwd", [*FINETUNE, "--checkpoint-dir", "."], cwd="w",
             setup=lambda ctx: (ctx.case / "w").mkdir(), msg="working directory"),
        Case("finetune/checkpoint-dir-home", [*FINETUNE, "--checkpoint-dir", "~"], env={"HOME": "{C}/home"}, setup=_home(),
             msg="home directory", keep=["home"]),
        Case("finetune/checkpoint-dir-is-file", [*FINETUNE, "--checkpoint-dir", "{C}/f"], setup=_file("f", "x"),
             msg="not a directory", keep=["f"]),
        Case("finetune/save-project-overwrite", [*_swap(FINETUNE, "{C}/ft", "{C}/proj"), "--overwrite"],
             setup=_project("proj"), msg=NOT_OURS, keep=["proj"]),
        Case("finetune/save-exists", [*_swap(FINETUNE, "{C}/ft", "{D}/run_good")], msg="already exists",
             keep=["{D}/run_good"]),
        Case("finetune/lr-inf", [*FINETUNE, "--lr", "inf"], msg="--lr inf is not a finite number"),
        Case("finetune/lr-nan", [*FINETUNE, "--lr", "nan"], msg="--lr"),
        Case("finetune/alpha-inf", [*FINETUNE, "--alpha", "inf"], msg="--alpha inf is not a finite number"),
        Case("finetune/dropout-nan", [*FINETUNE, "--dropout", "nan"], msg="--dropout nan|invalid value"),
        Case("finetune/checkpoint-dir-foreign-files", [*FINETUNE, "--checkpoint-dir", "{C}/exp"],
             setup=_file("exp/notes.txt", "mine\n"), msg="holds files finetune did not write", keep=["exp"]),
        Case("finetune/checkpoint-dir-foreign-state-pt", [*FINETUNE, "--checkpoint-dir", "{C}/exp", "--resume"],
             setup=_both(_file("exp/state.pt", b"my own state"), _file("exp/train.py", "x")),
             msg="holds files finetune did not write", keep=["exp"]),
        Case("finetune/resume-damaged-checkpoint", [*FINETUNE, "--checkpoint-dir", "{C}/ck", "--resume"],
             setup=_file("ck/state.pt", b"cut short"), plan_time=False, msg="does not read back", keep=["ck"], absent=["ft"]),
        Case("finetune/existing-empty-checkpoint-dir-kept", [*_with(FINETUNE, "--steps", "2"), "--checkpoint-dir", "{C}/e",
                                                             "--checkpoint-every", "1"],
             setup=lambda ctx: (ctx.case / "e").mkdir(), code=0, plan_time=False, msg="merged model",
             post=lambda ctx: None if (ctx.case / "e").is_dir() and not any((ctx.case / "e").iterdir()) else
             "the existing --checkpoint-dir was removed or left with files"),
        Case("finetune/loss-diverges", [*_with(FINETUNE, "--steps", "4"), "--lr", "1e30"], plan_time=False,
             msg="training diverged: the loss is .* nothing was saved", absent=["ft", "ft.lora-resume"]),
    ]


def all_rows() -> list[Case]:
    return [*input_rows(), *finetune_rows()]
