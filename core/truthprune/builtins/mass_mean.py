"""Built-in mass-mean probe (reference 10.4 "MM"): the difference of class means as direction,
then a 1-D unpenalised logistic regression on the projections to place the threshold."""

from __future__ import annotations

from truthprune.plugin.interfaces import Probe, ProbeMeta


class MassMeanProbe(Probe):
    name = "mass-mean"
    description = "Mass-mean probe: direction mean(true) - mean(false), threshold by 1-D logistic regression."

    def fit(self, acts, labels, meta: ProbeMeta | None = None):
        import numpy as np
        from truthprune.truth.probing.linear import logistic_regression

        acts = np.asarray(acts, dtype=np.float64)
        labels = np.asarray(labels).astype(int)
        self._direction = acts[labels == 1].mean(0) - acts[labels == 0].mean(0)
        proj = (acts @ self._direction).reshape(-1, 1)
        self._clf = logistic_regression(C=None, max_iter=1000).fit(proj, labels)
        return self

    def predict(self, acts, meta: ProbeMeta | None = None):
        import numpy as np

        proj = (np.asarray(acts, dtype=np.float64) @ self._direction).reshape(-1, 1)
        return self._clf.predict(proj)

    @property
    def direction(self):
        return getattr(self, "_direction", None)
