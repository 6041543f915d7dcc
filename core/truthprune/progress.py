"""What a long command shows while it works: a rich progress bar with an ETA on a terminal, one
clean line per finished stage when the output goes to a file or a pipe.

Why one module: every long loop (perplexity windows, statement extraction, probe fitting, the
pruning engine's layers) reports through :func:`bar`, and every stage of a run through
:class:`StageLine`, so all of them follow one policy:

* on a terminal (stderr is a TTY): one shared live display holds every bar, each with its count,
  elapsed time and time remaining; finished bars vanish and leave the stage's line;
* piped or redirected: no bar at all (no carriage returns, no blank lines), only the stage lines;
* ``quiet``: nothing.

Third-party bars (transformers' "Loading weights", the GGUF conversion, hub downloads) are
switched off by :func:`silence_third_party_bars`; our stage line says what they did.
Importing this module imports neither rich nor torch.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_LIVE: Any = None  # the rich Progress shared by every bar of this process while a session is open
_DISABLED = {"quiet": False}


def interactive() -> bool:
    """Whether bars are drawn: stderr is a terminal, TERM is not 'dumb', and not switched off
    (``TRUTHPRUNE_PROGRESS=0``)."""
    if os.environ.get("TRUTHPRUNE_PROGRESS", "").strip() == "0" or os.environ.get("TERM") == "dumb":
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def silence_third_party_bars() -> None:
    """Switch off tqdm bars of transformers, huggingface_hub, datasets and the GGUF converter.

    Why: in a log each of them is one long line of carriage returns, and on a terminal they
    fight with ours for the cursor. Environment variables cover the libraries not imported yet."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    if "transformers" in sys.modules:
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:  # pragma: no cover - a transformers without the switch
            pass
    if "huggingface_hub" in sys.modules:
        try:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        except ImportError:  # pragma: no cover
            pass
    if "datasets" in sys.modules:
        try:
            from datasets.utils.logging import disable_progress_bar

            disable_progress_bar()
        except ImportError:  # pragma: no cover
            pass


def _columns() -> tuple[Any, ...]:
    """Spinner, name, bar, 'n/N unit', elapsed, 'eta' + time left; a stage's own row (no total)
    shows its name, elapsed time and estimate instead of an empty count."""
    from rich.progress import BarColumn, ProgressColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class Count(ProgressColumn):
        def render(self, task: Any) -> Text:
            unit = task.fields.get("unit", "")
            if task.total is None:
                return Text(unit)
            return Text(f"{int(task.completed)}/{int(task.total)} {unit}".rstrip())

    class Left(ProgressColumn):
        def render(self, task: Any) -> Text:
            left = task.time_remaining
            if task.total is None or left is None:
                return Text("")
            return Text(f"eta {format_seconds(left)}")

    return (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=24), Count(), TimeElapsedColumn(),
            Left())


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


@contextmanager
def session(quiet: bool = False) -> Iterator[None]:
    """One live display for a whole command; :func:`bar` and :func:`say` use it while it is open.
    Nested sessions reuse the outer one."""
    global _LIVE
    if _LIVE is not None or quiet or not interactive():
        previous = _DISABLED["quiet"]
        _DISABLED["quiet"] = previous or quiet
        try:
            yield
        finally:
            _DISABLED["quiet"] = previous
        return
    from rich.progress import Progress

    live = Progress(*_columns(), console=_console(), transient=True, refresh_per_second=4)
    live.start()
    _LIVE = live
    try:
        yield
    finally:
        _LIVE = None
        live.stop()


def say(text: str, quiet: bool = False) -> None:
    """One line on stderr, above the bars when they are drawn."""
    if quiet or _DISABLED["quiet"]:
        return
    if _LIVE is not None:
        _LIVE.console.print(text, markup=False, highlight=False)
    else:
        print(text, file=sys.stderr, flush=True)


def _noop(n: int = 1, **fields: Any) -> None:
    return None


@contextmanager
def bar(description: str, total: int | None, unit: str = "", quiet: bool = False) -> Iterator[Callable[..., None]]:
    """A progress bar for one loop: yields ``advance(n=1)``. Drawn only on a terminal; on a pipe
    and with ``quiet`` it is a no-op (the stage line says how long the loop took)."""
    if quiet or _DISABLED["quiet"] or not interactive():
        yield _noop
        return
    own = _LIVE is None
    if own:
        from rich.progress import Progress

        live = Progress(*_columns(), console=_console(), transient=True, refresh_per_second=4)
        live.start()
    else:
        live = _LIVE
    task = live.add_task(description, total=total, unit=unit)

    def advance(n: int = 1, **fields: Any) -> None:
        live.update(task, advance=n, **fields)

    try:
        yield advance
    finally:
        if own:
            live.stop()
        else:
            live.remove_task(task)


def format_seconds(seconds: float) -> str:
    """'42 s', '3 min 5 s', '1 h 2 min': how long, for a person."""
    s = int(round(seconds))
    if s < 60:
        return f"{max(seconds, 0):.1f} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


class StageLine:
    """The one line per stage of a run: ``[3/9] dense-truth  41 s  (what it used; about 2 min left)``.

    ``estimates`` (stage -> seconds, from the plan) give the time left; once stages have run the
    remaining estimates are scaled by how fast this machine turned out to be so far."""

    def __init__(self, names: list[str], estimates: dict[str, float] | None = None, quiet: bool = False):
        self.names = names
        self.estimates = estimates or {}
        self.quiet = quiet
        self.spent: dict[str, float] = {}
        self._live_task: Any = None
        self._t0 = time.perf_counter()

    def _speed(self) -> float:
        """How much slower (>1) or faster this machine ran the finished stages than estimated."""
        done_est = sum(self.estimates.get(n, 0.0) for n in self.spent)
        done_real = sum(self.spent.values())
        speed = done_real / done_est if done_est > 1.0 else 1.0
        return min(max(speed, 0.25), 8.0)  # one odd stage must not make the estimate absurd

    def left(self, after: str) -> float | None:
        """Estimated seconds left after stage ``after`` (None without estimates)."""
        if not self.estimates:
            return None
        rest = self.names[self.names.index(after) + 1:] if after in self.names else []
        return self._speed() * sum(self.estimates.get(n, 0.0) for n in rest)

    @contextmanager
    def running(self, name: str) -> Iterator[None]:
        """While stage ``name`` runs: a spinner with its elapsed time on a terminal."""
        task = None
        if _LIVE is not None and not (self.quiet or _DISABLED["quiet"]):
            k = self.names.index(name) + 1 if name in self.names else 0
            est = self.estimates.get(name)
            unit = f"this stage about {format_seconds(self._speed() * est)}" if est and est >= 1 else ""
            task = _LIVE.add_task(f"[{k}/{len(self.names)}] {name}", total=None, unit=unit)
        try:
            yield
        finally:
            if task is not None:
                _LIVE.remove_task(task)

    def done(self, name: str, seconds: float, detail: str = "") -> None:
        self.spent[name] = seconds
        k = self.names.index(name) + 1 if name in self.names else len(self.spent)
        left = self.left(name)
        tail = [detail] if detail else []
        if left is not None and left >= 1 and k < len(self.names):
            tail.append(f"about {format_seconds(left)} left")
        text = f"[{k}/{len(self.names)}] {name:<14} {format_seconds(seconds):>9}"
        say(text + (f"  ({'; '.join(tail)})" if tail else ""), quiet=self.quiet)


progress_bar = bar  # the public name (``truthprune.progress_bar``) plugins use

__all__ = ["interactive", "silence_third_party_bars", "session", "bar", "progress_bar", "say", "format_seconds", "StageLine"]
