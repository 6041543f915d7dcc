"""Second half of the bad-input table: reports, output safety, locks and stale temporaries,
simulated interrupts, plugins, allocate and sweep (see bad_inputs_rows for the conventions)."""

from __future__ import annotations

import os
import shutil
import socket
import threading

from bad_inputs_lib import Case
from bad_inputs_rows import ALLOC, ALREADY, EXISTS, OUT, PROBE, PRUNE, RUN, SAVE, SWEEP, _copy_run, _set

LIVE = os.getppid()  # a process that exists and is not this one


def _lock(rel: str, pid: int | None = None, release_after: float | None = None):
    """setup: a lock file {C}/REL held by ``pid`` (default: a live process); optionally removed later."""

    def setup(ctx):
        path = ctx.case / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{pid if pid is not None else LIVE} {socket.gethostname()}\n")
        if release_after is not None:
            threading.Timer(release_after, lambda: path.unlink(missing_ok=True)).start()

    return setup


def _both(*setups):
    def setup(ctx):
        for s in setups:
            s(ctx)

    return setup


def _dir(rel: str, files: dict[str, str] | None = None):
    def setup(ctx):
        d = ctx.case / rel
        d.mkdir(parents=True, exist_ok=True)
        for name, text in (files or {"sentinel.txt": "previous output"}).items():
            (d / name).write_text(text)

    return setup


def _marked(rel: str, kind: str = "prune", files: dict[str, str] | None = None):
    """setup: a previous truthprune output (a directory with its output marker) at {C}/REL."""

    def setup(ctx):
        from truthprune.outputs.markers import write_marker

        _dir(rel, files)(ctx)
        write_marker(ctx.case / rel, kind)

    return setup


def _file(rel: str, text: str = "previous file"):
    def setup(ctx):
        (ctx.case / rel).write_text(text)

    return setup


def _dead(rel_fmt: str, files=None):
    """setup: a temporary named with a PID that no longer exists (ctx.dead_pid)."""

    def setup(ctx):
        _dir(rel_fmt.format(pid=ctx.dead_pid), files)(ctx)

    return setup


def _copy_model(ctx):
    shutil.copytree(ctx.base / "tiny", ctx.case / "m")


def _copy_calib(ctx):
    (ctx.case / "data").mkdir()
    shutil.copy(ctx.base / "calib.txt", ctx.case / "data" / "calib.txt")


def _remember_inode(rel: str):
    def setup(ctx):
        ctx.inode = (ctx.case / rel).stat().st_ino

    return setup


def _same_directory(rel: str):
    """post-check: the directory is still the same one (a shell inside it is not stranded), nothing nested."""

    def post(ctx):
        d = ctx.case / rel
        nested = sorted(p.name for p in d.iterdir() if p.is_dir())
        return f"nested {nested}" if nested else ("the directory was replaced" if d.stat().st_ino != ctx.inode else None)

    return post


def _swap_model(args: list[str]) -> list[str]:
    return [("{C}/m" if a == "{D}/tiny" else a) for a in args]


REPORT_EDITS = {
    "sparsity-string": (_set("config.sparsity", "0.5"), "config.sparsity"),
    "layers-oops": (_set("pruning.layers", "oops"), "pruning.layers"),
    "model-layers-oops": (_set("model.layers", "oops"), "model.layers"),
    "layer-without-achieved": (lambda d: d["pruning"]["layers"][0].pop("achieved"), "achieved"),
    "overall-string": (_set("pruning.overall", "x"), "pruning.overall"),
    "stage-seconds-string": (_set("stages.0.seconds", "1"), "stages.0.seconds"),
    "seed-string": (_set("seed", "0"), "seed"),
    "report-version-2": (_set("truthprune_report", 2), "not a truthprune report"),
    "ppl-string": (_set("dense.ppl.ppl", "x"), "dense.ppl.ppl"),
    "nsamples-string": (_set("calibration.nsamples", "8"), "calibration.nsamples"),
    "model-number": (_set("config.model", 5), "config.model"),
    "allocation-string": (_set("pruning.allocation", "x"), "pruning.allocation"),
    "plots-number": (_set("plots", 5), "plots"),
    "no-pruning": (lambda d: d.pop("pruning"), "lacks pruning"),
    "lm-eval-string": (_set("dense.lm_eval", "x"), "dense.lm_eval"),
    "lm-eval-tasks-string": (_set("pruned.lm_eval", {"tasks": "x"}), "pruned.lm_eval.tasks"),
    "eval-string": (_set("config.eval", "ppl"), "config.eval"),
    "versions-number": (_set("versions", {"torch": 2}), "versions.torch"),
    "latin1": ("{\"x\": \"caf\xe9\"}".encode("latin-1"), "not UTF-8"),
    "binary": (bytes(range(256)), "binary|not UTF-8"),
    "nul": (b"\0" * 32, "binary"),
    "empty": (b"", "not valid JSON"),
    "deep": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "list": (b"[1, 2]", "not a truthprune report"),
}


