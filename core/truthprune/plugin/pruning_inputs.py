"""What the engine hands a pruner: the statistics it may ask for, the statistics of one linear's
inputs, the target of a layer, and (block-aware pruners, ``Pruner.uses_block``) the decoder block.

Why a protocol for the block: the plugin interfaces name it in ``begin_block``/``end_block``, and
they stand below the engine that implements it (``truthprune.pruning.engine.block.LayerBlock``).
Declaring the contract with the interfaces keeps them free of the engine, and tells a plugin
author everything it may use without reading the engine. Torch-free: tensors are annotations only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch

# Statistic names a pruner or allocator may ask the engine to accumulate per linear layer.
STAT_SQ_NORM = "sq_norm"  # [in] float32: sum over calibration tokens of x_j^2 (Wanda's ||X_j||^2)
STAT_GRAM = "gram"  # [in, in] float32: X^T X over calibration tokens (SparseGPT's Hessian / 2)
STAT_SUM = "sum"  # [in] float32: sum over calibration tokens of x_j (means, e.g. per class of a stream)
# [in, in] float32: X_pruned^T X_dense over calibration tokens, where X_dense are the same tokens' inputs in
# the *unpruned* model (row j: pruned-model input j, column k: dense-model input k). Asking for it makes the
# engine carry dense-model copies of the calibration streams; ``LinearStats.dense`` then holds the dense
# inputs' vector statistics (sq_norm, sum) as well. For reconstructions toward the dense model.
STAT_CROSS = "cross"
KNOWN_STATS = frozenset({STAT_SQ_NORM, STAT_GRAM, STAT_SUM, STAT_CROSS})



@dataclass(frozen=True)
class SparsityTarget:
    """What to prune in one linear layer: a fraction, or an N:M pattern (prune n of every m)."""

    sparsity: float
    nm: tuple[int, int] | None = None

    def __post_init__(self):
        if not 0.0 <= self.sparsity < 1.0:
            raise UserError(f"sparsity {self.sparsity} is outside [0, 1)")
        if self.nm is not None:
            n, m = self.nm
            if not (0 < n < m):
                raise UserError(f"N:M pattern {n}:{m} needs 0 < N < M (e.g. 2:4)")


@dataclass
class LinearStats:
    """Float32 statistics of one linear layer's inputs, summed over all calibration tokens.

    ``streams`` holds the same statistics for each auxiliary calibration stream the pruner asked
    for (:meth:`Pruner.auxiliary_calibration`), keyed by stream name; those inputs are propagated
    through the already-pruned layers exactly like the main calibration data.

    With ``cross`` requested (:data:`STAT_CROSS`), ``cross`` is X_pruned^T X_dense and ``dense``
    holds the statistics of the dense model's inputs to this linear on the same tokens: its
    ``sq_norm``/``sum`` when those are requested too (never ``gram``: nothing needs it yet, and it
    would cost as much as ``cross``); ``n_tokens`` is the same on both sides.
    """

    n_tokens: int
    sq_norm: torch.Tensor | None = None
    gram: torch.Tensor | None = None
    sum: torch.Tensor | None = None
    cross: torch.Tensor | None = None
    dense: LinearStats | None = None
    streams: dict[str, LinearStats] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # what a block-aware pruner's begin_block computed



class BlockContext(Protocol):
    """Decoder layer ``index`` with its calibration inputs and dense outputs.

    ``stats`` (set before ``begin_block``) holds what ``prune`` will get, by linear name;
    ``target`` what the block's linears are pruned to; ``masks`` (set before ``end_block``) the
    applied masks, True = pruned. Tensors handed out are autograd-safe copies: wrap gradient work
    in ``torch.inference_mode(False)`` and ``torch.enable_grad()``.
    """

    index: int
    layer: torch.nn.Module
    linears: dict[str, torch.nn.Linear]
    device: torch.device
    masks: dict[str, torch.Tensor]
    target: SparsityTarget | None
    stats: dict[str, LinearStats]

    @property
    def n_batches(self) -> int:
        """How many calibration mini-batches the block has."""

    def inputs(self, j: int) -> torch.Tensor:
        """Hidden states entering the block for mini-batch ``j`` ([b, S, d])."""

    def token_mask(self, j: int) -> torch.Tensor | None:
        """[b, S] bool of the tokens that count (padding and unscored tokens False), or None = all."""

    def dense_output(self, j: int) -> torch.Tensor:
        """The unpruned block's output on mini-batch ``j`` (no grad)."""

    def parameters(self) -> dict[str, torch.Tensor]:
        """Copies of the block's parameters by name."""

    def forward(self, j: int, params: dict[str, torch.Tensor] | None = None,
                hidden: torch.Tensor | None = None) -> torch.Tensor:
        """Run the block on mini-batch ``j`` (or on ``hidden``), some parameters replaced by ``params``."""

    def permute_channels(self, perm: torch.Tensor, *, inputs_of: list[str], outputs_of: list[str]) -> None:
        """Reorder one set of channels inside the block in place (weights, biases, masks, statistics)."""

    def all_reduce(self, tensor: Any) -> Any:
        """Sum ``tensor`` in place over data-parallel ranks; no-op in one process."""
