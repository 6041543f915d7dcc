"""What a ``--model`` spec names, found without loading or converting anything: an embedded model,
a GGUF file and where its converted copy is cached, the local files it reads, its cached config.

Why a module of its own: the plan-time checks (formats, support), the loader and the commands all
ask these questions; answering them below the loader keeps the models package free of circles.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..cache import cache_root, file_key
from ..errors import UserError
from .embedded import CHUNKED, SINGLE_FILE, assembled_path, embedded_gguf

# alias -> (PyPI distribution, file suffix); the chunked ones name their meta package
EMBEDDED_MODELS: dict[str, tuple[str, str]] = {**SINGLE_FILE, **{a: (c.meta_dist, ".gguf") for a, c in CHUNKED.items()}}


def converted_target(gguf: Path) -> Path:
    """Where the safetensors copy of ``gguf`` is (or will be) cached."""
    return cache_root() / "models" / f"{gguf.stem}-{file_key(gguf)}"


def needs_conversion(spec: str) -> bool:
    """Whether loading ``spec`` will first reassemble and/or convert a GGUF (a stage of its own)."""
    if spec in CHUNKED:
        gguf = assembled_path(spec)
        return not gguf.is_file() or not (converted_target(gguf) / "config.json").is_file()
    if spec in SINGLE_FILE:
        try:
            gguf = embedded_gguf(spec)
        except UserError:
            return False  # the load reports the missing wheel
        return not (converted_target(gguf) / "config.json").is_file()
    if spec.endswith(".gguf") and Path(spec).expanduser().is_file():
        return not (converted_target(Path(spec).expanduser().resolve()) / "config.json").is_file()
    return False


def model_input_paths(spec: str) -> list[tuple[str, str]]:
    """("--model", path) of every local file a ``--model`` spec reads, without converting anything:
    a directory; a .gguf file and its converted copy in the cache; an embedded model's file (in its
    wheel, or reassembled in the cache) and its converted copy. No output may replace them."""
    if not isinstance(spec, str) or not spec:
        return []
    out: list[Path] = []
    try:
        if spec in CHUNKED:
            out.append(assembled_path(spec))
        elif spec in SINGLE_FILE:
            out.append(embedded_gguf(spec))
        elif spec.endswith(".gguf") and Path(spec).expanduser().is_file():
            out.append(Path(spec).expanduser().resolve())
        elif Path(spec).expanduser().exists():
            return [("--model", str(Path(spec).expanduser()))]
        if out and out[0].is_file():
            out.append(converted_target(out[0]))
    except (UserError, OSError):
        pass  # a missing wheel or file is reported by the checks of --model
    return [("--model", str(p)) for p in out]


def cached_config(spec: str) -> dict | None:
    """A model's config.json read at plan time without loading or converting anything: a local
    directory's, or an embedded/GGUF model's once its conversion is cached (None otherwise)."""
    p = Path(spec).expanduser()
    if p.is_dir():
        cfg = p / "config.json"
    elif spec in EMBEDDED_MODELS or spec.endswith(".gguf"):
        try:
            if needs_conversion(spec):
                return None
            gguf = assembled_path(spec) if spec in CHUNKED else (embedded_gguf(spec) if spec in SINGLE_FILE else p.resolve())
            cfg = converted_target(gguf) / "config.json"
        except (UserError, OSError):
            return None  # a missing wheel or file is reported by the load stage
    else:
        return None
    try:
        data = json.loads(cfg.read_text())
    except (OSError, ValueError, RecursionError):
        return None  # the load stage reports an unreadable config with its own message
    return data if isinstance(data, dict) else None