def report_rows() -> list[Case]:
    rows = []
    for name, (edit, msg) in REPORT_EDITS.items():
        rows.append(Case(f"report/report-{name}", ["report", "{C}/r"], setup=_copy_run("r", edit), msg=msg, keep=["r"]))
        rows.append(Case(f"report/compare-{name}", ["compare", "{C}/r", "{D}/run_good"], setup=_copy_run("r", edit),
                         msg=msg, keep=["r"]))
    rows += [
        Case("report/report-missing-dir", ["report", "{C}/nope"], msg="no report.json"),
        Case("report/compare-one-run", ["compare", "{D}/run_good"], msg="at least two"),
    ]
    return rows


def output_rows() -> list[Case]:
    long = "x" * 300
    return [
        Case("out/run-out-equals-save", [*RUN, "--out", "{C}/x", "--save", "{C}/x", "--overwrite"], setup=_dir("x"),
             msg="same path", keep=["x"]),
        Case("out/run-save-inside-out", [*RUN, "--out", "{C}/x", "--save", "{C}/x/model"], msg="nested"),
        Case("out/run-out-inside-save", [*RUN, "--out", "{C}/x/report", "--save", "{C}/x"], msg="nested"),
        Case("out/run-out-under-file", [*RUN, "--out", "{D}/afile/sub"], msg="is a file"),
        Case("out/run-out-is-file-overwrite", [*RUN, "--out", "{C}/f", "--overwrite"], setup=_file("f"),
             msg="not a directory", keep=["f"]),
        Case("out/run-out-exists", [*RUN, *EXISTS], msg=ALREADY, keep=["{D}/run_good"]),
        Case("out/run-out-empty", [*RUN, "--out", ""], msg="empty"),
        Case("out/run-out-too-long", [*RUN, "--out", "{C}/" + long], msg="longer than"),
        Case("out/run-out-nul", [*RUN, "--out", "{C}/a\0b"], msg="NUL"),
        Case("out/run-out-root", [*RUN, "--out", "/", "--overwrite"], msg="root"),
        Case("out/run-save-under-file", [*RUN, *OUT, "--save", "{D}/afile/sub"], msg="is a file"),
        Case("out/run-save-too-long", [*RUN, *OUT, "--save", "{C}/" + long], msg="longer than"),
        Case("out/prune-save-under-file", [*PRUNE, "--save", "{D}/afile/sub"], msg="is a file"),
        Case("out/prune-save-empty", [*PRUNE, "--save", ""], msg="needs --save|empty"),
        Case("out/prune-save-exists", [*PRUNE, "--save", "{D}/run_good"], msg=ALREADY, keep=["{D}/run_good"]),
        Case("out/prune-save-file-overwrite", [*PRUNE, "--save", "{C}/f", "--overwrite"], setup=_file("f"),
             msg="not a directory", keep=["f"]),
        Case("out/sweep-out-is-file", [*SWEEP, "--out", "{D}/afile"], msg="is a file"),
        Case("out/sweep-out-under-file", [*SWEEP, "--out", "{D}/afile/sub"], msg="is a file"),
        Case("out/sweep-save-under-file", [*SWEEP, "--out", "{C}/sw", "--save", "{D}/afile"], msg="is a file"),
        Case("out/probe-out-existing-dir", [*PROBE, "--out", "{C}/d"], setup=_dir("d"), msg=ALREADY, keep=["d"]),
        Case("out/probe-out-existing-dir-overwrite", [*PROBE, "--out", "{C}/d", "--overwrite"], setup=_dir("d"),
             msg="is a directory", keep=["d"]),
        Case("out/probe-out-existing-file", [*PROBE, "--out", "{C}/p.json"], setup=_file("p.json"), msg=ALREADY,
             keep=["p.json"]),
        Case("out/probe-out-under-file", [*PROBE, "--out", "{D}/afile/p.json"], msg="is a file"),
        Case("out/probe-plot-under-file", [*PROBE, "--plot", "{D}/afile/plots"], msg="is a file"),
        Case("out/compare-out-file-overwrite", ["compare", "{D}/run_good", "{C}/r", "--out", "{C}/f", "--overwrite"],
             setup=_both(_copy_run("r"), _file("f")), msg="not a directory", keep=["f", "r"]),
        Case("out/compare-out-is-a-run", ["compare", "{C}/r", "{D}/run_good", "--out", "{C}/r", "--overwrite"],
             setup=_copy_run("r"), msg="same path", keep=["r"]),
        Case("out/compare-out-contains-a-run", ["compare", "{C}/runs/r", "{D}/run_good", "--out", "{C}/runs", "--overwrite"],
             setup=_copy_run("runs/r"), msg="nested", keep=["runs"]),
        Case("out/compare-out-exists", ["compare", "{C}/r", "{D}/run_good", "--out", "{C}/x"],
             setup=_both(_copy_run("r"), _dir("x")), msg=ALREADY, keep=["x"]),
        Case("out/compare-out-under-file", ["compare", "{C}/r", "{D}/run_good", "--out", "{D}/afile/c"],
             setup=_copy_run("r"), msg="is a file"),
        Case("out/run-save-replaces-model", _swap_model([*RUN, *OUT, "--save", "{C}/m", "--overwrite"]), setup=_copy_model,
             msg="would replace --model", keep=["m"]),
        Case("out/prune-save-replaces-model", _swap_model([*PRUNE, "--save", "{C}/m", "--overwrite"]), setup=_copy_model,
             msg="would replace --model", keep=["m"]),
        Case("out/run-out-contains-calibration", [*RUN, "--out", "{C}/data", "--overwrite", "--calibration-opt",
                                                  "path={C}/data/calib.txt"], setup=_copy_calib,
             msg="would replace --calibration-opt path", keep=["data"]),
        Case("out/probe-out-replaces-model", [*_swap_model(PROBE), "--out", "{C}/m", "--overwrite"], setup=_copy_model,
             msg="would replace --model", keep=["m"]),
        Case("out/report-dot", ["report", "."], cwd="r", setup=_both(_copy_run("r"), _remember_inode("r")), code=0,
             msg="report written", keep=["r/report.json"], post=_same_directory("r")),
    ]


