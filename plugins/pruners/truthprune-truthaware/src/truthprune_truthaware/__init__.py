"""Statement-calibrated OBS for truthprune (the ``truthaware`` pruner, a name kept from when it was
built as "truth-aware"; the ablation in docs/results/dense-target.md found that the statements
help and their true/false labels do not).

The maths lives in :mod:`truthprune_truthaware.objective` (torch, imported on first use) and the
statement streams in :mod:`truthprune_truthaware.streams`; :mod:`.plugin` is the thin class that
the CLI imports without torch.
"""

from .plugin import TruthAwareConfig, TruthAwarePruner

__all__ = ["TruthAwareConfig", "TruthAwarePruner"]
