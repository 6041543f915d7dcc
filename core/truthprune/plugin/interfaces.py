"""The plugin interfaces: Pruner, Quantizer, SparsityAllocator, CalibrationSource, Probe.

Why this file has no torch import at module level: `truthprune --help` and `truthprune plugins`
load every plugin's registration module, and those must stay fast. Tensors appear only in type
hints (under TYPE_CHECKING) and inside methods.

Every plugin class carries three class attributes: ``name`` (what users type), ``description``
(one line, shown by ``truthprune plugins``) and ``Config`` (a pydantic model of its options,
validated at construction; unknown options are rejected with the field name).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import UserError
from .pruning_inputs import BlockContext, LinearStats, SparsityTarget

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch


class PluginConfig(BaseModel):
    """Base for plugin option models: strict, immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def format_validation_error(owner: str, err: ValidationError) -> str:
    """One line naming every offending field, e.g. "pruner 'wanda': option 'alpha': ..."."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(config)"
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown option {loc!r}")
        else:
            parts.append(f"option {loc!r}: {e['msg']}")
    return f"{owner}: " + "; ".join(parts)


class Plugin:
    """Shared lifecycle of every plugin class: hold a validated config."""

    kind: ClassVar[str] = "plugin"
    name: ClassVar[str]
    description: ClassVar[str] = ""
    Config: ClassVar[type[PluginConfig]] = PluginConfig

    def __init__(self, config: PluginConfig | Mapping[str, Any] | None = None):
        self.config = self.make_config(config)

    @classmethod
    def make_config(cls, options: PluginConfig | Mapping[str, Any] | None) -> PluginConfig:
        """Validate options into ``cls.Config``; raise UserError naming the bad field."""
        if isinstance(options, cls.Config):
            return options
        try:
            return cls.Config(**dict(options or {}))
        except ValidationError as err:
            raise UserError(format_validation_error(f"{cls.kind} {cls.name!r}", err)) from None


# --------------------------------------------------------------------------- pruning


@dataclass
class PruneResult:
    """A pruner's answer for one linear layer.

    ``mask`` is a bool tensor shaped like the weight, True where the weight is removed.
    ``weight`` optionally carries updated surviving weights (SparseGPT); None keeps them.
    """

    mask: torch.Tensor
    weight: torch.Tensor | None = None


class Pruner(Plugin, ABC):
    """Chooses which weights of one linear layer to remove.

    The engine calls :meth:`prune` once per linear layer of the current decoder layer, after it
    has accumulated the statistics named in ``required_stats`` from the layer's real inputs.
    ``default_allocator`` lets a preset (e.g. ``owl`` = Wanda scores + OWL allocation) pick its
    allocator unless the user names one.
    """

    kind: ClassVar[str] = "pruner"
    # What the engine must collect (KNOWN_STATS names). A pruner whose needs depend on its options
    # (e.g. ``cross`` only for ``target=dense``) assigns ``self.required_stats`` in ``__init__``: the
    # engine reads the instance's value (and checks it like registration checks the class's).
    required_stats: ClassVar[frozenset[str]] = frozenset()
    default_allocator: ClassVar[str] = "uniform"
    # True: the engine also calls begin_block/end_block once per decoder layer (Wanda++-style
    # methods that need the whole block, its calibration inputs and its dense outputs)
    uses_block: ClassVar[bool] = False
    # True: before the layer loop the engine calls prepare() once with the whole dense model in
    # memory (scores that need a backward pass through every layer, e.g. LRP relevance);
    # --offload, which never holds the model, refuses such pruners at plan time
    uses_model: ClassVar[bool] = False
    # True: every statistic comes from the *dense* model in one calibration pass (scores defined on
    # the unpruned model, e.g. UniPruning), not from the already pruned layers; the statistics then
    # do not depend on the sparsity, so a sweep over sparsities calibrates once
    # (truthprune.pruning.engine.dense_stats). Cannot be combined with uses_block.
    dense_statistics: ClassVar[bool] = False

    @abstractmethod
    def prune(self, weight: torch.Tensor, stats: LinearStats, target: SparsityTarget) -> PruneResult:
        """Return the mask (True = prune) for ``weight`` [out, in]."""

    def begin_block(self, block: BlockContext) -> dict[str, dict[str, Any]] | None:
        """(``uses_block`` only) Before this decoder layer's linears are pruned: may return
        ``{linear name: {key: value}}``, which arrives in that linear's ``LinearStats.extra``."""
        return None

    def end_block(self, block: BlockContext) -> dict[str, torch.Tensor] | None:
        """(``uses_block`` only) After the masks are applied (``block.masks``), before the
        pruned layer is propagated: may return new weights by linear name; the masks are re-applied."""
        return None

    def prepare(self, model: Any, calibration: CalibrationSamples, context: Mapping[str, Any]) -> dict[int, dict[str, dict[str, Any]]] | None:
        """(``uses_model`` only) Once, before any layer is pruned, with the dense model and the
        calibration data (its ``auxiliary`` streams included). ``context``: ``device``,
        ``batch_size``, ``quiet`` and ``linears`` ({layer index: {name: module}}, the linears
        the engine will prune). May return ``{layer index: {linear name: {key: value}}}``, which
        arrives in that linear's ``LinearStats.extra``."""
        return None

    def check(self, context: CalibrationContext) -> None:
        """Cheap validation before any model is loaded (``context.tokenizer`` is None then), e.g.
        that the data an auxiliary stream needs exists. Raise UserError with the fix."""

    def auxiliary_calibration(self, context: CalibrationContext) -> dict[str, CalibrationSamples]:
        """Extra named token streams whose statistics the pruner wants next to the main ones.

        Why: an objective may weigh some inputs specially (e.g. true/false statements for a
        truth-aware reconstruction). Each stream is captured and propagated through the layers
        as they are pruned, exactly like the main calibration data, and its statistics (the same
        ``required_stats``) arrive in ``LinearStats.streams[name]``. Default: none.
        """
        return {}


