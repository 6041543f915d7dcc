"""Plugin discovery: one entry-point group, pluggy hooks, one registry of named classes.

Every plugin, the built-ins included, is a module named by an entry point in the
``truthprune`` group. Loading a module registers it with pluggy; its ``register_*`` hooks are
then called one plugin at a time so each registered class is tied to its distribution (for
``truthprune plugins`` and for duplicate-name errors).

Policy: a plugin that raises while loading produces one warning line and is skipped, unless
``TRUTHPRUNE_STRICT_PLUGINS=1``. ``TRUTHPRUNE_LOAD_PLUGINS=a,b`` loads only the named plugins
(entry-point or distribution names); the core built-ins are always loaded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from . import contracts, hookspecs
from .contracts import check_registration
from ..errors import PluginError, UserError, unknown_name_error
from .interfaces import CalibrationSource, Plugin, Probe, Pruner, Quantizer, SparsityAllocator, StructuredPruner

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "truthprune"
CORE_DIST = "truthprune"

# kind -> (hook name, required base class or classes); a structured pruner is a pruner by name
KINDS: dict[str, tuple[str, type | tuple[type, ...]]] = {
    "pruner": ("register_pruners", (Pruner, StructuredPruner)),
    "quantizer": ("register_quantizers", Quantizer),
    "allocator": ("register_allocators", SparsityAllocator),
    "calibration": ("register_calibration_sources", CalibrationSource),
    "probe": ("register_probes", Probe),
}


@dataclass(frozen=True)
class Registered:
    kind: str
    name: str
    cls: type
    plugin: str
    distribution: str
    version: str

    @property
    def description(self) -> str:
        lines = (getattr(self.cls, "description", "") or "").strip().splitlines()
        return lines[0] if lines else ""

    def as_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "plugin": self.plugin,
            "description": self.description,
        }


class Registry:
    """All named plugin classes, by kind."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("truthprune")
        self.pm.add_hookspecs(hookspecs)
        self._items: dict[str, dict[str, Registered]] = {k: {} for k in KINDS}
        self._dist_of_plugin: dict[str, tuple[str, str]] = {}
        self.failed: list[tuple[str, str]] = []
        # (kind, name) -> message, for names two distributions register: refused when used (or strict)
        self.clashes: dict[tuple[str, str], str] = {}

    # -- loading -----------------------------------------------------------------------
    def add_plugin(self, module: Any, plugin_name: str, distribution: str, version: str) -> None:
        """Register a loaded plugin module (or object) and collect what it registers."""
        self.pm.register(module, name=plugin_name)
        self._dist_of_plugin[plugin_name] = (distribution, version)
        for kind, (hook, _) in KINDS.items():
            for impl in getattr(self.pm.hook, hook).get_hookimpls():
                if impl.plugin_name == plugin_name:
                    impl.function(register=self._registrar(kind, plugin_name))

    def _registrar(self, kind: str, plugin_name: str):
        base = KINDS[kind][1]
        dist, version = self._dist_of_plugin[plugin_name]

        def register(cls: type) -> type:
            if not (isinstance(cls, type) and issubclass(cls, base)):
                names = " or ".join(b.__name__ for b in (base if isinstance(base, tuple) else (base,)))
                raise PluginError(f"plugin {plugin_name!r} registered {cls!r}, which is not a {names}")
            name = getattr(cls, "name", None)
            if not isinstance(name, str) or not name.strip():
                raise PluginError(f"plugin {plugin_name!r}: {cls.__name__} has no 'name' attribute")
            check_registration(cls, kind, dist, version)  # e.g. required_stats the engine does not know
            existing = self._items[kind].get(name)
            if existing is not None and existing.cls is not cls:
                msg = (f"{kind} name {name!r} is registered twice: by distribution {existing.distribution!r} "
                       f"and by distribution {dist!r}; uninstall one of them")
                if _strict():
                    raise PluginError(msg + " (TRUTHPRUNE_STRICT_PLUGINS=1)")
                if (kind, name) not in self.clashes:  # isolated: only a use of this name fails
                    print(f"warning: {msg}; {name!r} is unavailable until then", file=sys.stderr)
                self.clashes[(kind, name)] = msg
                return cls
            self._items[kind][name] = Registered(kind, name, cls, plugin_name, dist, version)
            return cls

        return register

    # -- lookup ------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(self._items[kind])

    def entries(self) -> list[Registered]:
        return [r for kind in KINDS for r in sorted(self._items[kind].values(), key=lambda r: r.name)]

    def get(self, kind: str, name: str) -> type:
        if (kind, name) in self.clashes:
            raise PluginError(self.clashes[(kind, name)])
        try:
            return self._items[kind][name].cls
        except KeyError:
            raise unknown_name_error(kind, name, self._items[kind]) from None

    def entry(self, kind: str, name: str) -> Registered:
        self.get(kind, name)
        return self._items[kind][name]

    def create(self, kind: str, name: str, options: dict[str, Any] | None = None) -> Plugin:
        return self.get(kind, name)(options or {})

    def allocator_flags(self) -> dict[str, tuple[str, str]]:
        """Every installed allocator's command-line shortcuts: flag (no "--") -> (option, help).

        Why here: `run`, `prune`, `sweep` and `allocate` offer them without core naming any
        allocator. A flag two allocators declare for different options keeps the first
        (alphabetical by allocator name) and logs the clash."""
        flags: dict[str, tuple[str, str]] = {}
        for entry in sorted(self._items["allocator"].values(), key=lambda r: r.name):
            for flag, (field, text) in dict(getattr(entry.cls, "option_flags", {}) or {}).items():
                if flag in flags and flags[flag][0] != field:
                    log.warning("allocator %r declares --%s for option %r, already --%s for %r; ignored",
                                entry.name, flag, field, flag, flags[flag][0])
                    continue
                flags.setdefault(flag, (field, text))
        return flags

    def add_commands(self, app: Any) -> None:
        """Let plugins add CLI commands (register_commands hook)."""
        for impl in self.pm.hook.register_commands.get_hookimpls():
            try:
                with _stdout_to_stderr():
                    impl.function(app=app)
            except BaseException as exc:  # a broken command plugin must not kill the CLI
                _reraise_real_interrupt(exc)
                _fail(self, impl.plugin_name, exc)


