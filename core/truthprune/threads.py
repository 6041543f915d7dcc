"""One CPU thread for a stretch of work: :func:`single_thread`, the one helper for it.

Why: column-by-column sweeps (GPTQ, SparseGPT's OBS updates) and the tiny matmuls of tests run
many small ops; with several OpenMP threads their start-up and spin-waits dominate, badly so when
other processes share the cores (on 2 busy cores a SparseGPT layer took 9.4 s on 2 threads and
1.7 s on 1; a GPTQ of 576 x 1536 took 10.3 s and 0.54 s). One thread also keeps float sums
independent of the machine's core count. torch is imported only when the context is entered.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def single_thread(active: bool = True) -> Iterator[None]:
    """torch on one intra-op thread inside the ``with`` block (the caller's setting restored after);
    ``active=False`` changes nothing (e.g. work on a GPU)."""
    if not active:
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
