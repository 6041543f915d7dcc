"""Truth-profile allocators for truthprune: SWL, TPLO (published splice, automatic pivot) and
tplo-joint, plus the ``tplo`` pruner preset."""

from .maths import PIVOT_ONSET_FRACTION, choose_pivot, swl_sparsities, tplo_joint_sparsities, tplo_sparsities
from .plugin import (
    SwlAllocator,
    SwlConfig,
    TploAllocator,
    TploConfig,
    TploJointAllocator,
    TploJointConfig,
    TploPruner,
)

__all__ = [
    "PIVOT_ONSET_FRACTION",
    "SwlAllocator",
    "SwlConfig",
    "TploAllocator",
    "TploConfig",
    "TploJointAllocator",
    "TploJointConfig",
    "TploPruner",
    "choose_pivot",
    "swl_sparsities",
    "tplo_joint_sparsities",
    "tplo_sparsities",
]
