"""Core checks of what plugins hand back: a broken plugin fails loudly, naming itself.

Why here, and why not just trust the plugin: a pruner's mask of shape ``[in]`` broadcasts
against the ``[out, in]`` weight and silently prunes whole columns; an allocator returning one
value too few used to surface as a RuntimeError deep in the engine; a pruner asking for a
statistic the engine does not know silently received ``None``. Each of these is the *plugin's*
fault, so each raises :class:`~truthprune.errors.PluginContractError` (exit code 3 in the CLI,
not 2: no flag of the user fixes it), whose message names the plugin, its distribution and
version, and says so.

The engine (``engine/sequential.py``, ``engine/block.py``), the registry (``plugins.py``, at
registration) and the probing protocol (``probing/protocol.py``, through :func:`checked_probe`)
call these functions; ``truthprune.testing`` runs the same checks in its contract tests, so a
plugin author sees the failure in their own test suite first. Nothing here imports torch at
module level (the registry imports this module during ``truthprune --help``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..errors import PluginContractError


def describe_plugin(plugin: Any, kind: str | None = None, distribution: str | None = None, version: str | None = None) -> str:
    """``pruner 'owl' (distribution truthprune-owl 0.1.0)`` for a plugin instance or class.

    The distribution comes from the loaded registry when the class is registered there, else
    from the package that defines the class (a plugin created directly, e.g. in a test).
    """
    cls = plugin if isinstance(plugin, type) else type(plugin)
    kind = kind or getattr(cls, "kind", "plugin")
    name = getattr(cls, "name", None) or cls.__name__
    if distribution is None:
        distribution, version = _distribution_of(cls)
    where = f"distribution {distribution}" + (f" {version}" if version else "")
    return f"{kind} {name!r} ({where}, class {cls.__module__}.{cls.__qualname__})"


# The loaded registry's answer to "which distribution registered this class?": set by the registry
# (which stands above this module and imports it), None until a registry module is imported.
_registered_origin: Callable[[type], tuple[str, str | None] | None] | None = None


def use_origin_lookup(lookup: Callable[[type], tuple[str, str | None] | None]) -> None:
    """Let errors name the distribution a class was registered from (called by the registry)."""
    global _registered_origin
    _registered_origin = lookup


def _distribution_of(cls: type) -> tuple[str, str | None]:
    origin = _registered_origin(cls) if _registered_origin is not None else None
    if origin is not None:
        return origin
    try:
        from importlib import metadata

        top = cls.__module__.split(".")[0]
        dists = metadata.packages_distributions().get(top) or []
        if dists:
            return dists[0], metadata.version(dists[0])
    except Exception:  # noqa: BLE001 - only the wording of an error depends on it
        pass
    return "unknown (not installed as a distribution)", None


def violation(plugin: Any, problem: str, kind: str | None = None, distribution: str | None = None,
              version: str | None = None) -> PluginContractError:
    """The error for ``plugin`` breaking its contract; ``problem`` says what it returned and what was due."""
    who = describe_plugin(plugin, kind, distribution, version)
    return PluginContractError(
        f"{who} broke its plugin contract: {problem}. This is a bug in the plugin, not in your input or "
        "options; report it to the plugin's authors, or use another plugin"
    )


# ----------------------------------------------------------------------------- registration


def check_registration(cls: type, kind: str, distribution: str, version: str) -> None:
    """At registration: every statistic in ``required_stats`` is one the engine computes."""
    from .pruning_inputs import KNOWN_STATS

    required = getattr(cls, "required_stats", frozenset())
    if isinstance(required, str) or not all(isinstance(s, str) for s in required):
        raise violation(cls, f"required_stats must be a set of statistic names, got {required!r}", kind, distribution, version)
    unknown = sorted(set(required) - KNOWN_STATS)
    if unknown:
        raise violation(
            cls, f"required_stats names unknown statistic(s) {', '.join(map(repr, unknown))}; the engine computes "
            f"{', '.join(sorted(KNOWN_STATS))}", kind, distribution, version,
        )


# ----------------------------------------------------------------------------- pruners


def _shape(t: Any) -> str:
    return "[" + ", ".join(str(int(d)) for d in t.shape) + "]"


def check_prune_result(pruner: Any, linear: str, weight: Any, result: Any) -> None:
    """A :class:`PruneResult` whose mask is bool and shaped exactly like ``weight`` (no
    broadcasting), and whose optional updated weight has the weight's shape and is floating point."""
    import torch

    mask = getattr(result, "mask", None)
    if not isinstance(mask, torch.Tensor):
        raise violation(pruner, f"prune() for {linear!r} must return a PruneResult with a mask tensor, got {type(result).__name__}")
    if mask.dtype != torch.bool:
        raise violation(pruner, f"the mask for {linear!r} has dtype {mask.dtype}; masks are torch.bool (True = pruned)")
    if tuple(mask.shape) != tuple(weight.shape):
        raise violation(pruner, f"the mask for {linear!r} has shape {_shape(mask)} but the weight is {_shape(weight)}; "
                                "a mask must have exactly the weight's shape (it would broadcast)")
    new = getattr(result, "weight", None)
    if new is not None:
        check_updated_weight(pruner, linear, weight, new)