def stale_rows() -> list[Case]:
    return [
        Case("stale/report-removes-dead-temp", ["report", "{C}/r"], code=0, warn="removed .r.tmp-",
             setup=_both(_copy_run("r"), _dead(".r.tmp-{pid}-0123abcd")), keep=["r/report.json"]),
        Case("stale/report-keeps-live-temp", ["report", "{C}/r"], code=0, planted=[f".r.tmp-{LIVE}-0123abcd"],
             setup=_both(_copy_run("r"), _dir(f".r.tmp-{LIVE}-0123abcd")), keep=[f".r.tmp-{LIVE}-0123abcd"]),
        Case("stale/compare-restores-parked-output", ["compare", "{C}/r", "{D}/run_good", "--out", "{C}/x"],
             setup=_both(_copy_run("r"), _dead(".x.old-{pid}-0123abcd", {"compare.md": "previous"})), msg=ALREADY,
             warn="restored the previous output",
             post=lambda ctx: None if (ctx.case / "x" / "compare.md").read_text() == "previous" else "not restored"),
        Case("stale/compare-takes-over-dead-lock", ["compare", "{C}/r", "{D}/run_good", "--out", "{C}/x"], code=0,
             setup=_both(_copy_run("r"), lambda ctx: _lock(".x.lock", ctx.dead_pid)(ctx)), msg="comparison written"),
        Case("lock/run-live-lock", [*RUN, *OUT], setup=_lock(".out.lock"), msg="being written", planted=[".out.lock"],
             keep=[".out.lock"]),
        Case("lock/prune-live-lock", [*PRUNE, *SAVE], setup=_lock(".save.lock"), msg="being written", planted=[".save.lock"]),
        Case("lock/compare-live-lock", ["compare", "{C}/r", "{D}/run_good", "--out", "{C}/x"], planted=[".x.lock"],
             setup=_both(_copy_run("r"), _lock(".x.lock")), msg="being written"),
        Case("lock/report-live-lock", ["report", "{C}/r"], setup=_both(_copy_run("r"), _lock(".r.lock")),
             msg="being written", planted=[".r.lock"], keep=["r"]),
        Case("lock/probe-live-lock", [*PROBE, "--out", "{C}/p.json"], setup=_lock(".p.json.lock"), msg="being written",
             planted=[".p.json.lock"]),
        Case("lock/sweep-live-lock", [*SWEEP, "--out", "{C}/sw"], setup=_lock("sw/.magnitude-0.3.lock"),
             msg="being written", planted=["sw/.magnitude-0.3.lock"]),
        Case("lock/prune-wait-until-released", [*PRUNE, *SAVE, "--wait"], setup=_lock(".save.lock", release_after=0.5),
             code=0, msg="pruned", plan_time=False,
             post=lambda ctx: None if (ctx.case / "save" / "model.safetensors").is_file() else "no checkpoint saved"),
    ]