# --------------------------------------------------------------------------- quantization


@dataclass
class QuantResult:
    """A quantizer's answer for one linear layer: integer codes on a per-group affine grid.

    The weight is ``(codes[r, c] - zeros[r, g_idx[c]]) * scales[r, g_idx[c]]``
    (:func:`truthprune.dequantize`); the engine writes exactly that into the model, so the saved
    checkpoint and the codes/scales/zero-points sidecar always agree.

    ``codes`` uint8 [out, in], in ``[0, 2**bits - 1]``; ``scales`` float32 [out, groups];
    ``zeros`` uint8 [out, groups] (integer zero-points, so 0.0 is always exactly representable);
    ``g_idx`` int32 [in], the group of each input column (``c // group_size`` in column order,
    a permuted order under GPTQ's act-order; all 0 for one scale per output channel).
    """

    codes: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor
    g_idx: torch.Tensor
    bits: int


class Quantizer(Plugin, ABC):
    """Rounds the weights of one linear layer to ``bits``-bit integers (after pruning).

    The engine calls :meth:`quantize` once per linear layer, right after the pruner, in the same
    layer-by-layer pass, with the statistics named in ``required_stats`` (collected from the same
    unpruned-layer inputs the pruner saw) and ``mask``, True where the weight is exactly zero
    after pruning. Contract: every masked weight must get the code equal to its group's
    zero-point, i.e. dequantize to exactly 0, so quantization never revives a pruned weight; the
    engine checks this and fails naming the quantizer otherwise.
    """

    kind: ClassVar[str] = "quantizer"
    required_stats: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def quantize(self, weight: torch.Tensor, stats: LinearStats, mask: torch.Tensor) -> QuantResult:
        """Quantize ``weight`` [out, in]; ``mask`` (bool, same shape) marks weights that stay 0."""

    def describe(self) -> dict[str, Any]:
        """What a report row says about this quantizer: its method name and every option."""
        return {"method": self.name, **self.config.model_dump()}

    def contiguous_groups(self) -> bool:
        """Whether, with these options, every ``g_idx`` is contiguous runs of columns (``c // group_size``).

        Formats without a group index (compressed-tensors) cannot store permuted groups, so
        ``--format compressed-tensors`` asks this at plan time; the export checks the real g_idx again."""
        return True


# --------------------------------------------------------------------------- structured pruning


class StructuredConfig(PluginConfig):
    """Options every structured pruner shares: how wide the pruned model is, and which units go.

    ``mlp_ratio`` (kept intermediate size / hidden size) fixes the MLP width directly; without it
    the run's ``--sparsity`` is the fraction of all MLP + attention weights removed. ``heads``
    also removes attention heads, as whole KV groups (a key/value head with all query heads that
    share it); ``kv_groups`` fixes how many groups each layer keeps. ``skip_first``/``skip_last``
    leave those decoder layers whole (in memory only: the standard config has one width).
    """

    mlp_ratio: float | None = Field(None, gt=0.0)
    heads: bool = False
    kv_groups: int | None = Field(None, ge=1)
    skip_first: int = Field(0, ge=0)
    skip_last: int = Field(0, ge=0)


