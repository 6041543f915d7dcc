"""The built-in plugins shipped with core, registered through the same entry point and hooks
as any third-party plugin (entry point ``builtins`` in core's pyproject.toml)."""

from truthprune.plugin.hookspecs import hookimpl

from .mass_mean import MassMeanProbe
from .pruning import MagnitudePruner, UniformAllocator
from .text_source import TextFileSource


@hookimpl
def register_pruners(register):
    register(MagnitudePruner)


@hookimpl
def register_allocators(register):
    register(UniformAllocator)


@hookimpl
def register_calibration_sources(register):
    register(TextFileSource)


@hookimpl
def register_probes(register):
    register(MassMeanProbe)
