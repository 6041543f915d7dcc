"""Calibration sources that need no network: ``pydoc`` and ``generated``."""

from .plugin import GeneratedSource, PydocSource

__all__ = ["GeneratedSource", "PydocSource"]
