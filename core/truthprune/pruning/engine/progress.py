"""A progress bar per engine stage (layer i/L, samples/s, elapsed, time left); silent with quiet.

Drawn through :func:`truthprune.progress.bar`: on a terminal only, and inside the run's one live
display when there is one, so a piped log gets no bar debris."""

from __future__ import annotations

import time
from contextlib import contextmanager
from ...progress import bar


class LayerProgress:
    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    @contextmanager
    def stage(self, title: str, n_layers: int):
        t0 = time.perf_counter()
        seen = {"samples": 0}
        with bar(title, n_layers, unit="layers", quiet=self.quiet) as advance:

            def step(samples: int) -> None:
                seen["samples"] += samples
                rate = seen["samples"] / max(time.perf_counter() - t0, 1e-9)
                advance(1, unit=f"layers, {rate:.1f} samples/s")

            yield step
