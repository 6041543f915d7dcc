"""Every output truthprune writes goes through here: plan-time checks, a lock, an atomic swap.

Guarantees (docs/reliability.md):

* **Plan time.** :func:`prepare_output` refuses, before any work, a target that exists without
  ``--overwrite``, one that ``--overwrite`` may not replace (:mod:`truthprune.outputs.targets`: an
  input of the command, the working directory, home, the cache, a device, FIFO, socket or link,
  anything without truthprune's output marker, :mod:`truthprune.outputs.markers`), a directory where
  a file goes (or the reverse), a path under an existing file, a name longer than the filesystem
  allows and an unwritable parent. Writability is checked by trying: a probe entry is created
  and removed in the nearest existing ancestor. It then takes the target's exclusive lock
  (:mod:`truthprune.outputs.locks`) and holds it until the final rename.
* **Atomic.** :func:`atomic_dir` / :func:`atomic_file` build the output in a hidden temporary
  ``.NAME.tmp-PID-XXXXXXXX`` beside the target, write the output marker, check the target once
  more and swap it in: with one ``renameat2(RENAME_EXCHANGE)`` on Linux (the target never
  disappears), else two renames with a roll-back. Signals are deferred during the swap
  (:mod:`truthprune.interrupts`).
* **Interrupts.** An interrupt anywhere before the swap discards the temporary. If a library
  swallowed the KeyboardInterrupt and the code went on, the swap still refuses
  (:func:`was_interrupted`), so a previous output is never replaced by a partial one.
* **Full disk.** ENOSPC/EDQUOT, or the file-size limit (EFBIG, ``ulimit -f``), while building
  becomes one :class:`UserError` line; the temporary is removed and the previous output is untouched.
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import locks, targets
from ..interrupts import deferred_signals, raise_if_interrupted
from .markers import MARKER, describe, json_marker, read_marker, replace_refusal, write_marker
from ..errors import UserError

log = logging.getLogger(__name__)

_CREATED_PARENTS: dict[Path, list[Path]] = {}  # target -> parent dirs prepare_output made (removed if left empty)


# ----------------------------------------------------------------------------- plan-time checks


def resolve_target(target: str | Path, flag: str = "--out") -> Path:
    """Absolute, normalised path of an output; refuses '', '.'-like and root targets."""
    text = str(target)
    if not text.strip():
        raise UserError(f"{flag} is empty; give a directory or file name, e.g. {flag} runs/a")
    if "\x00" in text:
        raise UserError(f"{flag} contains a NUL character; give a normal path")
    path = Path(os.path.abspath(os.path.expanduser(text)))
    if path.parent == path or Path(os.path.realpath(path)).parent == Path(os.path.realpath(path)):
        raise UserError(f"{flag} {text!r} is the filesystem root; give a directory below it")
    too_long = [part for part in path.parts if len(os.fsencode(part)) > 255]
    if too_long or len(os.fsencode(str(path))) > 4000:
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
        kind = describe(ancestor) if not ancestor.is_file() else "is a file"
        raise UserError(f"{flag} {str(path)!r}: {str(ancestor)!r} {kind}, so nothing can be created under it; "
                        "choose another path")
    limit = _name_max(ancestor)
    # the longest name we create is the hidden temporary: ".NAME.tmp-PID-XXXXXXXX"
    longest = max(len(os.fsencode(m)) for m in missing[1:] + [path.name + ".tmp-4194304-xxxxxxxx.."] if m)
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
                 what: str = "output", whole: bool = True) -> Path:
    """Plan-time check of one output; returns its absolute path. ``kind``: 'dir' or 'file'.

    An existing target is replaced only with ``flag`` and only when :mod:`truthprune.outputs.targets`
    allows it: never an input of the command, the working directory, home or the cache (or a
    parent of them), a mount point, a device, FIFO, socket or link, or anything truthprune did
    not write (:mod:`truthprune.outputs.markers`). ``whole=False``: the directory itself is kept and
    only files in it are replaced (:func:`replace_files`, which checks those files itself)."""
    path = resolve_target(target, what)
    clean_stale(path)  # first: it may restore a previous output a crash left parked
    exists = os.path.lexists(path)
    if exists and not overwrite:
        raise UserError(f"{what} {str(path)!r} already exists; pass {flag} to replace it or choose another path")
    problem = targets.refusal(path, what, exists=False) if whole else None  # special paths and inputs first
    if problem is not None:
        raise UserError(problem)
    if exists and not os.path.islink(path):
        if kind == "dir" and not path.is_dir():
            raise UserError(f"{what} {str(path)!r} exists and is not a directory ({describe(path)[3:]}); choose another path")
        if kind == "file" and path.is_dir():
            raise UserError(f"{what} {str(path)!r} is a directory, but a file is written there; give a file name")
    problem = targets.refusal(path, what, exists) if whole and exists else None
    if problem is not None:
        raise UserError(problem)
    check_writable(path, what)
    return path


def check_disjoint(a: str | Path | None, a_flag: str, b: str | Path | None, b_flag: str) -> None:
    """Refuse two outputs that are the same path or nested (one would replace or swallow the other)."""
    if a is None or b is None:
        return
    pa, pb = resolve_target(a, a_flag), resolve_target(b, b_flag)
    if targets.contains(pa, pb) or targets.contains(pb, pa):
        relation = "the same path" if targets.contains(pa, pb) and targets.contains(pb, pa) else "nested inside each other"
        raise UserError(f"{a_flag} {str(pa)!r} and {b_flag} {str(pb)!r} are {relation}; writing one would "
                        "replace the other: give them separate directories")


def prepare_output(target: str | Path, overwrite: bool, wait: bool = False, kind: str = "dir",
                   what: str = "output", flag: str = "--overwrite", whole: bool = True) -> Path:
    """:func:`check_target`, create the missing parents, and take the target's lock (held until
    :func:`release_output` or process end). Call it at plan time, before the expensive work."""
    path = check_target(target, overwrite, flag=flag, kind=kind, what=what, whole=whole)
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
            check_target(path, overwrite, flag=flag, kind=kind, what=what, whole=whole)
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
    targets.clear_inputs()


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


def _swap_in(tmp: Path, path: Path, what: str = "output") -> None:
    """Make ``tmp`` the new ``path``; the old content ends up deleted. Signals deferred meanwhile.

    The target is checked once more right before (:func:`truthprune.outputs.targets.refusal`):
    something may have been put into it since the plan."""
    raise_if_interrupted()
    if os.path.lexists(path):
        problem = targets.refusal(path, what, True)
        if problem is not None:
            raise UserError(problem)
    with deferred_signals():
        if not os.path.lexists(path):
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
        shutil.rmtree(discard, ignore_errors=True) if discard.is_dir() and not discard.is_symlink() else discard.unlink(missing_ok=True)


_FULL = {errno.ENOSPC: "No space left on device", errno.EDQUOT: "Disk quota exceeded", errno.EFBIG: "File too large"}


def _full_errno(exc: BaseException | None) -> int | None:
    """ENOSPC, EDQUOT or EFBIG (``ulimit -f``) behind ``exc``, also when a library (safetensors,
    torch) re-raised it as another type; None otherwise."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in _FULL:
            return exc.errno
        for code, text in _FULL.items():
            if text in str(exc):
                return code
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT, or the file-size limit (EFBIG, ``ulimit -f``), behind ``exc``."""
    return _full_errno(exc) is not None


def disk_full_error(path: Path, exc: BaseException | None = None) -> UserError:
    if _full_errno(exc) == errno.EFBIG:
        return UserError(f"the file-size limit of this shell (ulimit -f) was reached while writing {str(path)!r}; nothing "
                         "partial was kept and any previous output there is unchanged: raise the limit (ulimit -f "
                         "unlimited) or write to another place")
    return UserError(f"no space left on the device while writing {str(path)!r}; nothing partial was kept and any "
                     "previous output there is unchanged: free some space or choose another path")


def _new_temp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


@contextmanager
def _atomic(target: str | Path, overwrite: bool, wait: bool, kind: str, what: str,
            marker: str | None) -> Iterator[tuple[Path, Path]]:
    path = prepare_output(target, overwrite, wait=wait, kind=kind, what=what)
    tmp = _new_temp(path)
    try:
        try:
            if kind == "dir":
                os.mkdir(tmp, 0o777)  # the umask gives a finished output normal permissions
            yield tmp, path
            if kind == "dir" and marker is not None:
                write_marker(tmp, marker)
            elif kind == "file" and os.path.lexists(tmp) and replace_refusal(tmp) is not None:
                raise RuntimeError(f"{str(path)!r} was written without the truthprune output marker "
                                   "(truthprune.outputs.markers); a later --overwrite could not replace it")
            from .filemodes import normalize_modes, umask_mode

            if kind == "dir":
                normalize_modes(tmp)
            elif tmp.is_file() and not tmp.is_symlink():
                os.chmod(tmp, umask_mode())
            if kind == "dir" or os.path.lexists(tmp):  # a file output may decide to write nothing
                _swap_in(tmp, path, what)
        except BaseException as exc:
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            if disk_full(exc):
                raise disk_full_error(path, exc) from None
            raise
    finally:
        release_output(path)


@contextmanager
def atomic_dir(target: str | Path, overwrite: bool = False, wait: bool = False, what: str = "output",
               kind: str = "output") -> Iterator[Path]:
    """Yield a temporary directory; on success the output marker of ``kind`` (run, prune, compare,
    finetune, export, ...) is written into it (:func:`write_marker`) and it replaces ``target``
    in one swap."""
    with _atomic(target, overwrite, wait, "dir", what, kind) as (tmp, _):
        yield tmp


@contextmanager
def atomic_file(target: str | Path, overwrite: bool = False, wait: bool = False, what: str = "--out") -> Iterator[Path]:
    """Yield a temporary file path (not created); on success it replaces ``target``. The file must
    carry the output marker: a JSON object with :func:`json_marker`, a PNG saved with
    :func:`png_metadata` (see :func:`write_json_atomic`)."""
    with _atomic(target, overwrite, wait, "file", what, None) as (tmp, _):
        yield tmp


def write_json_atomic(target: str | Path, data: dict, kind: str, overwrite: bool = False, what: str = "--out",
                      wait: bool = False) -> Path:
    """``data`` as a JSON file marked as an output of ``kind``, written atomically."""
    import json

    with atomic_file(target, overwrite=overwrite, wait=wait, what=what) as tmp:
        tmp.write_text(json.dumps({**json_marker(kind), **data}, indent=2, default=str), encoding="utf-8")
    return resolve_target(target, what)


def _holds_cwd(path: Path) -> bool:
    try:
        cwd = Path.cwd()
    except OSError:
        return False
    return targets.contains(path, cwd)


@contextmanager
def replace_files(target: str | Path, remove: frozenset[str] = frozenset(), kind: str = "run",
                  known: frozenset[str] = frozenset()) -> Iterator[Path]:
    """Yield a temporary directory; on success each file in it replaces the file of the same name in
    the existing directory ``target`` (and the names in ``remove`` that were not rebuilt are deleted).

    For re-rendering a directory that must not be swapped as a whole: somebody's working
    directory (``truthprune report .``: the shell would be left in a deleted directory), or one
    that also holds files truthprune did not write. Only files truthprune wrote are replaced or
    removed: those the directory's marker lists, or (no marker: an older output) the names in
    ``known``; the marker is then updated. Each file is replaced atomically and signals are
    deferred for the whole replacement, so an interrupt gives the old files or the new ones.
    """
    path = prepare_output(target, True, kind="dir", whole=False)
    tmp = _new_temp(path)
    marker = read_marker(path)
    ours = set(marker["files"]) if marker is not None else {n for n in known if (path / n).is_file()}
    try:
        try:
            os.mkdir(tmp, 0o777)
            yield tmp
            raise_if_interrupted()
            built = {f.name for f in tmp.iterdir()}
            foreign = sorted(n for n in built if os.path.lexists(path / n) and n not in ours and n not in known)
            if foreign:
                raise UserError(f"{str(path / foreign[0])!r} exists and truthprune did not write it; remove or rename it, "
                                "then rerun")
            with deferred_signals():
                for name in sorted(built):
                    os.replace(tmp / name, path / name)
                for name in sorted((remove & ours) - built):
                    (path / name).unlink(missing_ok=True)
                files = sorted((ours - (remove - built)) | built)
                marker_tmp = tmp / MARKER
                write_marker(tmp, kind, files)
                os.replace(marker_tmp, path / MARKER)
        except BaseException as exc:
            if disk_full(exc):
                raise disk_full_error(path, exc) from None
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        release_output(path)


def holds_working_directory(target: str | Path) -> bool:
    """True when ``target`` is (or contains) this process's working directory."""
    return _holds_cwd(Path(os.path.abspath(str(target))))


