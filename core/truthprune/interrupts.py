"""How a command ends on a signal: it unwinds (temporaries removed, locks released), never dies mid-write.

SIGINT raises KeyboardInterrupt (exit 130); SIGTERM, SIGHUP and SIGQUIT raise SystemExit(128 + n)
(143, 129, 131): a batch system's time limit, a closed terminal or ssh connection. Every signal
is recorded (:func:`was_interrupted`), so a library that swallowed the KeyboardInterrupt cannot
make the final swap of an output go ahead (:func:`raise_if_interrupted`). During the swap itself
signals are deferred (:func:`deferred_signals`).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

_INTERRUPTED = False


TERMINATED_EXIT = 143  # 128 + SIGTERM
# signals that end a command by unwinding (temporaries removed, locks released): SIGINT raises
# KeyboardInterrupt (exit 130); the others exit 128 + signal number. SIGHUP and SIGQUIT come from
# a closed terminal or ssh connection: left at their default they killed the process mid-write.
_UNWIND = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, n))
_SIGNAL: int | None = None  # the last signal received (what a swallowed interrupt re-raises)
_DEFER = 0  # depth of :func:`deferred_signals` sections
_HELD_BACK: int | None = None  # a signal that arrived inside one


def signal_exit(signum: int) -> BaseException:
    """The exception a signal unwinds with: KeyboardInterrupt for SIGINT, else SystemExit(128 + n)."""
    return KeyboardInterrupt() if signum == signal.SIGINT else SystemExit(128 + int(signum))


def _on_signal(signum, frame):  # noqa: ARG001
    global _INTERRUPTED, _SIGNAL, _HELD_BACK
    _INTERRUPTED, _SIGNAL = True, signum
    if _DEFER:  # inside a swap: finish it first (see deferred_signals)
        _HELD_BACK = _HELD_BACK or signum
        return
    raise signal_exit(signum)


def _is_default(signum: int) -> bool:
    handler = signal.getsignal(signum)
    return handler is signal.default_int_handler if signum == signal.SIGINT else handler == signal.SIG_DFL


def install_interrupt_guard() -> None:
    """Record every SIGINT (then raise KeyboardInterrupt as Python does) so a swallowed interrupt
    still stops the final swap; SIGTERM (a batch system's time limit), SIGHUP and SIGQUIT unwind
    the same way instead of killing the process mid-write (a signal set to be ignored, as nohup
    does, stays ignored). Main thread only; a no-op elsewhere. Each command starts clean."""
    global _INTERRUPTED, _SIGNAL, _HELD_BACK, _DEFER
    _INTERRUPTED, _SIGNAL, _HELD_BACK, _DEFER = False, None, None, 0
    try:
        for signum in _UNWIND:
            if _is_default(signum):
                signal.signal(signum, _on_signal)
    except ValueError:  # not the main thread
        pass


@contextmanager
def deferred_signals() -> Iterator[None]:
    """A section no signal interrupts: one that arrives is acted on when the section ends.

    Why not ``pthread_sigmask``: a signal blocked in the main thread is delivered to another
    thread instead (a BLAS, tokenizer or plotting thread), and a Python signal handler running
    there aborted the process ("Fatal Python error: PyThreadState_Get") in about one SIGINT in
    five during the report write. Here the main thread keeps receiving signals; the handler only
    records them while a swap is in progress."""
    global _DEFER, _HELD_BACK
    installed = []
    try:
        for signum in _UNWIND:
            if _is_default(signum):  # library use without the CLI's guard: guard this section
                signal.signal(signum, _on_signal)
                installed.append(signum)
    except ValueError:  # not the main thread: signals are handled by the main thread anyway
        pass
    _DEFER += 1
    try:
        yield
    finally:
        _DEFER -= 1
        for signum in installed:
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
        if not _DEFER and _HELD_BACK is not None:
            held_back, _HELD_BACK = _HELD_BACK, None
            raise signal_exit(held_back)


def raise_if_interrupted() -> None:
    """A swallowed interrupt still stops a swap (the handler recorded it)."""
    if _INTERRUPTED:
        raise signal_exit(_SIGNAL if _SIGNAL is not None else signal.SIGINT)


def was_interrupted() -> bool:
    return _INTERRUPTED


