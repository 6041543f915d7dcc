"""Probe ``ttpd``: Training of Truth and Polarity Direction (reference 10.4).

fit: (1) t_G from a least-squares fit of the per-dataset-centred activations on [τ, τ·p];
(2) a polarity direction from a logistic regression of polarity on the raw activations;
(3) an unpenalised logistic regression of the label on the 2-D features [a·t_G, a·w_pol].
Needs ``ProbeMeta.polarity``; ``ProbeMeta.group`` (dataset id per row) selects the centring
groups (one group when absent). Trained on a single polarity it degrades gracefully to the
1-D feature a·t_G. No numpy/sklearn import at module level.
"""

from __future__ import annotations

import warnings

from pydantic import Field

from truthprune import PluginConfig, Probe, ProbeMeta, UserError, hookimpl


class TTPDConfig(PluginConfig):
    polarity_C: float | None = Field(default=None, gt=0)
    """Regularisation of the polarity logistic regression; null = unpenalised (the reference)."""
    max_iter: int = Field(default=1000, ge=1)


class TTPDProbe(Probe):
    name = "ttpd"
    description = "TTPD: general truth direction separated from polarity by least squares, then a 2-D logistic regression."
    Config = TTPDConfig
    needs_polarity = True

    def fit(self, acts, labels, meta: ProbeMeta | None = None):
        import numpy as np

        from truthprune import logistic_regression

        from .maths import centre_by_group, truth_polarity_directions

        if meta is None or meta.polarity is None:
            raise UserError("probe 'ttpd' needs the polarity of each statement (+1 affirmative, -1 negated)")
        x = np.asarray(acts, dtype=np.float64)
        y = np.asarray(labels).astype(int)
        pol = np.asarray(meta.polarity).astype(int)
        groups = np.zeros(len(x), dtype=int) if meta.group is None else np.asarray(meta.group)
        self._t_g, self._t_p = truth_polarity_directions(centre_by_group(x, groups), y, pol)
        self._w_pol = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # separable data: the unpenalised fit hits max_iter
            if len(np.unique(pol)) == 2:
                clf = logistic_regression(C=self.config.polarity_C, max_iter=self.config.max_iter)
                self._w_pol = clf.fit(x, (pol > 0).astype(int)).coef_[0]
            self._clf = logistic_regression(C=None, max_iter=self.config.max_iter).fit(self._features(x), y)
        return self

    def _features(self, acts):
        import numpy as np

        x = np.asarray(acts, dtype=np.float64)
        cols = [x @ self._t_g] if self._w_pol is None else [x @ self._t_g, x @ self._w_pol]
        return np.stack(cols, axis=1)

    def predict(self, acts, meta: ProbeMeta | None = None):
        return self._clf.predict(self._features(acts))

    @property
    def direction(self):
        """The general truth direction t_G."""
        return getattr(self, "_t_g", None)

    @property
    def polarity_direction(self):
        return getattr(self, "_w_pol", None)


@hookimpl
def register_probes(register):
    register(TTPDProbe)