def _strict() -> bool:
    return os.environ.get("TRUTHPRUNE_STRICT_PLUGINS", "").strip().lower() in {"1", "true", "yes"}


def _fail(registry: Registry, plugin_name: str, exc: BaseException) -> None:
    msg = f"plugin {plugin_name!r} failed to load: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if _strict():
        raise PluginError(msg + " (TRUTHPRUNE_STRICT_PLUGINS=1)")
    registry.failed.append((plugin_name, msg))
    print(f"warning: {msg}", file=sys.stderr)


def _reraise_real_interrupt(exc: BaseException) -> None:
    """A Ctrl-C of the user still interrupts; a plugin raising KeyboardInterrupt/SystemExit itself is
    only that plugin's failure (isolated like any other exception)."""
    from ..interrupts import was_interrupted

    if isinstance(exc, GeneratorExit) or (isinstance(exc, (KeyboardInterrupt, SystemExit)) and was_interrupted()):
        raise exc


@contextlib.contextmanager
def _stdout_to_stderr():
    """What a plugin prints while it loads goes to stderr: stdout carries machine output
    (``--json``), which a print at import used to corrupt."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _wanted(only: set[str] | None, ep: metadata.EntryPoint, dist: str) -> bool:
    return only is None or dist == CORE_DIST or ep.name in only or dist in only


def load_plugins() -> Registry:
    """Discover and load every plugin in the ``truthprune`` entry-point group."""
    registry = Registry()
    only_env = os.environ.get("TRUTHPRUNE_LOAD_PLUGINS")
    only = {x.strip() for x in only_env.split(",") if x.strip()} if only_env is not None else None
    seen: dict[str, str] = {}  # entry-point name -> the distribution whose entry point was loaded under it
    eps = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP),
                 key=lambda e: (e.dist.name != CORE_DIST if e.dist else True, e.name, e.dist.name if e.dist else ""))
    for ep in eps:
        dist = ep.dist.name if ep.dist else "unknown"
        version = ep.dist.version if ep.dist else "?"
        if not _wanted(only, ep, dist) or seen.get(ep.name) == dist:  # the same distribution found twice on the path
            continue
        plugin_name = ep.name
        if ep.name in seen:  # another distribution uses the name: load it too, under its own name, and say so
            plugin_name = f"{ep.name} ({dist})"
            print(f"warning: entry point {ep.name!r} is declared by distribution {seen[ep.name]!r} and by distribution "
                  f"{dist!r}; both are loaded, and a plugin name both register is refused when used: uninstall one of them",
                  file=sys.stderr)
        else:
            seen[ep.name] = dist
        try:
            with _stdout_to_stderr():
                module = ep.load()
                registry.add_plugin(module, plugin_name, dist, version)
        except BaseException as exc:  # SystemExit/KeyboardInterrupt raised by a plugin's import too
            _reraise_real_interrupt(exc)
            if plugin_name in registry._dist_of_plugin:
                if registry.pm.get_plugin(plugin_name) is not None:
                    registry.pm.unregister(name=plugin_name)
                for kind in KINDS:
                    registry._items[kind] = {k: v for k, v in registry._items[kind].items() if v.plugin != plugin_name}
            _fail(registry, plugin_name, exc)
    return registry


_REGISTRY: Registry | None = None


def _registered_origin(cls: type) -> tuple[str, str | None] | None:
    """(distribution, version) that registered ``cls`` in the loaded registry; never loads plugins."""
    if _REGISTRY is not None:
        for entry in _REGISTRY.entries():
            if entry.cls is cls:
                return entry.distribution, entry.version
    return None


contracts.use_origin_lookup(_registered_origin)


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = load_plugins()
    return _REGISTRY


def reset_registry() -> None:
    """Forget the loaded registry (tests that install or break plugins use this)."""
    global _REGISTRY
    _REGISTRY = None


__all__ = ["Registry", "Registered", "load_plugins", "get_registry", "reset_registry", "KINDS", "UserError"]
