"""Registration and the TRIM pruner class (no torch at module level: fast CLI start).

Design: TRIM is a pruner with a ``score`` option, not a mask post-processor. TRIM decides how
many weights each row gives up; *which* ones is a per-weight ranking. A score plugs in as one
function of (W, statistics), so TRIM composes with any layer allocator (uniform, OWL, TPLO: the
layer's total stays the allocated one) with no new core concept. A post-processor would need a
second plugin kind and a core pipeline stage, and it would have to re-rank weights anyway to
move sparsity between rows, i.e. it would need the score again.

SparseGPT is not offered as a score: it has no per-weight ranking independent of the mask; its
selection and its weight updates are one sequential OBS process over column blocks, with a
threshold shared by all rows of a block, so it cannot honour per-row counts. Asking for it fails
at plan time with that reason.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from truthprune import STAT_GRAM, STAT_SQ_NORM, PluginConfig, Pruner, PruneResult, hookimpl


class TrimConfig(PluginConfig):
    score: Literal["wanda", "magnitude"] = "wanda"
    """Per-weight ranking inside a row: Wanda's |W|*||X||, or |W|."""
    iterations: int = Field(10, ge=0)
    """Adjustment iterations per linear layer (0: uniform rows, i.e. the plain score mask)."""
    step: float = Field(0.05, gt=0, le=1)
    """Row-sparsity change per iteration per standard deviation of the row-quality metric."""
    max_deviation: float = Field(0.1, ge=0, lt=1)
    """Row sparsities stay within the layer's sparsity +- this."""

    @field_validator("score", mode="before")
    @classmethod
    def _not_sparsegpt(cls, value):
        if value == "sparsegpt":
            raise ValueError(
                "SparseGPT has no per-weight score (its mask comes out of sequential OBS updates with one threshold "
                "per column block), so TRIM cannot give it per-row counts; use score=wanda or --pruner sparsegpt"
            )
        return value


class TrimPruner(Pruner):
    name = "trim"
    description = "TRIM: per-row sparsities (mean = the layer's) adjusted to even out each row's output cosine similarity."
    Config = TrimConfig
    required_stats = frozenset({STAT_SQ_NORM, STAT_GRAM})

    def __init__(self, config=None):
        super().__init__(config)
        self.last = None  # the TrimResult of the most recent linear (diagnostics, tests)

    def scores(self, weight, stats):
        from truthprune import wanda_scores

        if self.config.score == "magnitude":
            return weight.detach().abs().float()
        return wanda_scores(weight, stats.sq_norm)

    def prune(self, weight, stats, target):
        from truthprune import mask_from_scores

        scores = self.scores(weight, stats)
        if target.nm is not None:  # an N:M pattern fixes every row's count: nothing to move
            return PruneResult(mask=mask_from_scores(scores, target))
        from .maths import trim_mask

        cfg = self.config
        self.last = trim_mask(weight, scores, stats.gram, target.sparsity, cfg.iterations, cfg.step, cfg.max_deviation)
        return PruneResult(mask=self.last.mask)


@hookimpl
def register_pruners(register):
    register(TrimPruner)
