"""SparC3 (attribution-guided pruning with LRP) for truthprune.

:mod:`.plugin` is the thin pruner class the CLI imports without torch; :mod:`.rules` holds the
LRP rules, :mod:`.relevance` the relevance passes, :mod:`.statements` the truth-target statements.
"""

from .plugin import Sparc3Config, Sparc3Pruner

__all__ = ["Sparc3Config", "Sparc3Pruner"]
