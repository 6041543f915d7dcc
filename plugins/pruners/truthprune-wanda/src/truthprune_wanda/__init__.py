"""Wanda for truthprune. ``WandaPruner`` is public so presets (owl, tplo) can reuse it."""

from .plugin import WandaConfig, WandaPruner

__all__ = ["WandaPruner", "WandaConfig"]
