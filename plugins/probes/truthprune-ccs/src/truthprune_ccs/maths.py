"""Contrast-Consistent Search (Burns et al. 2022; reference 10.4 "CCS") in plain numpy.

A linear map + sigmoid gives p(a). For an affirmative statement a and its negation a' the
probabilities should be consistent, p(a) ≈ 1 - p(a'), and confident, min(p(a), p(a')) ≈ 0:

    L = mean_pairs [ (p(a) - (1 - p(a')))² + min(p(a), p(a'))² ]

trained without labels by full-batch AdamW (lr 1e-3, weight decay 0.1, 1000 steps, torch's
default betas/eps and its decoupled decay applied to weight and bias, like the reference).
Labels only fix the sign afterwards. numpy keeps the probe torch-free and bit-reproducible.
"""

from __future__ import annotations

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def ccs_loss_and_grad(
    w: np.ndarray, b: float, pos: np.ndarray, neg: np.ndarray
) -> tuple[float, np.ndarray, float]:
    """CCS loss and its gradient with respect to (w, b) for paired rows ``pos``/``neg`` [n, d]."""
    p_a, p_n = sigmoid(pos @ w + b), sigmoid(neg @ w + b)
    n = len(pos)
    u = p_a - (1.0 - p_n)
    a_is_min = p_a < p_n
    m = np.where(a_is_min, p_a, p_n)
    loss = float(np.mean(u**2 + m**2))
    dl_da = (2.0 * u + 2.0 * p_a * a_is_min) / n
    dl_dn = (2.0 * u + 2.0 * p_n * ~a_is_min) / n
    ga = dl_da * p_a * (1.0 - p_a)
    gn = dl_dn * p_n * (1.0 - p_n)
    return loss, pos.T @ ga + neg.T @ gn, float(ga.sum() + gn.sum())


def train_ccs(
    pos: np.ndarray,
    neg: np.ndarray,
    seed: int,
    steps: int = 1000,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> tuple[np.ndarray, float, float]:
    """Train (w, b) from a seeded uniform(±1/√d) init (torch's Linear default); return w, b, final loss."""
    d = pos.shape[1]
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(d)
    params = np.concatenate([rng.uniform(-bound, bound, size=d), rng.uniform(-bound, bound, size=1)])
    m1 = np.zeros_like(params)
    m2 = np.zeros_like(params)
    loss = float("nan")
    for t in range(1, steps + 1):
        loss, gw, gb = ccs_loss_and_grad(params[:-1], params[-1], pos, neg)
        grad = np.concatenate([gw, [gb]])
        params *= 1.0 - lr * weight_decay
        m1 = betas[0] * m1 + (1 - betas[0]) * grad
        m2 = betas[1] * m2 + (1 - betas[1]) * grad**2
        m_hat = m1 / (1 - betas[0] ** t)
        v_hat = m2 / (1 - betas[1] ** t)
        params -= lr * m_hat / (np.sqrt(v_hat) + eps)
    return params[:-1], float(params[-1]), loss


__all__ = ["sigmoid", "ccs_loss_and_grad", "train_ccs"]
