"""Third part of the bad-input table: what ``--overwrite`` may replace (docs/reliability.md).

Every row here tries to make a command delete or replace something truthprune did not write:
the working directory or a parent of it, a (fake) home directory, the cache, a device, FIFO,
socket or link, a directory holding other files, a file without the output marker (the inputs
are in bad_inputs_rows5, the device and bind-mount rows in test_bad_inputs_system). All in the
case's temporary directory: home is faked through $HOME, the device is made with mknod in the
case directory (rows4's device test, skipped where that is not permitted), never the real ones.
Acceptance rows replace what truthprune did write (marked, or an older output's known layout).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat

from bad_inputs_lib import Case
from bad_inputs_rows import PROBE, PRUNE, RUN, SWEEP, _copy_run
from bad_inputs_rows2 import _both, _dir, _marked

FIFO_S = "FIFO"
NOT_OURS = "truthprune did not write it"
PNG_BYTES = (b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + b"IHDR" + bytes(13) + b"\0\0\0\0"
             + (0).to_bytes(4, "big") + b"IDAT" + b"\0\0\0\0")
TRUTHFULNESS = "eval truthfulness --model {D}/tiny --device cpu --limit 2".split()
FINETUNE = ("finetune --model {D}/tiny --save {C}/ft --calibration text --calibration-opt path={D}/calib.txt "
            "--nsamples 2 --seqlen 16 --steps 2 --batch-size 2 --device cpu --quiet").split()


def _swap(args: list[str], old: str, new: str) -> list[str]:
    return [new if a == old else a for a in args]


def _with(args: list[str], flag: str, value: str) -> list[str]:
    args = list(args)
    if flag in args:
        args[args.index(flag) + 1] = value
        return args
    return [*args, flag, value]


# ----------------------------------------------------------------------------- setups


def _project(rel: str):
    """setup: somebody's project directory (with a subdirectory to stand in)."""

    def setup(ctx):
        d = ctx.case / rel
        (d / "src").mkdir(parents=True, exist_ok=True)
        (d / "src" / "main.py").write_text("print('hello')\n")
        (d / "README.md").write_text("my project\n")
        (d / "sub").mkdir(exist_ok=True)

    return setup


def _home(rel: str = "home"):
    def setup(ctx):
        d = ctx.case / rel
        (d / ".ssh").mkdir(parents=True, exist_ok=True)
        (d / ".ssh" / "id_test").write_text("not a real key\n")
        (d / "notes.txt").write_text("my notes\n")
        (d / "w").mkdir(exist_ok=True)

    return setup


def _fifo(rel: str):
    """setup: a FIFO at {C}/REL. A watchdog opens it for writing after 20 s: a reader blocked on it
    then gets end-of-file instead of hanging the suite, and the row fails (see _kept)."""

    def setup(ctx):
        path = ctx.case / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        import threading
        import time

        def watchdog():
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                time.sleep(0.5)
                if not os.path.exists(path):
                    return
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                return
            os.close(fd)
            (ctx.case / f".{path.name}.blocked").write_text("a reader blocked on the FIFO")

        threading.Thread(target=watchdog, daemon=True).start()

    return setup


def _socket(rel: str):
    def setup(ctx):
        path = ctx.case / rel
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()  # the socket file stays

    return setup


def _kept(rel: str, test=stat.S_ISFIFO, what: str = "FIFO"):
    """post: {C}/REL is still what it was (a FIFO, a socket, a link) and no reader blocked on a FIFO."""

    def post(ctx):
        path = ctx.case / rel
        blocked = ctx.case / f".{path.name}.blocked"
        if blocked.exists():
            return "a reader blocked on the FIFO until the watchdog released it"
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return f"the {what} is gone"
        return None if test(mode) else f"the {what} was replaced"

    return post


def _link(rel: str, target: str):
    """setup: a symbolic link {C}/REL -> TARGET (relative to the case, or {D}/... absolute)."""

    def setup(ctx):
        dst = target.replace("{D}", str(ctx.base)) if target.startswith("{D}") else str(ctx.case / target)
        os.symlink(dst, ctx.case / rel)

    return setup


def _hardlink(rel: str, target: str):
    def setup(ctx):
        os.link(ctx.case / target, ctx.case / rel)

    return setup


def _file(rel: str, data: bytes | str):
    def setup(ctx):
        p = ctx.case / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)

    return setup


