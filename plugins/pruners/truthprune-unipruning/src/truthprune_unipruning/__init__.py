"""UniPruning (local saliency + mirror-descent global controller) for truthprune."""

from .plugin import UniPruningAllocator, UniPruningConfig, UniPruningControllerConfig, UniPruningPruner

__all__ = ["UniPruningPruner", "UniPruningAllocator", "UniPruningConfig", "UniPruningControllerConfig",
           "error_curve", "curve_value", "curve_slope", "box_simplex_projection", "mirror_descent", "MirrorDescentResult"]

_MATHS = frozenset(("error_curve", "curve_value", "curve_slope", "box_simplex_projection", "mirror_descent",
                    "MirrorDescentResult"))


def __getattr__(name):  # torch is loaded on first use, so the registration import stays torch-free
    if name in _MATHS:
        from . import maths

        return getattr(maths, name)
    raise AttributeError(name)
