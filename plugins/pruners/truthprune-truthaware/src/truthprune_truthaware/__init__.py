"""Truth-aware pruning for truthprune (the ``truthaware`` pruner).

The maths lives in :mod:`truthprune_truthaware.objective` (torch, imported on first use) and the
statement streams in :mod:`truthprune_truthaware.streams`; :mod:`.plugin` is the thin class that
the CLI imports without torch.
"""

from .plugin import TruthAwareConfig, TruthAwarePruner

__all__ = ["TruthAwareConfig", "TruthAwarePruner"]
