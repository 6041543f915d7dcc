"""TRIM (row-wise, metric-driven sparsity inside a layer) for truthprune."""

from .maths import TrimResult, exact_row_counts, row_cosine, row_count_mask, trim_mask
from .plugin import TrimConfig, TrimPruner

__all__ = ["TrimPruner", "TrimConfig", "TrimResult", "exact_row_counts", "row_cosine", "row_count_mask", "trim_mask"]
