"""Every output truthprune writes goes through here: plan-time checks, a lock, an atomic swap.

Guarantees (docs/reliability.md):

* **Plan time.** :func:`prepare_output` refuses, before any work, a target that exists without
  ``--overwrite``, a directory where a file goes (or the reverse), a path under an existing file,
  a name longer than the filesystem allows and an unwritable parent. Writability is checked by
  trying: a probe entry is created and removed in the nearest existing ancestor. It then takes
  the target's exclusive lock (:mod:`truthprune.run.locks`) and holds it until the final rename.
* **Atomic.** :func:`atomic_dir` / :func:`atomic_file` build the output in a hidden temporary
  ``.NAME.tmp-PID-XXXXXXXX`` beside the target and swap it in at the end: with one
  ``renameat2(RENAME_EXCHANGE)`` on Linux (the target never disappears), else two renames with a
  roll-back. SIGINT/SIGTERM are blocked during the swap.
* **Interrupts.** An interrupt anywhere before the swap discards the temporary. If a library
  swallowed the KeyboardInterrupt and the code went on, the swap still refuses
  (:func:`was_interrupted`), so a previous output is never replaced by a partial one.
* **Full disk.** ENOSPC/EDQUOT while building becomes one :class:`UserError` line; the
  temporary is removed and the previous output is untouched.
* **Crashes.** Temporaries carry the writer's PID; the next writer of the same target removes
  those of dead processes (and restores a previous output a crash left parked as ``.NAME.old-*``).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import re
import secrets
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import locks
from ..errors import UserError

log = logging.getLogger(__name__)

_INTERRUPTED = False
_CREATED_PARENTS: dict[Path, list[Path]] = {}  # target -> parent dirs prepare_output made (removed if left empty)


# ----------------------------------------------------------------------------- interrupts


def _on_sigint(signum, frame):  # noqa: ARG001
    global _INTERRUPTED
    _INTERRUPTED = True
    raise KeyboardInterrupt


TERMINATED_EXIT = 143  # 128 + SIGTERM


def _on_sigterm(signum, frame):  # noqa: ARG001
    global _INTERRUPTED
    _INTERRUPTED = True
    raise SystemExit(TERMINATED_EXIT)  # unwinds like Ctrl-C: temporaries removed, locks released


def install_interrupt_guard() -> None:
    """Record every SIGINT (then raise KeyboardInterrupt as Python does) so a swallowed interrupt
    still stops the final swap; SIGTERM (a batch system's time limit) unwinds the same way instead
    of killing the process mid-write. Main thread only; a no-op elsewhere. Each command starts clean."""
    global _INTERRUPTED
    _INTERRUPTED = False
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _on_sigint)
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        pass


def was_interrupted() -> bool:
    return _INTERRUPTED


# ----------------------------------------------------------------------------- plan-time checks


def resolve_target(target: str | Path, flag: str = "--out") -> Path:
    """Absolute, normalised path of an output; refuses '', '.'-like and root targets."""
    text = str(target)
    if not text.strip():
        raise UserError(f"{flag} is empty; give a directory or file name, e.g. {flag} runs/a")
    if "\x00" in text:
        raise UserError(f"{flag} contains a NUL character; give a normal path")
    path = Path(os.path.abspath(os.path.expanduser(text)))
    if path.parent == path:
        raise UserError(f"{flag} {text!r} is the filesystem root; give a directory below it")
    too_long = [part for part in path.parts if len(part.encode()) > 255]
    if too_long or len(str(path).encode()) > 4000:
        raise UserError(f"{flag} {text[:60]!r}...: a name is longer than this filesystem allows (255 bytes per name, "
                        "4000 per path); choose a shorter name")
    return path


def _name_max(directory: Path) -> int:
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def check_writable(path: Path, flag: str = "--out") -> None:
    """Refuse a target nothing can be created at: under a file, too long a name, unwritable parent."""
    ancestor = path.parent
    missing = [path.name]
    while not ancestor.exists():
        if ancestor.is_symlink():
            raise UserError(f"{flag} {str(path)!r}: {str(ancestor)!r} is a dangling symbolic link; choose another path")
        missing.append(ancestor.name)
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{flag} {str(path)!r}: {str(ancestor)!r} is a file, so nothing can be created under it; "
                        "choose another path")
    limit = _name_max(ancestor)
    # the longest name we create is the hidden temporary: ".NAME.tmp-PID-XXXXXXXX"
    longest = max(len(m.encode()) for m in missing[1:] + [path.name + ".tmp-4194304-xxxxxxxx.."] if m)
    if longest > limit:
        raise UserError(f"{flag} {str(path)!r}: a name is longer than this filesystem allows ({limit} bytes, "
                        "with room for the temporary); choose a shorter name")
    probe = ancestor / f".truthprune-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.mkdir(probe)
        os.rmdir(probe)
    except OSError as err:
        raise UserError(f"cannot write {flag} {str(path)!r}: {str(ancestor)!r} is not writable "
                        f"({err.strerror or err}); choose another path") from None


def check_target(target: str | Path, overwrite: bool, flag: str = "--overwrite", kind: str = "dir",
                 what: str = "output") -> Path:
    """Plan-time check of one output; returns its absolute path. ``kind``: 'dir' or 'file'."""
    path = resolve_target(target, what)
    clean_stale(path)  # first: it may restore a previous output a crash left parked
    if path.exists() and not overwrite:
        raise UserError(f"{what} {str(path)!r} already exists; pass {flag} to replace it or choose another path")
    if path.exists() and kind == "dir" and not path.is_dir():
        raise UserError(f"{what} {str(path)!r} exists and is not a directory; choose another path")
    if path.exists() and kind == "file" and path.is_dir():
        raise UserError(f"{what} {str(path)!r} is a directory, but a file is written there; give a file name")
    check_writable(path, what)
    return path


def check_disjoint(a: str | Path | None, a_flag: str, b: str | Path | None, b_flag: str) -> None:
    """Refuse two outputs that are the same path or nested (one would replace or swallow the other)."""
    if a is None or b is None:
        return
    pa, pb = resolve_target(a, a_flag), resolve_target(b, b_flag)
    if pa == pb or pa in pb.parents or pb in pa.parents:
        relation = "the same path" if pa == pb else "nested inside each other"
        raise UserError(f"{a_flag} {str(pa)!r} and {b_flag} {str(pb)!r} are {relation}; writing one would "
                        "replace the other: give them separate directories")


def prepare_output(target: str | Path, overwrite: bool, wait: bool = False, kind: str = "dir",
                   what: str = "output", flag: str = "--overwrite") -> Path:
    """:func:`check_target`, create the missing parents, and take the target's lock (held until
    :func:`release_output` or process end). Call it at plan time, before the expensive work."""
    path = check_target(target, overwrite, flag=flag, kind=kind, what=what)
    made: list[Path] = []
    parent = path.parent
    while not parent.exists():
        made.append(parent)
        parent = parent.parent
    for d in reversed(made):
        try:
            os.mkdir(d)
        except FileExistsError:
            pass
        except OSError as err:
            raise UserError(f"cannot create {str(d)!r} for {what}: {err.strerror or err}; choose another path") from None
    if made and path not in _CREATED_PARENTS:
        _CREATED_PARENTS[path] = made
    lock = locks.acquire(path, wait=wait, what=what)
    if wait:  # we may have queued behind another writer: re-check what it left
        try:
            check_target(path, overwrite, flag=flag, kind=kind, what=what)
        except UserError:
            locks.release(lock)
            raise
    return path


def release_output(target: str | Path) -> None:
    """Release the plan-time lock; remove parents prepare_output made that stayed empty."""
    path = Path(os.path.abspath(os.path.expanduser(str(target))))
    lock = locks.lock_path(path)
    if lock in locks.held():
        locks.release(lock)
    if lock not in locks.held():
        for d in _CREATED_PARENTS.pop(path, []):
            try:
                d.rmdir()
            except OSError:
                break


def release_all() -> None:
    """Every lock of this process and every empty parent it made (end of a CLI command)."""
    for path in list(_CREATED_PARENTS):
        lock = locks.lock_path(path)
        while lock in locks.held():
            locks.release(lock)
        release_output(path)
    locks.release_all()


# ----------------------------------------------------------------------------- stale temporaries

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}$")


def clean_stale(path: Path) -> list[str]:
    """Remove temporaries of ``path`` left by dead processes; restore a parked previous output."""
    parent = path.parent
    notes: list[str] = []
    if not parent.is_dir():
        return notes
    try:
        entries = list(parent.iterdir())
    except OSError:
        return notes
    for entry in sorted(entries, key=lambda e: e.name):
        m = _TEMP.match(entry.name)
        if not m or m.group("name") != path.name or locks.pid_alive(int(m.group("pid"))):
            continue
        if m.group("kind") == "old" and not path.exists():
            os.rename(entry, path)  # a crash between the two renames of the fallback swap
            notes.append(f"restored the previous output {str(path)!r} from {entry.name}")
        else:
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            notes.append(f"removed {entry.name}, a temporary left by process {m.group('pid')}, which is gone")
    for note in notes:
        log.warning("%s", note)
    return notes


# ----------------------------------------------------------------------------- the swap

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_in(tmp: Path, path: Path) -> None:
    """Make ``tmp`` the new ``path``; the old content ends up deleted. Signals blocked meanwhile."""
    if _INTERRUPTED:
        raise KeyboardInterrupt
    can_block = hasattr(signal, "pthread_sigmask")
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM}) if can_block else None
    try:
        if not path.exists() and not path.is_symlink():
            os.rename(tmp, path)
            return
        if _exchange(tmp, path):
            discard = tmp  # now holds the previous output
        else:
            discard = path.with_name(f".{path.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
            os.rename(path, discard)
            try:
                os.rename(tmp, path)
            except BaseException:
                os.rename(discard, path)
                raise
    finally:
        if can_block:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    shutil.rmtree(discard, ignore_errors=True) if discard.is_dir() and not discard.is_symlink() else discard.unlink(missing_ok=True)


def disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT, also when a library (safetensors, torch) re-raised it as another type."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def disk_full_error(path: Path) -> UserError:
    return UserError(f"no space left on the device while writing {str(path)!r}; nothing partial was kept and any "
                     "previous output there is unchanged: free some space or choose another path")


def _new_temp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


@contextmanager
def _atomic(target: str | Path, overwrite: bool, wait: bool, kind: str, what: str) -> Iterator[tuple[Path, Path]]:
    path = prepare_output(target, overwrite, wait=wait, kind=kind, what=what)
    tmp = _new_temp(path)
    try:
        try:
            if kind == "dir":
                os.mkdir(tmp, 0o777)  # the umask gives a finished output normal permissions
            yield tmp, path
            from .filemodes import normalize_modes, umask_mode

            if kind == "dir":
                normalize_modes(tmp)
            elif tmp.is_file():
                os.chmod(tmp, umask_mode())
            _swap_in(tmp, path)
        except BaseException as exc:
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            if disk_full(exc):
                raise disk_full_error(path) from None
            raise
    finally:
        release_output(path)


@contextmanager
def atomic_dir(target: str | Path, overwrite: bool = False, wait: bool = False, what: str = "output") -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces ``target`` in one swap."""
    with _atomic(target, overwrite, wait, "dir", what) as (tmp, _):
        yield tmp


