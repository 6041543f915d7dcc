"""Registration: allocators ``swl``, ``tplo``, ``tplo-joint`` and the ``tplo`` pruner preset.

The classes are thin: they validate inputs against the model (one value per decoder layer) and
call the pure functions in :mod:`truthprune_tplo.maths`. No torch at module level.
"""

from __future__ import annotations

import logging

from pydantic import Field, field_validator
from truthprune import LayerInfo, PluginConfig, SparsityAllocator, UserError, WandaPruner, hookimpl
from truthprune_owl import OutlierRatioAllocator, check_truth_profile, finish, weights_of

from .maths import choose_pivot, swl_sparsities, tplo_joint_sparsities, tplo_sparsities

log = logging.getLogger(__name__)


class SwlConfig(PluginConfig):
    c: float = Field(0.04, ge=0)
    """Scaling of the truth profile: s_l = s - c (L pi_l - 1). The reference fixes 0.04."""


class SwlAllocator(SparsityAllocator):
    name = "swl"
    description = "SWL: layers with a larger share of the truth-separation profile get lower sparsity (s - c(L*pi - 1))."
    Config = SwlConfig
    needs_truth_profile = True
    file_options = {"swl_scaling": "c"}
    option_flags = {"swl-scale": ("c", "SWL/TPLO scaling c (allocator option c).")}

    def allocate(self, target: float, info: LayerInfo) -> list[float]:
        owner = f"allocator {self.name!r}"
        profile = check_truth_profile(owner, info)
        weights = weights_of(owner, info)
        return finish(owner, swl_sparsities(profile, target, self.config.c, weights=weights), target, weights)


class TploConfig(PluginConfig):
    m: float = Field(5.0, gt=0)
    """OWL outlier threshold multiplier (scores > m x layer mean)."""
    lam: float = Field(0.08, ge=0)
    """OWL spread: the outlier part spans 2*lam."""
    c: float = Field(0.04, ge=0)
    """SWL scaling of the truth profile for layers >= pivot."""
    pivot: int | None = Field(None, ge=0)
    """First layer allocated by the truth profile; None (or "auto") = automatic (choose_pivot)."""

    @field_validator("pivot", mode="before")
    @classmethod
    def _auto(cls, v):
        return None if isinstance(v, str) and v.strip().lower() == "auto" else v


class TploAllocator(OutlierRatioAllocator):
    name = "tplo"
    description = "TPLO: OWL outlier allocation before a pivot layer, truth-profile (SWL) allocation from it on."
    Config = TploConfig
    needs_truth_profile = True
    file_options = {**OutlierRatioAllocator.file_options, "swl_scaling": "c", "tplo_pivot": "pivot"}
    option_flags = {
        **OutlierRatioAllocator.option_flags,
        **SwlAllocator.option_flags,
        "tplo-pivot": ("pivot", "TPLO pivot layer, or 'auto' (default: chosen from the truth profile)."),
    }

    pivot_used: int | None = None

    def allocate(self, target: float, info: LayerInfo) -> list[float]:
        profile = check_truth_profile(self.owner, info)
        ratios = self.outlier_ratios(info)
        weights = weights_of(self.owner, info)
        pivot = self.config.pivot
        if pivot is None:
            pivot = choose_pivot(profile)
            log.info("%s: automatic pivot %d of %d layers", self.owner, pivot, info.num_layers)
        elif pivot > info.num_layers:
            raise UserError(f"{self.owner}: pivot {pivot} is beyond the model's {info.num_layers} layers; use 0..{info.num_layers}")
        self.pivot_used = pivot
        c = self.config
        sparsities = tplo_sparsities(ratios, profile, target, c.lam, c.c, pivot, weights=weights)
        return finish(self.owner, sparsities, target, weights)


class TploJointConfig(PluginConfig):
    m: float = Field(5.0, gt=0)
    """OWL outlier threshold multiplier (scores > m x layer mean)."""
    lam: float = Field(0.08, ge=0)
    """Layer sparsities span exactly 2*lam, as in OWL."""
    outlier_weight: float = Field(0.5, ge=0, le=1)
    """Mixing weight of the outlier signal; 1 - outlier_weight goes to the truth profile."""


class TploJointAllocator(OutlierRatioAllocator):
    name = "tplo-joint"
    description = "Joint TPLO: per-layer mix of normalised outlier ratio and truth profile, spread 2*lam."
    Config = TploJointConfig
    needs_truth_profile = True

    def allocate(self, target: float, info: LayerInfo) -> list[float]:
        profile = check_truth_profile(self.owner, info)
        ratios = self.outlier_ratios(info)
        weights = weights_of(self.owner, info)
        c = self.config
        sparsities = tplo_joint_sparsities(ratios, profile, target, c.lam, c.outlier_weight, weights=weights)
        return finish(self.owner, sparsities, target, weights)


class TploPruner(WandaPruner):
    name = "tplo"
    description = "Preset: Wanda scores with TPLO layer sparsities (default allocator 'tplo')."
    default_allocator = "tplo"


@hookimpl
def register_allocators(register):
    for cls in (SwlAllocator, TploAllocator, TploJointAllocator):
        register(cls)


@hookimpl
def register_pruners(register):
    register(TploPruner)
