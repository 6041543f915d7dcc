"""Registration: the ``owl`` allocator and the ``owl`` pruner preset (Wanda scores + OWL).

No torch at module level: the CLI imports this to list plugins.
"""

from __future__ import annotations

from pydantic import Field
from truthprune import LayerInfo, PluginConfig, WandaPruner, hookimpl

from .base import OutlierRatioAllocator, finish, weights_of
from .maths import owl_sparsities


class OwlConfig(PluginConfig):
    m: float = Field(5.0, gt=0)
    """Outlier threshold: a score is an outlier if it exceeds m times the layer's mean score."""
    lam: float = Field(0.08, ge=0)
    """Half the allowed spread: layer sparsities span exactly 2*lam (max - min)."""


class OwlAllocator(OutlierRatioAllocator):
    name = "owl"
    description = "OWL: layers with more activation outliers (Wanda scores > m x mean) get lower sparsity, spread 2*lam."
    Config = OwlConfig

    def allocate(self, target: float, info: LayerInfo) -> list[float]:
        ratios = self.outlier_ratios(info)
        weights = weights_of(self.owner, info)
        return finish(self.owner, owl_sparsities(ratios, target, self.config.lam, weights=weights), target, weights)


class OwlPruner(WandaPruner):
    name = "owl"
    description = "Preset: Wanda scores with OWL's outlier-weighted layer sparsities (default allocator 'owl')."
    default_allocator = "owl"


@hookimpl
def register_allocators(register):
    register(OwlAllocator)


@hookimpl
def register_pruners(register):
    register(OwlPruner)
