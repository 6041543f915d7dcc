"""DSnoT (dynamic sparse, no training) for truthprune."""

from .plugin import DSnoTConfig, DSnoTPruner

__all__ = ["DSnoTPruner", "DSnoTConfig", "DSnoTResult", "dsnot_refine", "row_errors"]

_MATHS = frozenset(("DSnoTResult", "dsnot_refine", "row_errors"))


def __getattr__(name):  # torch is loaded on first use, so the registration import stays torch-free
    if name in _MATHS:
        from . import maths

        return getattr(maths, name)
    raise AttributeError(name)