@contextmanager
def atomic_file(target: str | Path, overwrite: bool = False, wait: bool = False, what: str = "--out") -> Iterator[Path]:
    """Yield a temporary file path (not created); on success it replaces ``target``."""
    with _atomic(target, overwrite, wait, "file", what) as (tmp, _):
        yield tmp


def write_text_atomic(target: str | Path, text: str, overwrite: bool = False, what: str = "--out") -> Path:
    with atomic_file(target, overwrite=overwrite, what=what) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return resolve_target(target, what)


def _holds_cwd(path: Path) -> bool:
    try:
        cwd = Path.cwd().resolve()
    except OSError:
        return False
    target = path.resolve()
    return cwd == target or target in cwd.parents


@contextmanager
def replace_files(target: str | Path, remove: frozenset[str] = frozenset()) -> Iterator[Path]:
    """Yield a temporary directory; on success each file in it replaces the file of the same name in
    the existing directory ``target`` (and the names in ``remove`` that were not rebuilt are deleted).

    For re-rendering a directory that is somebody's working directory (``truthprune report .``):
    swapping the directory itself would leave that shell in a deleted directory. Each file is
    replaced atomically and SIGINT/SIGTERM are blocked for the whole replacement, so an interrupt
    gives the old files or the new ones, never a half-written file.
    """
    path = prepare_output(target, True, kind="dir")
    tmp = _new_temp(path)
    try:
        try:
            os.mkdir(tmp, 0o777)
            yield tmp
            if _INTERRUPTED:
                raise KeyboardInterrupt
            can_block = hasattr(signal, "pthread_sigmask")
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM}) if can_block else None
            try:
                built = {f.name for f in tmp.iterdir()}
                for name in sorted(built):
                    os.replace(tmp / name, path / name)
                for name in sorted(remove - built):
                    (path / name).unlink(missing_ok=True)
            finally:
                if can_block:
                    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        except BaseException as exc:
            if disk_full(exc):
                raise disk_full_error(path) from None
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        release_output(path)


def holds_working_directory(target: str | Path) -> bool:
    """True when ``target`` is (or contains) this process's working directory."""
    return _holds_cwd(Path(os.path.abspath(str(target))))
