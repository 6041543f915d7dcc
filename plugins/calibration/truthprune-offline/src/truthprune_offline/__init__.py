"""Calibration source that needs no network: ``generated`` (text sampled from the dense model).
The other offline source, ``pydoc``, is core's default and a core built-in."""

from .plugin import GeneratedSource

__all__ = ["GeneratedSource"]
