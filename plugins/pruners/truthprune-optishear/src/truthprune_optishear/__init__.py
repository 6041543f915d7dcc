"""OptiShear (evolutionary search of a pruning metric and layer sparsities) for truthprune.

:mod:`.plugin` holds the thin pruner/allocator classes (torch-free); :mod:`.space` the search
space, :mod:`.search` the resumable NSGA-III loop, :mod:`.fitness` the model-wise error.
"""

from .plugin import OptiShearAllocator, OptiShearPruner

__all__ = ["OptiShearAllocator", "OptiShearPruner"]
