"""Exclusive output locks and the process-liveness check behind stale-temporary cleanup.

Why a lock file: checking "does --out exist?" and writing it later are two steps, so two runs
started at the same time into one path both passed the check and one output silently replaced
the other. Every output target therefore gets ``.NAME.lock`` beside it, created with
``O_CREAT | O_EXCL`` (atomic on local and NFSv3+ filesystems) at plan time and removed after the
final rename. A second writer is refused at plan time, or waits with ``--wait``.

The lock file holds ``PID HOST``. A lock whose process is dead (same host, no such PID) is stale
and taken over, so a kill -9 never blocks the path forever. Locks are re-entrant inside one
process (the plan takes it, the final atomic write takes it again) and every lock still held is
released when the CLI's ``main`` returns or the interpreter exits.
"""

from __future__ import annotations

import atexit
import errno
import os
import socket
import time
from pathlib import Path

from ..errors import UserError

_HOST = socket.gethostname()
_HELD: dict[Path, int] = {}  # lock file -> re-entrancy count, for this process
_WAIT_POLL_S = 0.2


def pid_alive(pid: int) -> bool:
    """True when a process with this PID exists on this machine (signal 0 probes without sending)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


def _owner(lock: Path) -> tuple[int, str] | None:
    """(pid, host) written in a lock file; None when it is unreadable or half-written."""
    try:
        text = lock.read_text(encoding="ascii", errors="replace").split()
    except OSError:
        return None
    if len(text) < 2 or not text[0].isdigit():
        return None
    return int(text[0]), text[1]


def _stale(lock: Path) -> bool:
    owner = _owner(lock)
    if owner is None:  # a writer between O_EXCL create and write: give it a moment
        try:
            return time.time() - lock.stat().st_mtime > 5
        except OSError:
            return False
    pid, host = owner
    return host == _HOST and not pid_alive(pid)


def _try_create(lock: Path) -> bool:
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, f"{os.getpid()} {_HOST}\n".encode())
    except BaseException:
        os.close(fd)
        os.unlink(lock)  # a full disk: leave no empty lock behind
        raise
    os.close(fd)
    return True


def acquire(target: Path, wait: bool = False, what: str = "output") -> Path:
    """Take the exclusive lock of ``target`` (its parent must exist); UserError when another
    live process holds it and ``wait`` is False. Returns the lock file."""
    lock = lock_path(target)
    if lock in _HELD:
        _HELD[lock] += 1
        return lock
    while True:
        try:
            if _try_create(lock):
                _HELD[lock] = 1
                return lock
        except OSError as err:
            raise UserError(f"cannot create the lock file {str(lock)!r} for {what} {str(target)!r}: "
                            f"{err.strerror or err}; choose a writable location") from None
        if _stale(lock):
            grave = lock.with_name(f"{lock.name}.stale-{os.getpid()}")
            try:  # rename first: of two processes that both saw it stale, only one wins
                os.rename(lock, grave)
                os.unlink(grave)
            except OSError:
                pass
            continue
        if not wait:
            owner = _owner(lock)
            who = f"process {owner[0]} on {owner[1]}" if owner else "another process"
            raise UserError(
                f"{what} {str(target)!r} is being written by {who} (lock {str(lock)!r}); wait for it to finish, "
                "pass --wait to queue behind it, or choose another path"
            )
        time.sleep(_WAIT_POLL_S)


def release(lock: Path) -> None:
    """Drop one hold of ``lock``; the file is removed when the last hold goes."""
    count = _HELD.get(lock, 0)
    if count > 1:
        _HELD[lock] = count - 1
        return
    _HELD.pop(lock, None)
    owner = _owner(lock)
    if owner is not None and owner[0] == os.getpid():
        try:
            os.unlink(lock)
        except OSError as err:
            if err.errno != errno.ENOENT:
                raise


def release_all() -> None:
    """Release every lock this process still holds (end of a CLI command, interpreter exit)."""
    for lock in list(_HELD):
        _HELD[lock] = 1
        try:
            release(lock)
        except OSError:
            pass


def held() -> list[Path]:
    return list(_HELD)


atexit.register(release_all)
