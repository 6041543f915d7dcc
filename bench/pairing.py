"""Helpers shared by the paired benches (peer_llmcompressor.py, obs_precision.py, profile_method.py):
perplexity per evaluation window, paired perplexity ratios with an interval, zero-mask agreement,
and the machine state printed next to every timing.

Why per window: two pruned models evaluated on the same windows give paired per-window losses,
so their perplexity ratio gets an interval from the windows' spread (the variance of the text);
the calibration draw is held fixed by the benches and is not part of that interval.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def machine_state() -> str:
    """Load average, cores and torch threads: printed with every timing (a busy machine slows all sides)."""
    import torch

    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def loadavg() -> float:
    return os.getloadavg()[0]


def wikitext_path(split: str, given: str | None = None) -> str:
    path = Path(given) if given else SHARED / "wikitext-2" / f"{split}.txt"
    if not path.is_file():
        raise SystemExit(f"error: {path} not found; pass --{split}-text PATH (a WikiText-2 raw {split} file)")
    return str(path)


def eval_windows(tokenizer: Any, test_path: str, n_windows: int, seqlen: int):
    """[n_windows, seqlen] token windows of the test text under the perplexity protocol."""
    from truthprune import load_eval_text

    ids = load_eval_text(test_path, tokenizer)
    n = min(n_windows, ids.numel() // seqlen)
    return ids[: n * seqlen].view(n, seqlen)


def window_nlls(model: Any, windows, batch_size: int = 8) -> np.ndarray:
    """Mean next-token NLL of every window (float64 array): ``truthprune.perplexity``'s own per-window
    values, the windows laid end to end so that it cuts exactly these ones."""
    from truthprune import perplexity

    n, seqlen = windows.shape
    result = perplexity(model, windows.reshape(-1), seqlen, batch_size=batch_size, max_windows=n)
    return np.asarray(result["window_nll"], dtype=np.float64)


def ppl(nll: np.ndarray) -> float:
    return math.exp(float(np.mean(nll)))


def ppl_ratio(nll_a: np.ndarray, nll_b: np.ndarray) -> tuple[float, float, float]:
    """ppl(b) / ppl(a) with a 95 % interval over windows (paired: same windows for both)."""
    d = nll_b - nll_a
    se = float(np.std(d, ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan")
    m = float(np.mean(d))
    return math.exp(m), math.exp(m - 1.96 * se), math.exp(m + 1.96 * se)


def zero_masks(model: Any) -> list:
    """``weight == 0`` of every prunable linear, layer by layer, names sorted."""
    from truthprune import decoder_layers, prunable_linears

    return [(lin.weight.detach() == 0).cpu() for layer in decoder_layers(model)
            for _, lin in sorted(prunable_linears(layer).items())]


def mask_agreement(a: list, b: list) -> float:
    """Fraction of weight positions whose zero/non-zero state is the same in both."""
    same = sum(int((x == y).sum()) for x, y in zip(a, b))
    return same / sum(x.numel() for x in a)


def identical_linears(a: list, b: list) -> int:
    return sum(bool(torch_equal(x, y)) for x, y in zip(a, b))


def torch_equal(x, y) -> bool:
    import torch

    return torch.equal(x, y)


class Stopwatch:
    """``with Stopwatch() as t: ...`` then ``t.s``: wall seconds, plus the load average at the end."""

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self.t0
        self.load = loadavg()
        return False
