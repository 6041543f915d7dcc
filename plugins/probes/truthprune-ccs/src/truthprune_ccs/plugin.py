"""Probe ``ccs``: contrast-consistent search on affirmative/negated pairs (reference 10.4).

Training uses only rows that have a twin: ``ProbeMeta.polarity`` (+1/-1) and ``ProbeMeta.pair``
(for each affirmative row, the row index of its negated twin, else -1). Affirmative and negated
activations are each centred by their own training mean; at prediction time a row is centred
with the mean of its polarity, or with the average of both means when polarity is unknown.
The sign, arbitrary for an unsupervised objective, is fixed so that training accuracy on the
affirmative rows is at least 0.5. No numpy import at module level.
"""

from __future__ import annotations

from pydantic import Field

from truthprune import PluginConfig, Probe, ProbeMeta, UserError, hookimpl


class CCSConfig(PluginConfig):
    steps: int = Field(default=1000, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.1, ge=0)
    seed: int | None = None
    """Initialisation seed; null uses ProbeMeta.seed."""


class CCSProbe(Probe):
    name = "ccs"
    description = "CCS: unsupervised consistency/confidence probe on affirmative/negated statement pairs."
    Config = CCSConfig
    needs_polarity = True

    def fit(self, acts, labels, meta: ProbeMeta | None = None):
        import numpy as np

        from .maths import sigmoid, train_ccs

        if meta is None or meta.polarity is None or meta.pair is None:
            raise UserError("probe 'ccs' needs affirmative/negated statement pairs (ProbeMeta.polarity and .pair)")
        x = np.asarray(acts, dtype=np.float64)
        y = np.asarray(labels).astype(int)
        pol, pair = np.asarray(meta.polarity), np.asarray(meta.pair)
        aff = np.flatnonzero((pol > 0) & (pair >= 0))
        if len(aff) < 2:
            raise UserError("probe 'ccs' found fewer than 2 affirmative rows with a negated twin; add neg_ sets")
        twins = pair[aff]
        if np.any(pol[twins] > 0):
            raise UserError("probe 'ccs': ProbeMeta.pair must point from affirmative rows to negated rows")
        self._mu_pos, self._mu_neg = x[aff].mean(axis=0), x[twins].mean(axis=0)
        pos, neg = x[aff] - self._mu_pos, x[twins] - self._mu_neg
        seed = self.config.seed if self.config.seed is not None else meta.seed
        cfg = self.config
        self._w, self._b, self.final_loss = train_ccs(pos, neg, seed, cfg.steps, cfg.lr, cfg.weight_decay)
        if np.mean((sigmoid(pos @ self._w + self._b) > 0.5) == y[aff]) < 0.5:
            self._w, self._b = -self._w, -self._b
        return self

    def _centred(self, acts, meta):
        import numpy as np

        x = np.asarray(acts, dtype=np.float64)
        if meta is None or meta.polarity is None:
            return x - 0.5 * (self._mu_pos + self._mu_neg)
        pol = np.asarray(meta.polarity).reshape(-1, 1)
        return x - np.where(pol > 0, self._mu_pos, self._mu_neg)

    def predict_proba(self, acts, meta: ProbeMeta | None = None):
        from .maths import sigmoid

        return sigmoid(self._centred(acts, meta) @ self._w + self._b)

    def predict(self, acts, meta: ProbeMeta | None = None):
        return (self.predict_proba(acts, meta) > 0.5).astype(int)

    @property
    def direction(self):
        return getattr(self, "_w", None)


@hookimpl
def register_probes(register):
    register(CCSProbe)