def _legacy_run(rel: str, extra: str | None = None):
    """setup: a run report as an older truthprune wrote it (no marker), optionally with a user file."""

    def setup(ctx):
        _copy_run(rel)(ctx)
        (ctx.case / rel / ".truthprune-output").unlink()
        if extra:
            (ctx.case / rel / extra).write_text("mine\n")

    return setup


def _legacy_checkpoint(rel: str, extra: str | None = None):
    def setup(ctx):
        d = ctx.case / rel
        d.mkdir(parents=True)
        for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(ctx.base / "tiny" / name, d / name)
        (d / "truthprune.json").write_text(json.dumps({"command": "prune"}))
        if extra:
            (d / extra).write_text("mine\n")

    return setup


def _legacy_compare(rel: str):
    def setup(ctx):
        d = ctx.case / rel
        d.mkdir(parents=True)
        (d / "compare.json").write_text(json.dumps({"header": [], "rows": []}))
        (d / "compare.md").write_text("old comparison\n")

    return setup


def _mark_then(rel: str, kind: str, add: str, content: str = "mine\n"):
    """setup: a marked truthprune output into which somebody then put ADD (a file, or a dir/)."""

    def setup(ctx):
        _marked(rel, kind)(ctx)
        p = ctx.case / rel / add.rstrip("/")
        if add.endswith("/"):
            p.mkdir()
            (p / "data.txt").write_text(content)
        else:
            p.write_text(content)

    return setup


def _bad_marker(rel: str, marker: bytes | None):
    """setup: a directory with a damaged marker (None: the marker is a directory)."""

    def setup(ctx):
        _dir(rel)(ctx)
        m = ctx.case / rel / ".truthprune-output"
        if marker is None:
            m.mkdir()
        else:
            m.write_bytes(marker)

    return setup


def _cached_model(ctx):
    """setup: the converted copy of the embedded model in a case-local cache, and a link to it."""
    from truthprune.models.spec import converted_target, embedded_gguf

    saved = os.environ.get("TRUTHPRUNE_CACHE")
    os.environ["TRUTHPRUNE_CACHE"] = str(ctx.case / "cache")
    try:
        target = converted_target(embedded_gguf("smollm2-135m"))
    finally:
        os.environ.pop("TRUTHPRUNE_CACHE") if saved is None else os.environ.__setitem__("TRUTHPRUNE_CACHE", saved)
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    from truthprune.outputs.markers import write_marker

    write_marker(target, "prune")  # even a marked output: the cache is never written
    os.symlink(target, ctx.case / "conv")


# ----------------------------------------------------------------------------- rows