@dataclass
class UnitScores:
    """Importance of the removable units of one decoder layer (higher = more worth keeping).

    ``mlp``: [intermediate_size], one score per MLP channel (its gate/up rows and down column).
    ``heads``: [num_key_value_heads], one score per KV group, or None when heads are not pruned.
    """

    mlp: torch.Tensor
    heads: torch.Tensor | None = None


class StructuredPruner(Plugin, ABC):
    """Removes whole units (MLP channels, KV head groups) so the saved model is really smaller.

    Registered with ``register_pruners`` like any pruner (same ``--pruner`` namespace), but the
    sequential mask engine never calls it: :func:`truthprune.prune_structured` asks it for
    :meth:`importance` of every unit of the layers to prune, keeps the top units per layer at one
    uniform width, slices the weights and rewrites the model config. Allocators do not apply
    (one width for all layers is what a standard config can describe); passing one is a plan-time
    error.
    """

    kind: ClassVar[str] = "pruner"
    structured: ClassVar[bool] = True
    required_stats: ClassVar[frozenset[str]] = frozenset()
    default_allocator: ClassVar[str] = "uniform"
    Config: ClassVar[type[PluginConfig]] = StructuredConfig

    def check(self, context: CalibrationContext) -> None:
        """Cheap plan-time validation, as :meth:`Pruner.check`; the default checks nothing."""

    def auxiliary_calibration(self, context: CalibrationContext) -> dict[str, CalibrationSamples]:
        """No auxiliary streams (the pipeline asks every pruner, see :meth:`Pruner.auxiliary_calibration`)."""
        return {}

    @abstractmethod
    def importance(self, model: Any, calib: CalibrationSamples, layers: list[Any], context: Mapping[str, Any]) -> dict[int, UnitScores]:
        """Scores for the units of each of ``layers`` (:class:`truthprune.StructuredLayer`), by layer index.

        ``context`` carries ``device``, ``batch_size``, ``quiet`` and ``heads`` (whether head
        groups are pruned; when False ``UnitScores.heads`` may be None).
        """


# --------------------------------------------------------------------------- allocation


@dataclass
class LayerInfo:
    """What an allocator knows about the model when it allocates.

    ``params_per_layer`` counts the prunable weights of each decoder layer (for the weighted
    mean); ``truth_profile`` is the normalised truth-separation profile (sums to 1) when the
    allocator asked for it; ``extras`` carries anything else a pipeline wants to pass along.
    """

    num_layers: int
    params_per_layer: list[int]
    truth_profile: list[float] | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class SparsityAllocator(Plugin, ABC):
    """Chooses one sparsity per decoder layer whose parameter-weighted mean is the target.

    An allocator that needs activations sets ``needs_dense_pass``: the engine then runs the dense
    model over the calibration data first and calls :meth:`observe_layer` for every decoder layer
    with its weights and the statistics in ``required_stats``. ``needs_truth_profile`` asks the
    pipeline for the truth-separation profile of the dense model.
    """

    kind: ClassVar[str] = "allocator"
    needs_dense_pass: ClassVar[bool] = False
    needs_truth_profile: ClassVar[bool] = False
    required_stats: ClassVar[frozenset[str]] = frozenset()
    # What commands need from an allocator, declared here so that core names no allocator:
    # ``layer_signals``: per-layer values (``LayerInfo.extras`` keys, also returned by
    # :meth:`diagnostics`) that can replace the dense pre-pass; `truthprune allocate` reads them
    # from a stats file and the run report recomputes alternative allocations from them.
    layer_signals: ClassVar[tuple[str, ...]] = ()
    # ``file_options``: stats-file number keys (e.g. the reference vectors' names) -> Config field.
    file_options: ClassVar[Mapping[str, str]] = {}
    # ``option_flags``: command-line shortcuts of run/prune/sweep/allocate, flag without "--" ->
    # (Config field, help); e.g. {"owl-m": ("m", "OWL outlier threshold M")}. A value is parsed
    # like --allocator-opt (JSON when possible, else the string).
    option_flags: ClassVar[Mapping[str, tuple[str, str]]] = {}

    def observe_layer(
        self, index: int, weights: Mapping[str, torch.Tensor], stats: Mapping[str, LinearStats]
    ) -> None:
        """Dense pre-pass callback for decoder layer ``index`` (only if ``needs_dense_pass``)."""

    def check(self) -> None:
        """Cheap validation before a run loads its model (not called by `truthprune allocate`,
        which passes the stats file's signals instead), e.g. that a required input was given.
        Raise UserError with the fix; the default checks nothing."""

    @abstractmethod
    def allocate(self, target: float, info: LayerInfo) -> list[float]:
        """Per-layer sparsities, len == info.num_layers."""

    def diagnostics(self) -> dict[str, list[float]]:
        """Per-layer quantities worth reporting (e.g. outlier ratios)."""
        return {}


