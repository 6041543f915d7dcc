"""Frank-Wolfe masks for truthprune."""

from .maths import FWResult, frank_wolfe_mask, least_squares_update, reconstruction_error
from .plugin import FWConfig, FWPruner

__all__ = ["FWPruner", "FWConfig", "FWResult", "frank_wolfe_mask", "least_squares_update", "reconstruction_error"]
