"""What a ``--model`` spec names, found without loading or converting anything: an embedded model,
a GGUF file and where its converted copy is cached, the local files it reads, its cached config.

Why a module of its own: the plan-time checks (formats, support), the loader and the commands all
ask these questions; answering them below the loader keeps the models package free of circles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..cache import cache_root, file_key
from ..errors import UserError
from ..textio import read_json_file
from .context import context_length
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


@dataclass(frozen=True)
class ModelRef:
    """A ``--model`` spec resolved once, when a run is planned, without loading or converting
    anything: what it names, whether the convert-gguf stage must run first, and its config.json
    when that can be read now. The plan carries it, so the checks, the estimates and the plan text
    ask one object instead of each re-reading the spec."""

    spec: str
    kind: str  # "embedded", "gguf" (a .gguf file), "local" (a directory) or "hub" (an id)
    converts: bool  # loading it first reassembles and/or converts a GGUF (the convert-gguf stage)
    config: dict | None  # its config.json: a local directory's or a cached conversion's (None: known after load)

    @property
    def context(self) -> int | None:
        """The longest sequence it supports, when its config says so now (None: unknown before load)."""
        return context_length(self.config) if self.config is not None else None


def model_ref(spec: str) -> ModelRef:
    """Resolve ``spec`` (see :class:`ModelRef`). A local directory's config.json that is there but
    unreadable is a UserError now, at plan time; a missing wheel or file is reported by the checks of
    --model and by the load, not here."""
    local = Path(spec).expanduser()
    if spec in EMBEDDED_MODELS:
        kind = "embedded"
    elif spec.endswith(".gguf"):
        kind = "gguf"
    elif local.is_dir():
        kind = "local"
        if (local / "config.json").is_file():
            config = read_json_file(local / "config.json", "model config")
            return ModelRef(spec, kind, False, config if isinstance(config, dict) else None)
    else:
        kind = "hub"
    return ModelRef(spec=spec, kind=kind, converts=needs_conversion(spec), config=cached_config(spec))
