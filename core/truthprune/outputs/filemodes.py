"""File modes of finished outputs: what the process umask gives a new file.

Why: libraries write through private temporary files (transformers' ``model.safetensors`` came
out 0600 while its siblings were 0644), so a checkpoint written for a group or a server could not
be read by them. Every output directory is normalised before it is renamed into place
(:mod:`truthprune.outputs.atomic`).
"""

from __future__ import annotations

import os
from pathlib import Path


def umask_mode() -> int:
    """The mode a new regular file gets from the process umask (0o644 under the usual 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def normalize_modes(root: Path) -> None:
    """Give every regular file under ``root`` the umask's mode. Why: libraries write through
    private temporary files (``model.safetensors`` came out 0600 while its siblings were 0644)."""
    mode = umask_mode()
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            if not p.is_symlink() and p.is_file() and (p.stat().st_mode & 0o777) != mode:
                os.chmod(p, mode)
