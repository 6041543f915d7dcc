"""A rich progress bar per engine stage (layer i/L, samples/s, elapsed); silent with quiet."""

from __future__ import annotations

import time
from contextlib import contextmanager


class LayerProgress:
    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    @contextmanager
    def stage(self, title: str, n_layers: int):
        if self.quiet:
            yield lambda samples: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        t0 = time.perf_counter()
        seen = {"samples": 0}
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("layers"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            transient=False,
        ) as progress:
            task = progress.add_task(title, total=n_layers, rate="")

            def step(samples: int) -> None:
                seen["samples"] += samples
                rate = seen["samples"] / max(time.perf_counter() - t0, 1e-9)
                progress.update(task, advance=1, rate=f"{rate:.1f} samples/s")

            yield step
