"""The OptiShear search space: a meta pruning metric and a layer-wise sparsity profile (numpy only).

**Meta metric.** For weight W [out, in] of a linear layer and its calibration inputs X,

    S_ij = |W_ij|^a * ||X_j||_2^b * C_j^(-c),        C_j = sum_i |W_ij|  (column l1 norm of W)

and the lowest scores of each output row are pruned (the comparison group of every truthprune
pruner). Within one row a positive power of S ranks the weights the same way, so only the ratios
b/a and c/a matter: the search fixes a = 1 and explores

* ``beta`` = b/a in [0, 2]: 0 is magnitude pruning, 1 is Wanda, 0.5 is RIA's activation exponent;
* ``gamma`` = c/a in [0, 1]: how much a weight is judged relative to the other weights reading the
  same input (RIA's column term); 0 ignores it.

**Layer profile.** ``knots`` offsets d_k in [-span, span], placed evenly over depth (first knot
at layer 0, last at layer L-1) and linearly interpolated to every layer; the offsets are then
re-centred so that the parameter-weighted mean sparsity is exactly the target:
s_l = target + o_l - sum_l w_l o_l. ``knots = 0`` searches the metric only (uniform sparsity,
the only choice under N:M).

A candidate is the vector x = [beta, gamma, d_1, ..., d_K].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

WANDA = (1.0, 0.0)  # (beta, gamma) of Wanda's |W| * ||X||


@dataclass(frozen=True)
class SearchSpace:
    knots: int = 4
    span: float = 0.1
    beta_max: float = 2.0
    gamma_max: float = 1.0

    @property
    def n_var(self) -> int:
        return 2 + self.knots

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lower = np.array([0.0, 0.0] + [-self.span] * self.knots)
        upper = np.array([self.beta_max, self.gamma_max] + [self.span] * self.knots)
        return lower, upper

    def as_dict(self) -> dict:
        return asdict(self)


def knot_offsets(knots: Sequence[float], n_layers: int) -> np.ndarray:
    """Per-layer offsets, linear between knots spread evenly from layer 0 to layer L-1."""
    k = np.asarray(knots, dtype=np.float64)
    if k.size == 0:
        return np.zeros(n_layers)
    if k.size == 1:
        return np.full(n_layers, float(k[0]))
    return np.interp(np.arange(n_layers), np.linspace(0, n_layers - 1, k.size), k)


def layer_sparsities(knots: Sequence[float], target: float, params: Sequence[float]) -> list[float]:
    """Target plus the knot profile, re-centred so sum_l w_l s_l = target (w: parameter shares)."""
    w = np.asarray(params, dtype=np.float64)
    w = w / w.sum()
    o = knot_offsets(knots, w.size)
    return [float(v) for v in target + o - float(np.dot(w, o))]


def decode(x: Sequence[float], space: SearchSpace) -> tuple[float, float, list[float]]:
    """(beta, gamma, knot offsets) of a candidate vector."""
    if len(x) != space.n_var:
        raise ValueError(f"a candidate has {space.n_var} values for this space, got {len(x)}")
    return float(x[0]), float(x[1]), [float(v) for v in x[2:]]


def check_span(target: float, span: float, knots: int) -> None:
    """Every profile of the space must stay inside [0, 1): refuse spans that could leave it."""
    from truthprune import UserError

    if knots and (target - 2 * span < 0 or target + 2 * span >= 1):
        raise UserError(f"--span {span} lets a layer's sparsity leave [0, 1) around target {target} (re-centring can "
                        f"move a layer by up to 2 x span); use --span {max(min(target, 1 - target) / 2 - 0.005, 0):.3f} or less")
