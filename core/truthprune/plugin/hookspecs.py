"""The hooks a truthprune plugin may implement.

Each hook receives a ``register`` callable; the plugin calls it once per class it provides.
First-party plugins (including the built-ins shipped with core) use exactly these hooks.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("truthprune")
hookimpl = pluggy.HookimplMarker("truthprune")


@hookspec
def register_pruners(register):
    """Register :class:`truthprune.Pruner` subclasses: ``register(MyPruner)``."""


@hookspec
def register_quantizers(register):
    """Register :class:`truthprune.Quantizer` subclasses (applied after pruning, per linear)."""


@hookspec
def register_allocators(register):
    """Register :class:`truthprune.SparsityAllocator` subclasses."""


@hookspec
def register_calibration_sources(register):
    """Register :class:`truthprune.CalibrationSource` subclasses."""


@hookspec
def register_probes(register):
    """Register :class:`truthprune.Probe` subclasses."""


@hookspec
def register_commands(app):
    """Add typer commands to the ``truthprune`` CLI: ``@app.command() def mine(): ...``."""