def check_updated_weight(pruner: Any, linear: str, weight: Any, new: Any) -> None:
    """An updated weight (``PruneResult.weight`` or ``end_block``) of the weight's exact shape."""
    import torch

    if not isinstance(new, torch.Tensor) or not new.is_floating_point():
        raise violation(pruner, f"the updated weight for {linear!r} must be a floating-point tensor, got "
                                f"{getattr(new, 'dtype', type(new).__name__)}")
    if tuple(new.shape) != tuple(weight.shape):
        raise violation(pruner, f"the updated weight for {linear!r} has shape {_shape(new)} but the weight is {_shape(weight)}")
    if not bool(torch.isfinite(new).all()):
        raise violation(pruner, f"the updated weight for {linear!r} holds NaN or Inf; pruned weights must stay finite")


def check_block_weights(pruner: Any, new: Any, linears: dict[str, Any]) -> dict[str, Any]:
    """``end_block``'s answer: None or {linear name of this block: weight of the same shape}."""
    if new is None:
        return {}
    if not isinstance(new, dict):
        raise violation(pruner, f"end_block() must return None or a dict of new weights by linear name, got {type(new).__name__}")
    for name, w in new.items():
        if name not in linears:
            raise violation(pruner, f"end_block() returned a weight for {name!r}, which is not a pruned linear of this "
                                    f"layer ({', '.join(sorted(linears))})")
        check_updated_weight(pruner, name, linears[name].weight, w)
    return new


def check_model_extras(pruner: Any, extras: Any, linears: dict[int, dict[str, Any]]) -> dict[int, dict[str, dict[str, Any]]]:
    """``prepare``'s answer: None or {layer index: {pruned linear name: {key: value}}}."""
    if extras is None:
        return {}
    if not isinstance(extras, dict):
        raise violation(pruner, f"prepare() must return None or a dict {{layer index: {{linear name: dict}}}}, got {type(extras).__name__}")
    for index, per_linear in extras.items():
        if index not in linears:
            raise violation(pruner, f"prepare() returned extras for layer {index!r}; the model has layers 0..{len(linears) - 1}")
        if not isinstance(per_linear, dict) or not all(isinstance(v, dict) for v in per_linear.values()):
            raise violation(pruner, f"prepare() must map layer {index} to {{linear name: dict}}, got {type(per_linear).__name__}")
        unknown = sorted(set(per_linear) - set(linears[index]))
        if unknown:
            raise violation(pruner, f"prepare() returned extras for {unknown[0]!r} in layer {index}, which is not a pruned "
                                    f"linear there ({', '.join(sorted(linears[index]))})")
    return extras


