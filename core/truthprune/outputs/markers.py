"""The marker truthprune writes into every output, and what ``--overwrite`` may therefore replace.

Why: ``--overwrite`` used to replace whatever sat at the target, so ``--out ..`` deleted a
project, ``--out ~`` emptied a home directory and ``--out`` at a FIFO replaced it. Now an
existing target is replaced only when truthprune can tell it wrote it:

* a **directory** holds :data:`MARKER` (JSON: ``kind``, and ``files``, every path truthprune
  wrote there), and nothing else than those files and nested truthprune outputs; an empty
  directory is replaceable too;
* a **JSON file** carries the top-level key ``truthprune_output`` (``{"kind": ...}``);
* a **PNG** carries the text chunk ``truthprune-output``.

Outputs written before the marker existed are recognised by their known layout (a run report,
a checkpoint with ``truthprune.json``, a comparison, a probe or truthfulness result); anything
else must be removed by hand. The special paths (working directory, home, cache, mount points,
devices, FIFOs, sockets) and the command's inputs are refused by :mod:`truthprune.outputs.atomic`
before this module is asked.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from ..textio import describe, kind_of_file  # noqa: F401 (what a path is, in words)

MARKER = ".truthprune-output"
OUTPUT_MARKER = MARKER  # its public name (truthprune.OUTPUT_MARKER)
JSON_KEY = "truthprune_output"
PNG_KEY = "truthprune-output"
_MAX_MARKED_JSON = 256 * 1024 * 1024  # a larger "JSON output" is not read to look for the key
_MAX_DEPTH = 6  # nested outputs (a sweep's runs) are followed this deep

# layouts of outputs written before the marker (file names; patterns are full-match regexes)
_REPORT_FILES = {"report.json", "report.md", "sparsity.png", "probe.png", "separation.png", "diagnostics.png",
                 "truthfulness.png"}
_COMPARE_FILES = {"compare.json", "compare.md", "compare.png"}
_CHECKPOINT = re.compile(r"config\.json|generation_config\.json|model(-\d{5}-of-\d{5})?\.safetensors|"
                         r"model\.safetensors\.index\.json|tokenizer(_config)?\.json|tokenizer\.model|"
                         r"special_tokens_map\.json|added_tokens\.json|vocab\.json|merges\.txt|chat_template\.(jinja|json)|"
                         r"quantization\.safetensors|truthprune\.json")


# ----------------------------------------------------------------------------- writing markers


def _manifest(directory: Path) -> list[str]:
    found = []
    for root, dirs, files in os.walk(directory):
        rel = Path(root).relative_to(directory)
        for name in sorted(dirs + files):
            path = (rel / name).as_posix()
            if path != MARKER:
                found.append(path)
    return sorted(found)


def write_marker(directory: str | Path, kind: str, files: list[str] | None = None) -> Path:
    """Write :data:`MARKER` into ``directory``: its ``kind`` (run, prune, probe, compare, sweep,
    finetune, export, ...) and ``files``, every path truthprune wrote there (default: everything
    now in it). Call it last, on the finished (temporary) output; returns the marker's path."""
    from ..version import __version__

    d = Path(directory)
    body = {JSON_KEY: 1, "kind": str(kind), "truthprune_version": __version__,
            "files": sorted(set(files)) if files is not None else _manifest(d)}
    path = d / MARKER
    path.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    return path


def json_marker(kind: str) -> dict[str, Any]:
    """The top-level entry that marks a JSON file output: ``{**json_marker("probe"), **result}``."""
    return {JSON_KEY: {"kind": str(kind)}}


def png_metadata(kind: str) -> dict[str, str]:
    """``savefig(..., metadata=png_metadata("plot"))``: the text chunk that marks a PNG output."""
    return {PNG_KEY: str(kind)}


# ----------------------------------------------------------------------------- recognising outputs


def read_marker(directory: str | Path) -> dict[str, Any] | None:
    """The marker of ``directory`` when it is a valid one (a small regular JSON file), else None."""
    path = Path(directory) / MARKER
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > 64 * 1024 * 1024:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if (not isinstance(data, dict) or data.get(JSON_KEY) != 1 or not isinstance(data.get("kind"), str)
            or not isinstance(data.get("files"), list) or not all(isinstance(f, str) for f in data["files"])):
        return None
    return data


