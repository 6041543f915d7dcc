"""The built-in plugins shipped with core, registered through the same entry point and hooks
as any third-party plugin (entry point ``builtins`` in core's pyproject.toml).

They include the run's defaults (pruner ``wanda``, probe ``logreg``, calibration ``pydoc``), so
core alone runs ``truthprune run`` (docs/architecture.md, "Core runs on its own").
"""

from truthprune.plugin.hookspecs import hookimpl

from .logreg import LogRegProbe
from .mass_mean import MassMeanProbe
from .pruning import MagnitudePruner, UniformAllocator
from .text_source import PydocSource, TextFileSource
from .wanda import WandaPruner


@hookimpl
def register_pruners(register):
    register(MagnitudePruner)
    register(WandaPruner)


@hookimpl
def register_allocators(register):
    register(UniformAllocator)


@hookimpl
def register_calibration_sources(register):
    register(TextFileSource)
    register(PydocSource)


@hookimpl
def register_probes(register):
    register(MassMeanProbe)
    register(LogRegProbe)
