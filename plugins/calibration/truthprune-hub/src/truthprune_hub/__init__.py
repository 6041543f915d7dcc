"""Hub calibration sources for truthprune: ``c4`` and ``wikitext2`` (or local copies)."""

from .plugin import C4Source, WikiText2Source

__all__ = ["C4Source", "WikiText2Source"]
