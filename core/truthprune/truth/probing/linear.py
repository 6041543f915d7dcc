"""scikit-learn logistic regression across versions, used by every probe that needs one.

Why a helper: scikit-learn 1.8 deprecated ``penalty`` (removed in 1.10) in favour of ``C=inf``
for "no penalty" and ``l1_ratio`` for L1, while older versions only know ``penalty``. Probes say
what they mean (``C=None`` = unpenalised, ``l1_ratio``) and get the same model on any version.
"""

from __future__ import annotations

from typing import Any


def _sklearn_version() -> tuple[int, int]:
    import sklearn

    parts = sklearn.__version__.split(".")
    return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)


def logistic_regression(
    C: float | None = None,
    l1_ratio: float = 0.0,
    fit_intercept: bool = True,
    max_iter: int = 100,
    tol: float = 1e-4,
    random_state: int | None = 0,
) -> Any:
    """An unfitted ``LogisticRegression``: unpenalised when ``C`` is None, else L2 (``l1_ratio=0``),
    L1 (``l1_ratio=1``) or elastic net with strength 1/C. lbfgs for L2/none, saga otherwise."""
    from sklearn.linear_model import LogisticRegression

    if C is not None and not C > 0:
        raise ValueError(f"C must be > 0 or None (unpenalised), got {C}")
    if not 0.0 <= l1_ratio <= 1.0:
        raise ValueError(f"l1_ratio must lie in [0, 1], got {l1_ratio}")
    common = dict(fit_intercept=fit_intercept, max_iter=max_iter, tol=tol, random_state=random_state)
    solver = "lbfgs" if C is None or l1_ratio == 0.0 else "saga"
    if _sklearn_version() >= (1, 8):
        c = float("inf") if C is None else float(C)
        return LogisticRegression(C=c, l1_ratio=0.0 if C is None else l1_ratio, solver=solver, **common)
    if C is None:
        return LogisticRegression(penalty=None, solver=solver, **common)
    if l1_ratio == 0.0:
        return LogisticRegression(penalty="l2", C=C, solver=solver, **common)
    if l1_ratio == 1.0:
        return LogisticRegression(penalty="l1", C=C, solver=solver, **common)
    return LogisticRegression(penalty="elasticnet", C=C, l1_ratio=l1_ratio, solver=solver, **common)


__all__ = ["logistic_regression"]