def _json_object(path: Path) -> dict | None:
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_MARKED_JSON:
            return None
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _legacy_kind(directory: Path, names: set[str]) -> str | None:
    """The kind of an unmarked directory that has exactly the layout an older truthprune wrote."""
    if "report.json" in names and names <= _REPORT_FILES:
        data = _json_object(directory / "report.json")
        return "run" if data is not None and data.get("truthprune_report") == 1 else None
    if "compare.json" in names and names <= _COMPARE_FILES:
        data = _json_object(directory / "compare.json")
        return "compare" if data is not None and {"header", "rows"} <= set(data) else None
    if {"truthprune.json", "config.json"} <= names and all(_CHECKPOINT.fullmatch(n) for n in names):
        return "checkpoint" if _json_object(directory / "truthprune.json") is not None else None
    return None


def _entries(directory: Path) -> list[os.DirEntry] | None:
    try:
        with os.scandir(directory) as it:
            return list(it)
    except OSError:
        return None


def _dir_refusal(directory: Path, depth: int) -> str | None:
    entries = _entries(directory)
    if entries is None:
        return "it cannot be listed"
    if not entries:
        return None
    marker = read_marker(directory)
    if marker is None:
        names = {e.name for e in entries}
        if any(not e.is_file(follow_symlinks=False) for e in entries) or _legacy_kind(directory, names) is None:
            return "it holds no truthprune output marker and is not an output of an older truthprune either"
        return None
    allowed = set(marker["files"])
    for root, dirs, files in os.walk(directory):
        rel = Path(root).relative_to(directory)
        for name in sorted(dirs):
            sub = rel / name
            if sub.as_posix() not in allowed:
                if depth < _MAX_DEPTH and not os.path.islink(Path(root) / name) and _dir_refusal(Path(root) / name, depth + 1) is None:
                    dirs.remove(name)  # a nested truthprune output (a sweep's run): checked by its own marker
                    continue
                return f"it holds {sub.as_posix()!r}, which truthprune did not write"
        for name in files:
            sub = (rel / name).as_posix()
            if sub != MARKER and sub not in allowed:
                return f"it holds {sub!r}, which truthprune did not write"
    return None


def _png_kind(path: Path) -> str | None:
    """The ``truthprune-output`` text chunk of a PNG (read chunk by chunk up to the image data)."""
    try:
        with open(path, "rb") as fh:
            if fh.read(8) != b"\x89PNG\r\n\x1a\n":
                return None
            while True:
                head = fh.read(8)
                if len(head) < 8:
                    return None
                size, ctype = int.from_bytes(head[:4], "big"), head[4:]
                if ctype in (b"IDAT", b"IEND") or size > 1 << 20:
                    return None
                body = fh.read(size)
                fh.read(4)  # CRC
                if ctype in (b"tEXt", b"iTXt") and body.startswith(PNG_KEY.encode() + b"\0"):
                    return body.split(b"\0")[-1].decode("latin-1") or "plot"
    except OSError:
        return None


def _file_refusal(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            png = fh.read(8) == b"\x89PNG\r\n\x1a\n"
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"
    if png:
        return None if _png_kind(path) else "it is a PNG that truthprune did not write"
    data = _json_object(path)
    if data is None:
        return "it is not a file truthprune wrote"
    if isinstance(data.get(JSON_KEY), dict):
        return None
    if {"heldout", "separation", "best_layer"} <= set(data) or {"accuracy", "flip", "prompts_version"} <= set(data):
        return None  # a probe / truthfulness result of an older truthprune
    return "it is not a file truthprune wrote"


def replace_refusal(path: str | Path) -> str | None:
    """Why the existing ``path`` may not be replaced (None: truthprune wrote it, or it is an empty
    directory). Symbolic links, devices, FIFOs and sockets are never replaced."""
    p = Path(path)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return None
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"
    if stat.S_ISDIR(st.st_mode):
        return _dir_refusal(p, 0)
    if stat.S_ISREG(st.st_mode):
        return _file_refusal(p)
    return f"it is {kind_of_file(st)}, not something truthprune wrote"