def check_work_dir(path: str | Path, flag: str, outputs: list[tuple[str, str | Path | None]] = ()) -> Path:
    """A directory a command writes its own files into and removes them from afterwards (e.g.
    finetune's --checkpoint-dir): not a special directory, not an input of the command or inside
    one, not overlapping one of its ``outputs`` (flag, path), and writable. Returns it, absolute."""
    p = resolve_target(path, flag)
    why = targets.special(p)
    if why is not None:
        raise UserError(f"{flag} {str(p)!r} {why}; choose a directory of its own")
    for other_flag, other in [*targets.declared_inputs(), *outputs]:
        if other is not None and (targets.contains(p, other) or targets.contains(other, p)):
            raise UserError(f"{flag} {str(p)!r} overlaps {other_flag} {str(other)!r}; files written to one would land in "
                            "the other: give it a directory of its own")
    if os.path.lexists(p) and not p.is_dir():
        raise UserError(f"{flag} {str(p)!r} exists and {describe(p)}, not a directory; choose another path")
    check_writable(p, flag)
    return p


def declare_inputs(pairs: list[tuple[str, str | Path | None]]) -> None:
    """The inputs of the running command, as (flag, path): no output of this process may be or
    contain one of them (:mod:`truthprune.outputs.targets`). Forgotten when the command ends."""
    targets.declare_inputs(pairs)