def special_rows() -> list[Case]:
    """The working directory, its parents, home, the cache, the root: never, whatever they hold."""
    home = {"HOME": "{C}/home"}
    cache = {"TRUTHPRUNE_CACHE": "{C}/cache"}
    keep_proj = ["proj"]
    return [
        Case("overwrite/run-out-parent-of-cwd", [*RUN, "--out", "..", "--overwrite"], cwd="proj/sub", setup=_project("proj"),
             msg="contains the working directory", keep=keep_proj),
        Case("overwrite/run-out-dot", [*RUN, "--out", ".", "--overwrite"], cwd="proj", setup=_project("proj"),
             msg="is the working directory", keep=keep_proj),
        Case("overwrite/prune-save-dotdot-dotdot", [*PRUNE, "--save", "../..", "--overwrite"], cwd="proj/src",
             setup=_project("proj"), msg="contains the working directory", keep=["{C}"]),
        Case("overwrite/compare-out-parent-of-cwd", ["compare", "{D}/run_good", "{C}/r", "--out", "..", "--overwrite"],
             cwd="proj/sub", setup=_both(_project("proj"), _copy_run("r")), msg="working directory", keep=keep_proj),
        Case("overwrite/probe-out-cwd", [*PROBE, "--out", ".", "--overwrite"], cwd="proj", setup=_project("proj"),
             msg="working directory", keep=keep_proj),
        Case("overwrite/compare-out-home", ["compare", "{D}/run_good", "{C}/r", "--out", "~", "--overwrite"], env=home,
             cwd="home/w", setup=_both(_home(), _copy_run("r")), msg="is the working directory|contains the working", keep=["home"]),
        Case("overwrite/compare-out-home-elsewhere", ["compare", "{D}/run_good", "{C}/r", "--out", "~", "--overwrite"],
             env=home, setup=_both(_home(), _copy_run("r")), msg="is your home directory", keep=["home"]),
        Case("overwrite/run-out-home-path", [*RUN, "--out", "{C}/home", "--overwrite"], env=home, setup=_home(),
             msg="home directory", keep=["home"]),
        Case("overwrite/prune-save-home-tilde-slash", [*PRUNE, "--save", "~/", "--overwrite"], env=home, setup=_home(),
             msg="home directory", keep=["home"]),
        Case("overwrite/run-out-parent-of-home", [*RUN, "--out", "{C}/users", "--overwrite"], env={"HOME": "{C}/users/me"},
             setup=_home("users/me"), msg="contains your home directory", keep=["users"]),
        Case("overwrite/probe-out-home", [*PROBE, "--out", "~", "--overwrite"], env=home, setup=_home(),
             msg="home directory", keep=["home"]),
        Case("overwrite/run-out-home-empty", [*RUN, "--out", "~", "--overwrite"], env=home,
             setup=lambda ctx: (ctx.case / "home").mkdir(), msg="home directory",
             post=lambda ctx: None if (ctx.case / "home").is_dir() else "home was replaced"),
        Case("overwrite/prune-save-cache-root", [*PRUNE, "--save", "{C}/cache", "--overwrite"], env=cache,
             setup=_marked("cache"), msg="truthprune cache", keep=["cache"]),
        Case("overwrite/prune-save-inside-cache", [*PRUNE, "--save", "{C}/cache/models/x", "--overwrite"], env=cache,
             setup=_marked("cache/models/x"), msg="inside the truthprune cache", keep=["cache"]),
        Case("overwrite/prune-save-new-dir-inside-cache", [*PRUNE, "--save", "{C}/cache/mine"], env=cache,
             msg="inside the truthprune cache", absent=["cache/mine"]),
        Case("overwrite/run-out-contains-cache", [*RUN, "--out", "{C}/c", "--overwrite"], env={"TRUTHPRUNE_CACHE": "{C}/c/tp"},
             setup=_marked("c/tp"), msg="contains the truthprune cache", keep=["c"]),
        Case("overwrite/run-out-contains-xdg-cache", [*RUN, "--out", "{C}/xdg", "--overwrite"],
             env={"TRUTHPRUNE_CACHE": None, "XDG_CACHE_HOME": "{C}/xdg"}, setup=_marked("xdg/truthprune"),
             msg="truthprune cache", keep=["xdg"]),
        Case("overwrite/prune-save-converted-embedded-model", ["prune", "--model", "smollm2-135m", "--save", "{C}/conv",
                                                               "--overwrite", "--nsamples", "4", "--seqlen", "32", "--quiet"],
             env=cache, setup=_cached_model, msg="truthprune cache|would replace --model", keep=["cache"]),
        Case("overwrite/prune-save-cache-models-dir", [*PRUNE, "--save", "{C}/cache/models", "--overwrite"], env=cache,
             setup=_cached_model, msg="truthprune cache", keep=["cache"]),
        Case("overwrite/compare-out-root", ["compare", "{D}/run_good", "{C}/r", "--out", "/", "--overwrite"],
             setup=_copy_run("r"), msg="root"),
        Case("overwrite/probe-out-root-dotdot", [*PROBE, "--out", "/tmp/../", "--overwrite"], msg="root"),
    ]