def _raise_interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def _terminated(*args, **kwargs):
    import truthprune.interrupts as interrupts

    interrupts._INTERRUPTED = True  # what the SIGTERM handler records before it unwinds
    raise SystemExit(interrupts.TERMINATED_EXIT)


def _swallowed(*args, **kwargs):
    import truthprune.interrupts as interrupts

    interrupts._INTERRUPTED = True  # what the SIGINT handler records; the code below "swallowed" the exception
    return []


def _patch(target: str, replacement):
    def patch(mp, ctx):
        import truthprune.interrupts as interrupts

        mp.setattr(interrupts, "_INTERRUPTED", False)
        mp.setattr(interrupts, "_SIGNAL", None)
        mp.setattr(target, replacement)

    return patch


def interrupt_rows() -> list[Case]:
    return [
        Case("interrupt/report-rerender", ["report", "{C}/r"], setup=_copy_run("r"), code=130, keep=["r"],
             patch=_patch("truthprune.reporting.plots.report_plots", _raise_interrupt)),
        Case("interrupt/report-dot", ["report", "."], cwd="r", setup=_copy_run("r"), code=130, keep=["r"],
             patch=_patch("truthprune.reporting.plots.report_plots", _raise_interrupt)),
        Case("interrupt/report-dot-swallowed", ["report", "."], cwd="r", setup=_copy_run("r"), code=130, keep=["r"],
             patch=_patch("truthprune.reporting.plots.report_plots", _swallowed)),
        Case("interrupt/report-sigterm", ["report", "{C}/r"], setup=_copy_run("r"), code=143, keep=["r"],
             patch=_patch("truthprune.reporting.plots.report_plots", _terminated)),
        Case("interrupt/run-sigterm-overwrite-save", [*RUN, *OUT, "--save", "{C}/s", "--overwrite"], setup=_marked("s"),
             code=143, keep=["s"], absent=["out"], plan_time=False,
             patch=_patch("truthprune.run.saving.environment_versions", _terminated)),
        Case("interrupt/report-swallowed-interrupt", ["report", "{C}/r"], setup=_copy_run("r"), code=130, keep=["r"],
             patch=_patch("truthprune.reporting.plots.report_plots", _swallowed)),
        Case("interrupt/compare-overwrite", ["compare", "{C}/r", "{D}/run_good", "--out", "{C}/x", "--overwrite"],
             setup=_both(_copy_run("r"), _marked("x", "compare")), code=130, keep=["x"],
             patch=_patch("truthprune.reporting.compare.compare_markdown", _raise_interrupt)),
        Case("interrupt/run-overwrite-report", [*RUN, "--out", "{C}/r", "--overwrite"], setup=_copy_run("r"), code=130,
             keep=["r"], plan_time=False, patch=_patch("truthprune.reporting.report.render_report", _raise_interrupt)),
        Case("interrupt/run-overwrite-save", [*RUN, *OUT, "--save", "{C}/s", "--overwrite"], setup=_marked("s"), code=130,
             keep=["s"], absent=["out"], plan_time=False, patch=_patch("truthprune.run.saving.environment_versions", _raise_interrupt)),
    ]


