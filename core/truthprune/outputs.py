"""Write output directories atomically: build in a hidden temp dir beside the target, then rename.

An interrupted run (Ctrl-C, crash) therefore never leaves a half-written report or model, and a
rerun into the same path works. An existing target is only replaced with ``overwrite``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError


def check_target(target: str | Path, overwrite: bool, flag: str = "--overwrite") -> Path:
    path = Path(target).expanduser()
    if path.exists() and not overwrite:
        raise UserError(f"output {str(path)!r} already exists; pass {flag} to replace it or choose another path")
    if path.exists() and not path.is_dir():
        raise UserError(f"output {str(path)!r} exists and is not a directory; choose another path")
    return path


@contextmanager
def atomic_dir(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp directory; on success it replaces ``target`` in one rename."""
    path = check_target(target, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; a finished output dir gets normal permissions
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{tmp.name[-8:]}")
        path.rename(old)
    tmp.rename(path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
