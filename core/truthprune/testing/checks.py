"""Contract tests a plugin runs against itself: ``check_pruner``, ``check_allocator``,
``check_calibration_source``, ``check_probe`` and ``check_plugin`` (by registered name).

Why a kit: core enforces the contracts at run time (:mod:`truthprune.plugin.contracts`), but a plugin
author should meet a violation in their own test suite, on a tiny model, before a user meets it
after an hour of calibration. Each function takes the plugin class (or its registered name),
exercises it the way core does (directly on fake statistics and through the real engine on
:func:`~truthprune.testing.fixtures.tiny_llama`), and raises :class:`ContractFailure` (an
AssertionError, so pytest shows it as a failed test) or :class:`truthprune.PluginContractError`
naming the plugin. They return the list of checks that passed (``python -m truthprune.testing``
prints them).
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from ..plugin import contracts
from ..plugin.interfaces import (
    CalibrationContext,
    CalibrationSamples,
    CalibrationSource,
    PluginConfig,
    Probe,
    ProbeMeta,
    Pruner,
    Quantizer,
    SparsityAllocator,
    SparsityTarget,
    StructuredPruner,
)
from ..run.kinds import UNITS, kind_of
from .fixtures import VOCAB, TinyTokenizer, fake_linear_stats, tiny_calibration, tiny_llama
from ..builtins.pruning import MagnitudePruner
from ..errors import UserError
from ..plugin.registry import get_registry
from ..pruning.structured import prune_structured

KIND_BASES = {"pruner": (Pruner, StructuredPruner), "allocator": SparsityAllocator,
              "calibration": CalibrationSource, "probe": Probe, "quantizer": Quantizer}
SPARSITY_SLACK = 0.05  # achieved vs target on the tiny model (owl's 0.01 floor, per-row rounding)


class ContractFailure(AssertionError):
    """A plugin failed a contract test; the message names it (class and distribution)."""


def _fail(plugin: Any, problem: str) -> ContractFailure:
    return ContractFailure(f"{contracts.describe_plugin(plugin)} fails the plugin contract: {problem}")


def _resolve(kind: str, plugin: type | str) -> type:
    if isinstance(plugin, str):
        return get_registry().get(kind, plugin)
    return plugin


def check_class(kind: str, cls: type) -> list[str]:
    """Class attributes every plugin needs: the base class, name, description, Config, known statistics."""
    base = KIND_BASES[kind]
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ContractFailure(f"{cls!r} is not a {kind} class")
    if not isinstance(getattr(cls, "name", None), str) or not cls.name.strip():
        raise _fail(cls, "the class has no 'name' (what users type)")
    if not isinstance(cls.description, str) or not cls.description.strip():
        raise _fail(cls, "the class has no one-line 'description' (shown by `truthprune plugins`)")
    if not (isinstance(cls.Config, type) and issubclass(cls.Config, PluginConfig)):
        raise _fail(cls, "'Config' must subclass truthprune.PluginConfig")
    contracts.check_registration(cls, kind, *contracts._distribution_of(cls))
    return [f"{kind} {cls.name!r}: class attributes and required_stats"]


def check_torch_free_import(module: str) -> list[str]:
    """Importing ``module`` (a registration module) must not import torch or transformers:
    `truthprune --help` and `truthprune plugins` import every registration module."""
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise ContractFailure(f"importing {module!r} failed: {out.stderr.strip().splitlines()[-1:]}")
    heavy = out.stdout.strip()
    if heavy != "[]":
        raise ContractFailure(f"importing the registration module {module!r} imports {heavy}; keep heavy imports "
                              "inside methods so `truthprune --help` stays fast")
    return [f"module {module!r} imports without torch/transformers"]


# ----------------------------------------------------------------------------- pruners


def _aux_streams(pruner: Any, tokenizer: Any) -> dict[str, CalibrationSamples]:
    return pruner.auxiliary_calibration(CalibrationContext(tokenizer=tokenizer, seed=0))


def _check_prune_call(pruner: Any, shape: tuple[int, int], streams: tuple[str, ...], target: Any) -> Any:
    import torch

    g = torch.Generator().manual_seed(shape[0] * 1000 + shape[1])
    weight = torch.randn(shape, generator=g)
    stats = fake_linear_stats(shape[1], seed=shape[1], streams=streams)
    result = pruner.prune(weight.clone(), stats, target)
    contracts.check_prune_result(pruner, f"fake linear {list(shape)}", weight, result)
    again = pruner.prune(weight.clone(), fake_linear_stats(shape[1], seed=shape[1], streams=streams), target)
    if not torch.equal(result.mask, again.mask):
        raise _fail(pruner, f"two prune() calls on the same weight and statistics gave different masks ({list(shape)})")
    return result.mask


def check_pruner(pruner: type | str, options: dict[str, Any] | None = None, allocator: str | None = None) -> list[str]:
    """Pruner contract: masks bool and weight-shaped, deterministic, about the target fraction;
    N:M either honoured exactly or refused with a UserError; a full engine run on the tiny Llama
    (with the pruner's auxiliary streams and its default allocator) reaching the target."""
    import torch

    cls = _resolve("pruner", pruner)
    done = check_class("pruner", cls)
    if kind_of(cls) is UNITS:
        return done + check_structured_pruner(cls, options)
    inst = cls(options or {})
    tok = TinyTokenizer()
    streams = tuple(_aux_streams(inst, tok))
    if not (inst.uses_block or inst.uses_model):  # their scores come from begin_block/prepare: engine only
        for shape in ((16, 64), (24, 32)):
            mask = _check_prune_call(inst, shape, streams, SparsityTarget(0.5))
            frac = float(mask.float().mean())
            if abs(frac - 0.5) > SPARSITY_SLACK:
                raise _fail(inst, f"prune() at sparsity 0.5 removed {frac:.3f} of a {list(shape)} weight")
        done.append(f"pruner {cls.name!r}: prune() masks bool, weight-shaped, deterministic, ~target")
        try:
            mask = _check_prune_call(inst, (8, 32), streams, SparsityTarget(0.5, (2, 4)))
        except UserError:
            done.append(f"pruner {cls.name!r}: N:M refused with a UserError")
        else:
            if not bool((mask.reshape(8, -1, 4).sum(-1) == 2).all()):
                raise _fail(inst, "prune() with target 2:4 did not prune exactly 2 of every 4 weights per row; "
                                  "honour target.nm or raise UserError")
            done.append(f"pruner {cls.name!r}: 2:4 honoured exactly")
    model, calib = tiny_llama(), tiny_calibration()
    calib.auxiliary = _aux_streams(inst, tok)
    alloc = _allocator(allocator or cls.default_allocator)
    report = _prune(model, calib, inst, alloc, 0.5)
    zeros = sum(int((p == 0).sum()) for n, p in model.named_parameters() if "layers" in n and p.dim() == 2)
    if abs(report.overall - 0.5) > SPARSITY_SLACK or zeros == 0:
        raise _fail(inst, f"the engine run at sparsity 0.5 achieved {report.overall:.3f}")
    if not torch.isfinite(model(calib.input_ids[:2]).logits).all():
        raise _fail(inst, "the pruned tiny model produces non-finite logits")
    done.append(f"pruner {cls.name!r}: engine run on the tiny Llama with allocator {alloc.name!r} reaches 0.5")
    return done


def check_structured_pruner(pruner: type | str, options: dict[str, Any] | None = None) -> list[str]:
    """Structured pruner: prune_structured on the tiny Llama removes weights and the sliced model runs."""
    import torch

    cls = _resolve("pruner", pruner)
    inst = cls(options or {})
    model, calib = tiny_llama(), tiny_calibration()
    before = sum(p.numel() for p in model.parameters())
    report = prune_structured(model, calib, inst, 0.3, batch_size=4, quiet=True)
    after = sum(p.numel() for p in model.parameters())
    if not after < before or report.overall <= 0:
        raise _fail(inst, f"prune_structured at sparsity 0.3 removed nothing ({before} -> {after} parameters)")
    if not torch.isfinite(model(calib.input_ids[:2]).logits).all():
        raise _fail(inst, "the structurally pruned tiny model produces non-finite logits")
    return [f"pruner {cls.name!r}: structured pruning of the tiny Llama ({before} -> {after} parameters), model runs"]


def _allocator(name: str) -> SparsityAllocator:
    return get_registry().create("allocator", name)


def _prune(model: Any, calib: Any, pruner: Any, allocator: Any, sparsity: float) -> Any:
    from ..pruning.engine.sequential import prune_model

    n = model.config.num_hidden_layers
    profile = [(i + 1) / (n * (n + 1) / 2) for i in range(n)] if allocator.needs_truth_profile else None
    return prune_model(model, calib, pruner, allocator, sparsity, batch_size=4, truth_profile=profile, quiet=True)


# ----------------------------------------------------------------------------- allocators


def check_allocator(allocator: type | str, options: dict[str, Any] | None = None) -> list[str]:
    """Allocator contract: through the engine (dense pre-pass and truth profile when asked for),
    one sparsity in [0, 1) per layer whose parameter-weighted mean is the target at 0.5,
    deterministic; at 0.3/0.7 either the same or a UserError naming what cannot be met."""
    cls = _resolve("allocator", allocator)
    done = check_class("allocator", cls)
    pruner = _magnitude()
    for target in (0.5, 0.3, 0.7):
        runs = []
        for _ in range(2):
            model = tiny_llama()
            try:
                runs.append(_prune(model, tiny_calibration(), pruner, cls(options or {}), target))
            except UserError:
                if target == 0.5:
                    raise
                break
        if not runs:
            done.append(f"allocator {cls.name!r}: target {target} refused with a UserError")
            continue
        report = runs[0]
        if report.allocation != runs[1].allocation:
            raise _fail(cls, f"two runs at target {target} gave different allocations")
        params = [r.params for r in report.layers]
        mean = sum(s * p for s, p in zip(report.allocation, params)) / sum(params)
        if abs(mean - target) > SPARSITY_SLACK:
            raise _fail(cls, f"at target {target} the parameter-weighted mean of the allocation is {mean:.4f}")
        done.append(f"allocator {cls.name!r}: target {target} -> {[round(s, 3) for s in report.allocation]}")
    return done


def _magnitude() -> Pruner:
    return MagnitudePruner()


# ----------------------------------------------------------------------------- calibration


def check_calibration_source(source: type | str, options: dict[str, Any] | None = None,
                             nsamples: int = 4, seqlen: int = 32) -> list[str]:
    """Calibration contract: ``check()`` passes, ``samples`` gives [nsamples, seqlen] integer ids
    within the vocabulary with a 0/1 attention mask (and an optional bool stat_mask) of the same
    shape, identical for the same seed."""
    import torch

    cls = _resolve("calibration", source)
    done = check_class("calibration", cls)
    tok = TinyTokenizer()

    def draw(seed: int) -> CalibrationSamples:
        inst = cls(options or {})
        inst.check()
        extra = {"model": tiny_llama()} if inst.needs_model else {}
        return inst.samples(tok, nsamples, seqlen, seed, **extra)

    s = draw(0)
    if not isinstance(s, CalibrationSamples):
        raise _fail(cls, f"samples() must return CalibrationSamples, got {type(s).__name__}")
    ids, mask = s.input_ids, s.attention_mask
    if not isinstance(ids, torch.Tensor) or ids.dtype.is_floating_point or tuple(ids.shape) != (nsamples, seqlen):
        raise _fail(cls, f"input_ids must be an integer tensor [{nsamples}, {seqlen}], got "
                         f"{getattr(ids, 'dtype', type(ids).__name__)} {list(getattr(ids, 'shape', []))}")
    if int(ids.min()) < 0 or int(ids.max()) >= VOCAB:
        raise _fail(cls, "input_ids outside the tokenizer's vocabulary")
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(ids.shape) or not bool(((mask == 0) | (mask == 1)).all()):
        raise _fail(cls, "attention_mask must be a 0/1 tensor shaped like input_ids")
    if not bool(mask.bool().any(dim=1).all()):
        raise _fail(cls, "a window has no real token")
    if s.stat_mask is not None and (s.stat_mask.dtype != torch.bool or tuple(s.stat_mask.shape) != tuple(ids.shape)):
        raise _fail(cls, "stat_mask must be None or a bool tensor shaped like input_ids")
    again = draw(0)
    if not (torch.equal(again.input_ids, ids) and torch.equal(again.attention_mask, mask)):
        raise _fail(cls, "the same seed gave different windows")
    return done + [f"calibration {cls.name!r}: {nsamples}x{seqlen} windows, masks, reproducible from the seed"]


# ----------------------------------------------------------------------------- probes


def probe_data(n: int = 160, d: int = 8, seed: int = 0) -> tuple[Any, Any, ProbeMeta]:
    """Separable toy statements: the first half affirmative, the second half their negated twins
    (opposite labels, polarity -1, ``pair`` linking them), a shared truth direction and a polarity offset."""
    import numpy as np

    rng = np.random.default_rng(seed)
    half = n // 2
    y_aff = rng.permutation(np.arange(half) % 2)
    y = np.concatenate([y_aff, 1 - y_aff])
    pol = np.concatenate([np.ones(half), -np.ones(half)])
    truth, offset = np.eye(d)[0], np.eye(d)[1]
    x = rng.normal(size=(n, d)) * 0.5 + np.outer(2 * y - 1, truth) * 2.0 + np.outer(pol, offset) * 1.5
    pair = np.concatenate([np.arange(half) + half, -np.ones(half, dtype=np.int64)]).astype(np.int64)
    group = np.where(pol > 0, 0, 1)
    return x.astype(np.float32), y.astype(np.int64), ProbeMeta(polarity=pol, group=group, pair=pair, seed=seed)


def check_probe(probe: type | str, options: dict[str, Any] | None = None) -> list[str]:
    """Probe contract: fit returns the probe, predict one 0/1 label per row, score in [0, 1],
    direction None or [d]; deterministic for a seed; better than chance (>= 0.8) on separable data."""
    import numpy as np

    cls = _resolve("probe", probe)
    done = check_class("probe", cls)
    x, y, meta = probe_data()

    def fitted():
        return contracts.checked_probe(cls(options or {})).fit(x, y, meta)

    p = fitted()
    pred = p.predict(x, meta)
    acc = p.score(x, y, meta)
    _ = p.direction
    if acc < 0.8:
        raise _fail(cls, f"accuracy {acc:.3f} on linearly separable toy data (expected >= 0.8)")
    if not np.array_equal(pred, fitted().predict(x, meta)):
        raise _fail(cls, "two fits on the same data and seed predict differently")
    return done + [f"probe {cls.name!r}: shapes, determinism, accuracy {acc:.2f} on toy data"]


# ----------------------------------------------------------------------------- quantizers


def check_quantizer(quantizer: type | str, options: dict[str, Any] | None = None) -> list[str]:
    """Quantizer contract, through the engine after a 50 % magnitude prune of the tiny Llama: the
    engine's own check (pruned weights stay exactly zero, codes within the bits) passes, every
    layer reports a finite weight change and the model still runs."""
    import math

    import torch

    from ..pruning.engine.sequential import prune_model

    cls = _resolve("quantizer", quantizer)
    done = check_class("quantizer", cls)
    model, calib = tiny_llama(), tiny_calibration()
    report = prune_model(model, calib, _magnitude(), _allocator("uniform"), 0.5, batch_size=4, quiet=True,
                         quantizer=cls(options or {}))
    changes = (report.quantization or {}).get("layer_weight_change", [])
    if len(changes) != model.config.num_hidden_layers:
        raise _fail(cls, f"{len(changes)} layers quantized of {model.config.num_hidden_layers}")
    if not all(math.isfinite(float(v)) for layer in changes for v in layer.values()):
        raise _fail(cls, "a non-finite relative weight change")
    if abs(report.overall - 0.5) > SPARSITY_SLACK:
        raise _fail(cls, f"quantization changed the pruned fraction to {report.overall:.3f}")
    if not torch.isfinite(model(calib.input_ids[:2]).logits).all():
        raise _fail(cls, "the quantized tiny model produces non-finite logits")
    return done + [f"quantizer {cls.name!r}: engine run after a 50 % prune keeps zeros, finite changes"]


# ----------------------------------------------------------------------------- by name


CHECKS = {"pruner": check_pruner, "allocator": check_allocator, "calibration": check_calibration_source, "probe": check_probe,
          "quantizer": check_quantizer}


def check_plugin(name: str, kind: str | None = None, options: dict[str, Any] | None = None) -> list[str]:
    """Every contract test for the plugin registered as ``name`` (of ``kind``, or of every kind
    that has that name), plus the torch-free import of its registration module."""
    from importlib import metadata

    reg = get_registry()
    kinds = [kind] if kind else [k for k in CHECKS if name in reg.names(k)]
    if not kinds:
        raise ContractFailure(f"no plugin named {name!r} is registered (see `truthprune plugins`)")
    done: list[str] = []
    modules = set()
    for k in kinds:
        entry = reg.entry(k, name)
        done += CHECKS[k](entry.cls, options)
        modules |= {ep.module for ep in metadata.entry_points(group="truthprune") if ep.name == entry.plugin}
    for module in sorted(modules):
        done += check_torch_free_import(module)
    return done
