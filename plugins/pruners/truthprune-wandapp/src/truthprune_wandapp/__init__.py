"""Wanda++ for truthprune (regional-gradient scores and regional optimisation)."""

from .plugin import WandappConfig, WandappPruner

__all__ = ["WandappPruner", "WandappConfig"]
