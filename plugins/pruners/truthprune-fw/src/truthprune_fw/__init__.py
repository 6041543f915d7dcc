"""Frank-Wolfe masks for truthprune."""

from .plugin import FWConfig, FWPruner

__all__ = ["FWPruner", "FWConfig", "FWResult", "frank_wolfe_mask", "least_squares_update", "reconstruction_error"]


_MATHS = frozenset(('FWResult', 'frank_wolfe_mask', 'least_squares_update', 'reconstruction_error'))  # torch: loaded on first use, so the registration import stays torch-free


def __getattr__(name):
    if name in _MATHS:
        from . import maths

        return getattr(maths, name)
    raise AttributeError(name)
