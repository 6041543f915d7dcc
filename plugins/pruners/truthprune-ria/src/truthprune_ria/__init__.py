"""RIA (relative importance and activations) for truthprune."""

from .plugin import RIAConfig, RIAPruner

__all__ = ["RIAPruner", "RIAConfig", "ria_scores", "retained_score", "heuristic_permutation", "refine_permutation",
           "nm_permutation"]

_MATHS = frozenset(("ria_scores", "retained_score", "heuristic_permutation", "refine_permutation", "nm_permutation"))


def __getattr__(name):  # torch is loaded on first use, so the registration import stays torch-free
    if name in _MATHS:
        from . import maths

        return getattr(maths, name)
    raise AttributeError(name)
