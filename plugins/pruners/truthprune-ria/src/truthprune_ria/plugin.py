"""Registration and the RIA pruner class; the maths is in :mod:`truthprune_ria.maths`.

No torch at module level (``truthprune plugins`` imports this). The score needs only Wanda's
per-column square sums, so unstructured RIA runs per linear layer like Wanda (in memory,
``--offload``, torchrun, any allocator).

The channel permutation (N:M only) has to live in the model, not just in the mask: an N:M mask
computed on permuted columns and mapped back to the original order is in general *not* N:M in
that order (a group of the original order can lose all four weights), and a checkpoint stores
the original order. So the permutation is applied where it is exact and free: the MLP's
intermediate channels (rows of gate/up, columns of down, through the element-wise activation).
The pruner is block-aware for that: ``begin_block`` sees the block's target and statistics,
computes down_proj's permutation from its RIA scores and reorders the three linears (and
down_proj's statistics) with ``BlockContext.permute_channels``; every mask is then computed, and
is N:M, in the stored order. q/k/v/o and gate/up read the residual stream (or the attention heads),
whose order every layer shares, so their columns keep the original order.
"""

from __future__ import annotations

from pydantic import Field
from truthprune import STAT_SQ_NORM, PluginConfig, Pruner, PruneResult, hookimpl

_MLP = ("gate_proj", "up_proj", "down_proj")


class RIAConfig(PluginConfig):
    a: float = Field(0.5, ge=0.0)
    """Exponent of the input channel norm ||X_j||_2 (0.5 in the paper; 0: relative importance only)."""
    permute: bool = True
    """N:M: reorder each block's MLP intermediate channels to keep more score (no effect on unstructured masks)."""
    lsa_rounds: int = Field(2, ge=0)
    """Rounds of linear-sum-assignment refinement after the heuristic channel allocation."""


def mlp_names(linears) -> tuple[str, str, str] | None:
    """(gate, up, down) names of a block's dense MLP, all being pruned; None otherwise (MoE, other naming)."""
    found = {}
    for name in linears:
        tail = name.rsplit(".", 1)[-1]
        if tail in _MLP:
            found.setdefault(tail, []).append(name)
    if any(len(found.get(t, [])) != 1 for t in _MLP):
        return None
    return tuple(found[t][0] for t in _MLP)


class RIAPruner(Pruner):
    name = "ria"
    description = "RIA: relative importance (row + column share of |W|) x ||X||^0.5; N:M with MLP channel permutation."
    Config = RIAConfig
    required_stats = frozenset({STAT_SQ_NORM})

    def __init__(self, config=None):
        super().__init__(config)
        # block-aware only for the permutation: begin_block reorders the MLP before its masks are chosen
        self.uses_block = bool(self.config.permute)
        self.permuted: dict[int, dict[str, float]] = {}  # block -> retained score before/after (diagnostics, tests)

    def prune(self, weight, stats, target):
        from truthprune import mask_from_scores

        from .maths import ria_scores

        return PruneResult(mask=mask_from_scores(ria_scores(weight, stats.sq_norm, self.config.a), target))

    def begin_block(self, block):
        import torch

        from .maths import nm_permutation, retained_score, ria_scores

        target = block.target
        names = mlp_names(block.linears)
        if target is None or target.nm is None or names is None:
            return None
        gate, up, down = names
        st = block.stats.get(down)
        if st is None or st.sq_norm is None:
            return None
        n, m = target.nm
        scores = ria_scores(block.linears[down].weight, st.sq_norm, self.config.a)
        if scores.shape[1] % m:
            return None  # the engine refuses this width for N:M with the usual message
        perm = nm_permutation(scores, n, m, self.config.lsa_rounds)
        before, after = retained_score(scores, n, m), retained_score(scores, n, m, perm)
        self.permuted[block.index] = {"before": before, "after": after}
        if not torch.equal(perm, torch.arange(perm.numel())):
            block.permute_channels(perm, inputs_of=[down], outputs_of=[gate, up])
        return None


@hookimpl
def register_pruners(register):
    register(RIAPruner)
