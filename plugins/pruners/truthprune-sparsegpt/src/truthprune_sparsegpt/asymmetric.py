"""Asymmetric OBS: reconstruct toward the dense model's outputs, as small pure functions (torch).

SparseGPT fits the pruned weight W' to the layer's own outputs on the inputs X_p that the
already-pruned model produces: min ||W X_p - W' X_p||^2. With the dense model's inputs X_d on the
same tokens (the engine's dense-target streams), the layer can instead be fitted to what the
*dense* model computes there:

    min_{W'}  ||W X_d - W' X_p||^2 + lambda ||W' - W||^2        (per output row; X as [in, tokens])

(the ridge term is SparseGPT's dampening, lambda = percdamp x mean diag H). With H = 2 X_p X_p^T / n
and C = 2 X_p X_d^T / n (the engine's ``cross`` statistic, scaled like the Gram), setting the
gradient to zero gives the unconstrained optimum

    W* = W (C^T + lambda I) (H + lambda I)^-1

and, because the objective is a quadratic in W' with Hessian (H + lambda I), it equals

    (W' - W*) (H + lambda I) (W' - W*)^T + const

exactly. Pruning under the asymmetric objective is therefore SparseGPT's OBS sweep (same masks
rule, same column updates, same lazy batches) started from W* instead of W: one d x d solve and
one matrix product per linear on top of plain SparseGPT, and every speed-up of the sweep applies
unchanged. When X_d = X_p, C = H and W* = W: the symmetric problem. docs/methods.md has the
derivation step by step and its relation to GPTAQ's column-wise form.
"""

from __future__ import annotations

import torch

from truthprune import UserError


def cross_from_stat(cross: torch.Tensor, n_tokens: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """C = 2 X_p^T X_d / n from the engine's ``cross`` statistic (row j: pruned input j), scaled like H."""
    if n_tokens <= 0:
        raise UserError("target=dense needs calibration tokens (the cross statistic is empty); pass --nsamples > 0")
    return cross.detach().to(dtype) * (2.0 / n_tokens)


def dense_target_weight(weight: torch.Tensor, hessian: torch.Tensor, cross: torch.Tensor, percdamp: float,
                        compute_dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """W* = W (C^T + lambda I)(H + lambda I)^-1 in ``compute_dtype``: the start of the OBS sweep.

    ``hessian`` H and ``cross`` C as in the module doc, with the same scale. lambda and the
    treatment of dead inputs (H_jj = 0: H_jj set to 1) are exactly those of
    :func:`truthprune_sparsegpt.obs.obs_prune`, so that the sweep's quadratic is the one whose
    minimum W* is. A dead input's column of W* is irrelevant (the sweep zeroes it).
    """
    from .obs import fix_dead_inputs

    if tuple(cross.shape) != tuple(hessian.shape):
        raise UserError(f"target=dense: cross statistic shape {tuple(cross.shape)} does not match the Hessian's {tuple(hessian.shape)}")
    w = weight.detach().to(compute_dtype)
    h = hessian.detach().to(device=w.device, dtype=compute_dtype).clone()
    c = cross.detach().to(device=w.device, dtype=compute_dtype)
    fix_dead_inputs(w.clone(), h)  # only H's diagonal matters here; the dense target keeps every column of W
    damp = percdamp * torch.diagonal(h).mean()
    h.diagonal().add_(damp)
    rhs = w @ c.t() + damp * w  # W (C^T + lambda I)
    chol, info = torch.linalg.cholesky_ex(h)
    if int(info) != 0:
        raise UserError(f"target=dense: the damped Hessian is not positive definite (percdamp={percdamp}); raise it, "
                        "e.g. --pruner-opt percdamp=0.1")
    return torch.cholesky_solve(rhs.t(), chol).t()  # (H + lambda I) is symmetric: solve for W*^T


def dense_target_objective(weight: torch.Tensor, new_weight: torch.Tensor, x_pruned: torch.Tensor,
                           x_dense: torch.Tensor) -> float:
    """||X_d W^T - X_p W'^T||^2 / n (rows of X are tokens): the error the asymmetric OBS reduces."""
    w, nw = weight.double(), new_weight.double()
    return float((x_dense.double() @ w.t() - x_pruned.double() @ nw.t()).square().sum() / x_pruned.shape[0])
