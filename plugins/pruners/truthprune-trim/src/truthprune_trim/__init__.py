"""TRIM (row-wise, metric-driven sparsity inside a layer) for truthprune."""

from .plugin import TrimConfig, TrimPruner

__all__ = ["TrimPruner", "TrimConfig", "TrimResult", "exact_row_counts", "row_cosine", "row_count_mask", "trim_mask"]


_MATHS = frozenset(('TrimResult', 'exact_row_counts', 'row_cosine', 'row_count_mask', 'trim_mask'))  # torch: loaded on first use, so the registration import stays torch-free


def __getattr__(name):
    if name in _MATHS:
        from . import maths

        return getattr(maths, name)
    raise AttributeError(name)
