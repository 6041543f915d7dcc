"""Registration and the thin ``sparc3`` pruner class (no torch at module level: the CLI imports
this module to list plugins).

SparC3 scores every weight by its LRP relevance for the model's output on reference samples and
removes the least relevant ones. Relevance needs a backward pass from the output through every
layer, so the pruner is a whole-model pruner (``uses_model``): the engine hands it the dense
model once (``prepare``) and then asks it for each linear's mask as usual. The default build
sets are truthprune's leak-free ones (``truthprune.DEFAULT_BUILD_SETS``), never a topic the
retention benchmark scores (tests/test_leak_free.py checks every pruner with ``build_sets``).
"""

from __future__ import annotations

import logging
import time
from typing import Literal

from pydantic import Field
from truthprune import DEFAULT_BUILD_SETS, PluginConfig, Pruner, PruneResult, UserError, hookimpl

log = logging.getLogger("truthprune.sparc3")
SCORE_KEY = "sparc3_score"


class Sparc3Config(PluginConfig):
    target: Literal["text", "truth"] = "text"
    """text: relevance for the next-token logits of the calibration windows; truth: mixed with the
    relevance for a dense truth probe's margin on the build statements (truth_weight)."""
    truth_weight: float = Field(0.5, ge=0, le=1)
    """target=truth: share of the (mean-normalised) truth relevance in each linear's score."""
    probe_layer: int | None = None
    """Decoder layer the truth probe reads (negative: from the end); None: the layer of largest
    true/false separation on the build statements."""
    build_sets: list[str] = Field(default_factory=lambda: list(DEFAULT_BUILD_SETS))
    """Statement sets (names in --truth-data, or generated) the truth target is built from."""
    per_set: int = Field(200, ge=4)
    """At most this many statements per build set (class-balanced, seeded)."""
    max_windows: int | None = Field(None, ge=1)
    """Use only the first N calibration windows for the text relevance (None: all)."""


class Sparc3Pruner(Pruner):
    name = "sparc3"
    description = "SparC3: LRP relevance of each weight for the model's output (target=truth: also for a truth probe's margin)."
    Config = Sparc3Config
    uses_model = True

    def check(self, context):
        """Before the model loads: the build sets exist (target=truth only)."""
        if self.config.target == "truth":
            from .statements import check_build_sets

            check_build_sets(context.truth_data, self.config.build_sets, context.seed)

    def auxiliary_calibration(self, context):
        if self.config.target != "truth":
            return {}
        from .statements import statement_streams

        cfg = self.config
        return statement_streams(context.tokenizer, context.truth_data, cfg.build_sets, cfg.per_set, context.seed,
                                 context.chat_template)

    def prepare(self, model, calibration, context):
        from .prepare import relevance_scores

        t0 = time.perf_counter()
        scores, info = relevance_scores(model, calibration, context, self.config)
        log.info("sparc3: relevance of %d linears in %.1f s (%s)", sum(len(v) for v in scores.values()),
                 time.perf_counter() - t0, ", ".join(f"{k}={v}" for k, v in info.items()))
        self.info = info
        return {i: {name: {SCORE_KEY: s} for name, s in mods.items()} for i, mods in scores.items()}

    def prune(self, weight, stats, target):
        from truthprune import mask_from_scores

        score = stats.extra.get(SCORE_KEY)
        if score is None:
            raise UserError("sparc3 scores weights in a pass over the whole model: run it through the engine "
                            "(truthprune run/prune or truthprune.prune_model), not prune() alone")
        return PruneResult(mask=mask_from_scores(score.to(weight.device), target))


@hookimpl
def register_pruners(register):
    register(Sparc3Pruner)