def kind_rows() -> list[Case]:
    """Devices, FIFOs, sockets and links are never replaced (the device rows are in test_bad_inputs)."""
    fifo, sock, link = _kept("f"), _kept("s", stat.S_ISSOCK, "socket"), _kept("l", stat.S_ISLNK, "link")
    return [
        Case("kind/run-out-fifo", [*RUN, "--out", "{C}/f", "--overwrite"], setup=_fifo("f"), msg=FIFO_S, post=fifo),
        Case("kind/run-out-fifo-no-overwrite", [*RUN, "--out", "{C}/f"], setup=_fifo("f"), msg="already exists", post=fifo),
        Case("kind/prune-save-fifo", [*PRUNE, "--save", "{C}/f", "--overwrite"], setup=_fifo("f"), msg=FIFO_S, post=fifo),
        Case("kind/probe-out-fifo", [*PROBE, "--out", "{C}/f", "--overwrite"], setup=_fifo("f"), msg=FIFO_S, post=fifo),
        Case("kind/compare-out-fifo", ["compare", "{D}/run_good", "{C}/r", "--out", "{C}/f", "--overwrite"],
             setup=_both(_copy_run("r"), _fifo("f")), msg=FIFO_S, post=fifo),
        Case("kind/truthfulness-out-fifo", [*TRUTHFULNESS, "--out", "{C}/f.json", "--overwrite"], setup=_fifo("f.json"),
             msg=FIFO_S, post=_kept("f.json")),
        Case("kind/probe-out-socket", [*PROBE, "--out", "{C}/s", "--overwrite"], setup=_socket("s"), msg="socket", post=sock),
        Case("kind/run-out-socket", [*RUN, "--out", "{C}/s", "--overwrite"], setup=_socket("s"), msg="socket", post=sock),
        Case("kind/run-out-link-to-output", [*RUN, "--out", "{C}/l", "--overwrite"],
             setup=_both(_marked("real", "run"), _link("l", "real")), msg="symbolic link", post=link, keep=["real"]),
        Case("kind/compare-out-link-to-home", ["compare", "{D}/run_good", "{C}/r", "--out", "{C}/l", "--overwrite"],
             env={"HOME": "{C}/home"}, setup=_both(_home(), _copy_run("r"), _link("l", "home")), msg="home directory",
             post=link, keep=["home"]),
        Case("kind/probe-out-dangling-link", [*PROBE, "--out", "{C}/l"], setup=_link("l", "nowhere"), msg="already exists",
             post=link),
        Case("kind/probe-out-dangling-link-overwrite", [*PROBE, "--out", "{C}/l", "--overwrite"], setup=_link("l", "nowhere"),
             msg="symbolic link", post=link),
        Case("kind/prune-save-link-to-dev-null-like", [*PRUNE, "--save", "{C}/l", "--overwrite"], setup=_both(_fifo("f"), _link("l", "f")),
             msg="symbolic link|FIFO", post=fifo),
    ]