# ----------------------------------------------------------------------------- allocators


def check_allocation(allocator: Any, allocation: Any, n_layers: int) -> list[float]:
    """One finite sparsity in [0, 1) per decoder layer, as floats.

    Callers validate the user's target first (``SparsityTarget``: 0 <= target < 1), so every
    target reaching an allocator is feasible (a uniform allocation meets it). An allocator whose
    formula or options cannot meet it must raise UserError itself, naming its option (as owl and
    tplo do); a value outside [0, 1) that it returns anyway is its own bug.
    """
    try:
        values = [float(s) for s in allocation]
    except (TypeError, ValueError):
        raise violation(allocator, f"allocate() must return a list of numbers, got {allocation!r:.80}") from None
    if len(values) != n_layers:
        raise violation(allocator, f"allocate() returned {len(values)} sparsities for a model with {n_layers} decoder layers")
    for i, s in enumerate(values):
        if not (math.isfinite(s) and 0.0 <= s < 1.0):
            raise violation(allocator, f"allocate() gave layer {i} sparsity {s:.4g}, outside [0, 1) (an allocator that "
                                       "cannot meet a target with its options must raise UserError naming the option)")
    return values


# ----------------------------------------------------------------------------- probes


class CheckedProbe:
    """A probe whose answers are checked: ``fit`` returns the probe, ``predict`` one label in
    {0, 1} per row, ``score`` a finite accuracy in [0, 1], ``direction`` None or [d]."""

    def __init__(self, probe: Any):
        self._probe = probe
        self._width: int | None = None

    def __getattr__(self, name: str) -> Any:  # needs_polarity, config, name ... of the real probe
        if name.startswith("__") or name in ("_probe", "_width"):  # unpickling looks these up before __init__
            raise AttributeError(name)
        return getattr(self._probe, name)

    def fit(self, acts: Any, labels: Any, meta: Any = None) -> CheckedProbe:
        out = self._probe.fit(acts, labels, meta)
        if out is not self._probe:
            raise violation(self._probe, f"fit() must return the probe itself (self), got {type(out).__name__}")
        self._width = int(acts.shape[1]) if getattr(acts, "ndim", 0) == 2 else None
        return self

    def predict(self, acts: Any, meta: Any = None) -> Any:
        import numpy as np

        pred = np.asarray(self._probe.predict(acts, meta))
        n = int(acts.shape[0])
        if pred.shape != (n,):
            raise violation(self._probe, f"predict() on {n} rows returned shape {list(pred.shape)}; it must return [{n}] labels")
        if pred.size and not np.isin(pred, (0, 1)).all():
            raise violation(self._probe, f"predict() returned values other than 0 and 1 (e.g. {pred[~np.isin(pred, (0, 1))][0]!r})")
        return pred

    def score(self, acts: Any, labels: Any, meta: Any = None) -> float:
        from .interfaces import Probe

        if type(self._probe).score is Probe.score:  # the default: accuracy of the checked predict
            import numpy as np

            return float(np.mean(self.predict(acts, meta) == np.asarray(labels)))
        value = self._probe.score(acts, labels, meta)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise violation(self._probe, f"score() must return a number, got {type(value).__name__}") from None
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise violation(self._probe, f"score() returned {value!r}; an accuracy lies in [0, 1]")
        return value

    @property
    def direction(self) -> Any:
        d = self._probe.direction
        if d is None:
            return None
        import numpy as np

        arr = np.asarray(d)
        if arr.ndim != 1 or (self._width is not None and arr.shape[0] != self._width):
            want = f"[{self._width}]" if self._width is not None else "one dimension"
            raise violation(self._probe, f"direction has shape {list(arr.shape)}; it must be {want} (one weight per activation feature)")
        return d


def checked_probe(probe: Any) -> Any:
    """Wrap ``probe`` in :class:`CheckedProbe` (idempotent)."""
    return probe if isinstance(probe, CheckedProbe) else CheckedProbe(probe)