def plugin_rows() -> list[Case]:
    strict = {"TRUTHPRUNE_STRICT_PLUGINS": "1"}
    p = Case
    return [
        p("plugins/raises-plugins", ["plugins"], code=0, plugins=["raises"], msg="magnitude", warn="boom at import"),
        p("plugins/raises-allocate", ALLOC, code=0, plugins=["raises"], msg="sparsity", warn="boom at import"),
        p("plugins/raises-config-show", ["config", "show"], code=0, plugins=["raises"], msg='"pruner"', warn="boom"),
        p("plugins/raises-strict", ["plugins"], plugins=["raises"], env=strict, msg="boom at import"),
        p("plugins/exit0-allocate", ALLOC, code=0, plugins=["exit0"], msg="sparsity", warn="SystemExit"),
        p("plugins/exit0-plugins", ["plugins"], code=0, plugins=["exit0"], msg="magnitude", warn="SystemExit"),
        p("plugins/exit3-allocate", ALLOC, code=0, plugins=["exit3"], msg="sparsity", warn="SystemExit: 3"),
        p("plugins/keyboardinterrupt-allocate", ALLOC, code=0, plugins=["kbint"], msg="sparsity", warn="KeyboardInterrupt"),
        p("plugins/keyboardinterrupt-plugins", ["plugins"], code=0, plugins=["kbint"], msg="magnitude", warn="KeyboardInterrupt"),
        p("plugins/nonclass-plugins", ["plugins"], code=0, plugins=["nonclass"], msg="magnitude", warn="which is not a"),
        p("plugins/nonclass-allocate", ALLOC, code=0, plugins=["nonclass"], msg="sparsity", warn="which is not a"),
        p("plugins/instance-plugins", ["plugins"], code=0, plugins=["instance"], msg="magnitude", warn="which is not a"),
        p("plugins/instance-name-unavailable", [*RUN, "--pruner", "instancepruner", *OUT], plugins=["instance"],
          msg="unknown pruner"),
        p("plugins/noname-plugins", ["plugins"], code=0, plugins=["noname"], msg="magnitude", warn="name"),
        p("plugins/duplicate-allocate", ALLOC, code=0, plugins=["dupmag"], msg="sparsity", warn="registered twice"),
        p("plugins/duplicate-used", [*RUN, "--pruner", "magnitude", *OUT], plugins=["dupmag"], msg="registered twice"),
        p("plugins/duplicate-other-name-works", [*RUN, "--pruner", "wanda", *EXISTS], plugins=["dupmag"], msg=ALREADY,
          warn="registered twice"),
        p("plugins/duplicate-strict", ALLOC, plugins=["dupmag"], env=strict, msg="registered twice"),
        p("plugins/hook-raises-plugins", ["plugins"], code=0, plugins=["hookraises"], msg="magnitude",
          warn="allocator table missing"),
        p("plugins/hook-raises-allocate", ALLOC, code=0, plugins=["hookraises"], msg="sparsity", warn="allocator table"),
        p("plugins/bad-hook-signature", ["plugins"], code=0, plugins=["badhook"], msg="magnitude", warn="tpbad-badhook"),
        p("plugins/command-hook-raises", ["plugins"], code=0, plugins=["cmdraises"], msg="magnitude",
          warn="command table broken"),
        p("plugins/two-broken", ALLOC, code=0, plugins=["raises", "exit3"], msg="sparsity", warn="(?s)(?=.*boom)(?=.*SystemExit)"),
    ]


def allocate_rows() -> list[Case]:
    stats = {"latin1": "not UTF-8", "binary": "binary|not UTF-8", "nul": "binary", "invalid": "not valid JSON",
             "list": "JSON object", "nokeys": "neither", "strings": "finite numbers", "nan": "finite numbers",
             "deep": "nested too deeply", "adir": "is a directory", "missing": "does not exist"}
    rows = [Case(f"allocate/stats-{n}", ["allocate", "--allocator", "owl", "--stats", f"{{D}}/stats/{n}.json"], msg=m)
            for n, m in stats.items()]
    rows.append(Case("allocate/unknown-allocator", ["allocate", "--allocator", "nosuch", "--stats", "{D}/stats/ok.json"],
                     msg="unknown allocator"))
    return rows


def sweep_rows() -> list[Case]:
    base = [*SWEEP, "--out", "{C}/sw"]

    def swap(flag, value):
        args = list(base)
        args[args.index(flag) + 1] = value
        return args

    return [
        Case("sweep/empty-pruner-item", swap("--pruner", "magnitude,,wanda"), msg="empty item"),
        Case("sweep/sparsity-not-number", swap("--sparsity", "0.5,abc"), msg="not a number"),
        Case("sweep/pruner-twice", swap("--pruner", "wanda,wanda"), msg="twice"),
        Case("sweep/same-directory", swap("--sparsity", "0.5,0.50"), msg="share the directory"),
        Case("sweep/nm", [*base, "--nm", "2:4"], msg="cannot be swept"),
        Case("sweep/unknown-pruner", swap("--pruner", "magnitude,nosuch"), msg="unknown pruner"),
    ]