def content_rows() -> list[Case]:
    """Directories and files that hold what truthprune did not write, and older outputs (migration)."""
    cmp = ["compare", "{D}/run_good", "{C}/r"]
    rows = [
        Case("content/run-out-project", [*RUN, "--out", "{C}/proj", "--overwrite"], setup=_project("proj"), msg=NOT_OURS,
             keep=["proj"]),
        Case("content/prune-save-project", [*PRUNE, "--save", "{C}/proj", "--overwrite"], setup=_project("proj"),
             msg=NOT_OURS, keep=["proj"]),
        Case("content/compare-out-project", [*cmp, "--out", "{C}/proj", "--overwrite"], setup=_both(_copy_run("r"), _project("proj")),
             msg=NOT_OURS, keep=["proj"]),
        Case("content/sweep-point-project", [*SWEEP, "--out", "{C}/sw", "--overwrite"], setup=_project("sw/magnitude-0.3"),
             msg=NOT_OURS, keep=["sw"]),
        Case("content/sweep-compare-project", [*SWEEP, "--out", "{C}/sw"], setup=_project("sw/compare"), msg=NOT_OURS,
             keep=["sw"]),
        Case("content/probe-out-user-json", [*PROBE, "--out", "{C}/notes.json", "--overwrite"],
             setup=_file("notes.json", '{"my": "notes"}'), msg=NOT_OURS, keep=["notes.json"]),
        Case("content/probe-out-user-text", [*PROBE, "--out", "{C}/notes.txt", "--overwrite"],
             setup=_file("notes.txt", "remember the milk\n"), msg=NOT_OURS, keep=["notes.txt"]),
        Case("content/probe-out-empty-file", [*PROBE, "--out", "{C}/e.json", "--overwrite"], setup=_file("e.json", b""),
             msg=NOT_OURS, keep=["e.json"]),
        Case("content/probe-plot-user-png", [*PROBE, "--plot", "{C}/plots", "--overwrite"],
             setup=_file("plots/probe_logreg_accuracy.png", PNG_BYTES), msg=NOT_OURS, keep=["plots"]),
        Case("content/probe-plot-existing-no-overwrite", [*PROBE, "--plot", "{C}/plots"],
             setup=_file("plots/probe_logreg_separation.png", PNG_BYTES), msg="already exists", keep=["plots"]),
        Case("content/truthfulness-out-user-json", [*TRUTHFULNESS, "--out", "{C}/r.json", "--overwrite"],
             setup=_file("r.json", '{"mine": true}'), msg=NOT_OURS, keep=["r.json"]),
        Case("content/truthfulness-out-exists", [*TRUTHFULNESS, "--out", "{C}/r.json"], setup=_file("r.json", "{}"),
             msg="already exists", keep=["r.json"]),
        Case("content/truthfulness-plot-user-png", [*TRUTHFULNESS, "--plot", "{C}/p.png", "--overwrite"],
             setup=_file("p.png", PNG_BYTES), msg=NOT_OURS, keep=["p.png"]),
        Case("content/truthfulness-plot-exists", [*TRUTHFULNESS, "--plot", "{C}/p.png"], setup=_file("p.png", PNG_BYTES),
             msg="already exists", keep=["p.png"]),
        Case("content/run-out-marked-plus-user-file", [*RUN, "--out", "{C}/o", "--overwrite"],
             setup=_mark_then("o", "run", "notes.txt"), msg="notes.txt", keep=["o"]),
        Case("content/run-out-marked-plus-user-dir", [*RUN, "--out", "{C}/o", "--overwrite"],
             setup=_mark_then("o", "run", "mine/"), msg="mine", keep=["o"]),
        Case("content/compare-out-run-plus-user-file", [*cmp, "--out", "{C}/o", "--overwrite"],
             setup=_both(_copy_run("r"), _copy_run("o"), lambda ctx: (ctx.case / "o" / "draft.md").write_text("mine")),
             msg="draft.md", keep=["o"]),
        Case("content/prune-save-garbage-marker", [*PRUNE, "--save", "{C}/o", "--overwrite"],
             setup=_bad_marker("o", b"{not json"), msg=NOT_OURS, keep=["o"]),
        Case("content/prune-save-marker-wrong-version", [*PRUNE, "--save", "{C}/o", "--overwrite"],
             setup=_bad_marker("o", b'{"truthprune_output": 2, "kind": "prune", "files": []}'), msg=NOT_OURS, keep=["o"]),
        Case("content/prune-save-marker-is-dir", [*PRUNE, "--save", "{C}/o", "--overwrite"], setup=_bad_marker("o", None),
             msg=NOT_OURS, keep=["o"]),
        Case("content/run-out-legacy-run-plus-user-file", [*RUN, "--out", "{C}/o", "--overwrite"],
             setup=_legacy_run("o", "notes.txt"), msg=NOT_OURS, keep=["o"]),
        Case("content/prune-save-legacy-checkpoint-plus-user-file", [*PRUNE, "--save", "{C}/o", "--overwrite"],
             setup=_legacy_checkpoint("o", "train.py"), msg=NOT_OURS, keep=["o"]),
        Case("content/report-rerender-keeps-user-files", ["report", "{C}/o"], code=0, msg="report written",
             setup=_both(_copy_run("o"), lambda ctx: (ctx.case / "o" / "notes.txt").write_text("mine")), keep=["o/notes.txt"],
             post=lambda ctx: None if (ctx.case / "o" / "report.md").is_file() else "report.md missing"),
    ]
    # acceptance: what truthprune wrote is replaced (the comparison is the cheapest writer)
    accepted = {
        "empty-dir": lambda ctx: (ctx.case / "o").mkdir(),
        "marked-compare": _marked("o", "compare"),
        "marked-nested-sweep": _both(_marked("o", "sweep"), _marked("o/magnitude-0.3", "run")),
        "legacy-run": _legacy_run("o"),
        "legacy-compare": _legacy_compare("o"),
        "legacy-checkpoint": _legacy_checkpoint("o"),
        "a-finished-run": _copy_run("o"),
    }
    rows += [Case(f"content/compare-replaces-{k}", [*cmp, "--out", "{C}/o", "--overwrite"], setup=_both(_copy_run("r"), s),
                  code=0, msg="comparison written",
                  post=lambda ctx: None if (ctx.case / "o" / "compare.json").is_file() else "not replaced")
             for k, s in accepted.items()]
    return rows


def all_rows() -> list[Case]:
    return [*special_rows(), *kind_rows(), *content_rows()]