# --------------------------------------------------------------------------- calibration


@dataclass
class CalibrationSamples:
    """Token windows for calibration: ``input_ids`` and ``attention_mask``, both [n, seqlen].

    ``stat_mask`` ([n, seqlen] bool, optional) restricts which real tokens enter the statistics
    (e.g. only the last token of each statement, where probes read); None = every real token.
    ``auxiliary`` carries the pruner's auxiliary streams (see :meth:`Pruner.auxiliary_calibration`).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    description: str = ""
    stat_mask: torch.Tensor | None = None
    auxiliary: dict[str, CalibrationSamples] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass
class CalibrationContext:
    """What a pruner may use to build auxiliary calibration streams: the model's tokenizer, the
    run's seed, its ``--truth-data`` directory (None: the offline generated statement sets) and
    whether statements are wrapped in the chat template."""

    tokenizer: Any
    seed: int = 0
    truth_data: str | None = None
    chat_template: bool = False


class CalibrationSource(Plugin, ABC):
    """Yields calibration token windows, reproducibly from a seed.

    The same (tokenizer, nsamples, seqlen, seed) must give the same tensors. A source that
    cannot supply enough text raises UserError saying how many tokens it has.
    """

    kind: ClassVar[str] = "calibration"
    # A source that needs the model itself (e.g. text sampled from the dense model) sets this;
    # the pipeline then passes the loaded HF model to samples() as the keyword ``model`` (and
    # never sets anything on the plugin: the same instance can serve two models).
    needs_model: ClassVar[bool] = False

    def check(self) -> None:
        """Cheap validation of the options (files exist, are readable, hold text), run before any
        model is loaded so a bad path fails in a second instead of after the dense evaluation.
        Raise UserError with the fix; the default checks nothing."""

    @abstractmethod
    def samples(self, tokenizer: Any, nsamples: int, seqlen: int, seed: int) -> CalibrationSamples:
        """Return ``nsamples`` windows of ``seqlen`` tokens. A source with ``needs_model`` declares
        one more keyword argument, ``model`` (the loaded model, in eval mode)."""


# --------------------------------------------------------------------------- probes


@dataclass
class ProbeMeta:
    """Side information some probes need.

    ``polarity``: +1 for affirmative, -1 for negated statements (TTPD, CCS).
    ``group``: an integer id of the dataset each row came from (per-dataset centring).
    ``pair``: for CCS, the row index of each statement's negated twin (or -1).
    """

    polarity: np.ndarray | None = None
    group: np.ndarray | None = None
    pair: np.ndarray | None = None
    seed: int = 0


class Probe(Plugin, ABC):
    """A linear truth probe on activation matrices [n, d] with labels in {0, 1}."""

    kind: ClassVar[str] = "probe"
    needs_polarity: ClassVar[bool] = False

    @abstractmethod
    def fit(self, acts: np.ndarray, labels: np.ndarray, meta: ProbeMeta | None = None) -> Probe:
        """Train on activations; return self."""

    @abstractmethod
    def predict(self, acts: np.ndarray, meta: ProbeMeta | None = None) -> np.ndarray:
        """Hard labels in {0, 1}."""

    def score(self, acts: np.ndarray, labels: np.ndarray, meta: ProbeMeta | None = None) -> float:
        """Accuracy of :meth:`predict` against ``labels``."""
        import numpy as np

        return float(np.mean(self.predict(acts, meta) == np.asarray(labels)))

    @property
    def direction(self) -> np.ndarray | None:
        """The learned truth direction in activation space, if the probe has one."""
        return None
