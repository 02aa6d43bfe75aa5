"""The multi-label trope classifier over passage embeddings (a scikit-learn estimator)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.utils.validation import check_array, check_is_fitted

UNKNOWN = -1
"""Label value meaning "not known" (excluded from that tag's training)."""

SIMILARITY_SCALE = 20.0
"""Cosine similarities times this are on a logit-like scale (a cosine gap of 0.1 is 2 nats)."""


class TropeClassifier(ClassifierMixin, BaseEstimator):
    """Per-tag logistic regressions, anchored on trope definitions, with calibrated scores.

    For each tag, a balanced logistic regression reads the passage embedding plus the
    passage's cosine similarity to the tag's *prototype* (the embedded definition from the
    taxonomy). Its logit is blended with that similarity, so what the taxonomy says a trope
    is keeps weighing in where labels are few. Out-of-fold scores, with folds grouped by
    work (no work on both sides), then fit a per-tag Platt calibration (so 0.8 means about
    80%) and the F1-maximising threshold.

    A tag with fewer than ``min_positives`` labelled positives is predicted zero-shot from
    its prototype alone, calibrated on the tags that do have labels; without prototypes it
    gets a constant score.

    Args:
        tags: Tag ids, one per column of ``Y``; stored as ``classes_``. ``None`` numbers them.
        prototypes: Embedded tag definitions, shape ``(T, d)``, rows L2-normalised; or
            ``None`` to learn from labels alone.
        C: Inverse regularisation strength of each logistic regression.
        class_weight: Passed to :class:`~sklearn.linear_model.LogisticRegression`.
        prototype_feature: Scale of the prototype-similarity feature (larger: cheaper for
            the regression to lean on it).
        prior_weight: Weight of the scaled prototype similarity added to each logit.
        min_positives: Fewest positive examples a tag needs to get a learned model.
        threshold_folds: Most folds for calibration and thresholds (fewer if fewer groups).
        default_threshold: Threshold where none can be cross-validated.
        max_iter: Solver iteration limit.
    """

    def __init__(
        self,
        tags: list[str] | None = None,
        prototypes: ArrayLike | None = None,
        C: float = 1.0,
        class_weight: str | None = "balanced",
        prototype_feature: float = 3.0,
        prior_weight: float = 0.25,
        min_positives: int = 2,
        threshold_folds: int = 5,
        default_threshold: float = 0.5,
        max_iter: int = 2000,
    ) -> None:
        self.tags = tags
        self.prototypes = prototypes
        self.C = C
        self.class_weight = class_weight
        self.prototype_feature = prototype_feature
        self.prior_weight = prior_weight
        self.min_positives = min_positives
        self.threshold_folds = threshold_folds
        self.default_threshold = default_threshold
        self.max_iter = max_iter

    def fit(self, X: ArrayLike, Y: ArrayLike, groups: ArrayLike | None = None) -> TropeClassifier:
        """Fit one model per tag, then calibrate and choose thresholds by grouped CV.

        Args:
            X: Passage embeddings, shape ``(n, d)``.
            Y: Labels, shape ``(n, T)``: 1 present, 0 absent, -1 unknown.
            groups: Work id of each passage, shape ``(n,)``. With two or more distinct
                groups, calibration and thresholds are cross-validated; otherwise scores
                stay uncalibrated and the default threshold is used.

        Returns:
            self
        """
        X_ = check_array(X, dtype=np.float32)
        Y_ = np.asarray(Y, dtype=np.int8)
        if Y_.ndim != 2 or Y_.shape[0] != X_.shape[0]:
            raise ValueError(f"Y must have shape (n_samples, n_tags); got {Y_.shape}")
        if self.tags is not None and len(self.tags) != Y_.shape[1]:
            raise ValueError(f"{len(self.tags)} tags given but Y has {Y_.shape[1]} columns")
        P = self._prototypes(X_.shape[1], Y_.shape[1])
        self.classes_ = np.asarray(self.tags if self.tags is not None else range(Y_.shape[1]))
        self.n_features_in_ = X_.shape[1]
        self.prototypes_ = P
        self.estimators_, self.priors_ = self._fit_all(X_, Y_)
        self.n_positives_ = (Y_ == 1).sum(axis=0).astype(np.int64)
        self.n_negatives_ = (Y_ == 0).sum(axis=0).astype(np.int64)
        self.calibration_ = np.tile([1.0, 0.0], (Y_.shape[1], 1))
        self.thresholds_ = np.full(Y_.shape[1], self.default_threshold, dtype=np.float64)
        self._calibrate(X_, Y_, groups)
        return self

    def decision_function(self, X: ArrayLike) -> NDArray[np.float64]:
        """Return uncalibrated per-tag scores (logit scale), shape ``(n, T)``."""
        check_is_fitted(self, "estimators_")
        X_ = check_array(X, dtype=np.float32)
        if X_.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X_.shape[1]} features, but the classifier expects {self.n_features_in_}"
            )
        return self._raw(self.estimators_, self.priors_, X_)

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """Return calibrated per-tag probabilities, shape ``(n, T)``."""
        raw = self.decision_function(X)
        return _sigmoid(raw * self.calibration_[:, 0] + self.calibration_[:, 1])

    def predict(self, X: ArrayLike) -> NDArray[np.int8]:
        """Return 0/1 tag decisions per passage, shape ``(n, T)``."""
        return (self.predict_proba(X) >= self.thresholds_).astype(np.int8)

    # -- internals ---------------------------------------------------------------------------

    def _prototypes(self, d: int, n_tags: int) -> NDArray[np.float32] | None:
        if self.prototypes is None:
            return None
        P = np.asarray(self.prototypes, dtype=np.float32)
        if P.shape != (n_tags, d):
            raise ValueError(f"prototypes must have shape ({n_tags}, {d}); got {P.shape}")
        return P

    def _similarity(self, X: NDArray[Any]) -> NDArray[np.float64] | None:
        P = self.prototypes_
        return None if P is None else np.asarray(X @ P.T, dtype=np.float64)

    def _features(self, X: NDArray[Any], sim: NDArray[Any] | None, j: int) -> NDArray[Any]:
        if sim is None:
            return X
        return np.hstack([X, self.prototype_feature * sim[:, j : j + 1]]).astype(np.float32)

    def _fit_all(self, X: NDArray[Any], Y: NDArray[np.int8]) -> tuple[list[Any], NDArray[Any]]:
        sim = self._similarity(X)
        estimators: list[Any] = []
        priors = np.zeros(Y.shape[1], dtype=np.float64)
        for j in range(Y.shape[1]):
            known = Y[:, j] != UNKNOWN
            y = Y[known, j]
            priors[j] = float(y.mean()) if y.size else 0.0
            if (y == 1).sum() < self.min_positives or (y == 0).sum() < 1:
                estimators.append(None)
                continue
            model = LogisticRegression(
                C=self.C, class_weight=self.class_weight, max_iter=self.max_iter
            )
            estimators.append(model.fit(self._features(X[known], _rows(sim, known), j), y))
        return estimators, priors

    def _raw(self, estimators: list[Any], priors: NDArray[Any], X: NDArray[Any]) -> NDArray[Any]:
        sim = self._similarity(X)
        out = np.empty((X.shape[0], len(estimators)), dtype=np.float64)
        for j, model in enumerate(estimators):
            if model is not None:
                out[:, j] = model.decision_function(self._features(X, sim, j))
                if sim is not None:
                    out[:, j] += self.prior_weight * SIMILARITY_SCALE * sim[:, j]
            elif sim is not None:  # zero-shot: the definition alone
                out[:, j] = SIMILARITY_SCALE * sim[:, j]
            else:
                p = min(max(priors[j], 1e-6), 1 - 1e-6)
                out[:, j] = np.log(p / (1 - p))
        return out

    def _calibrate(self, X: NDArray[Any], Y: NDArray[np.int8], groups: ArrayLike | None) -> None:
        learned = [j for j, m in enumerate(self.estimators_) if m is not None]
        zero_shot = [j for j, m in enumerate(self.estimators_) if m is None]
        if groups is None or len(np.unique(np.asarray(groups))) < 2:
            return  # nothing to cross-validate on: raw scores and default thresholds
        groups_ = np.asarray(groups)
        oof = np.full(Y.shape, np.nan)
        folds = GroupKFold(n_splits=min(self.threshold_folds, len(np.unique(groups_))))
        for train, test in folds.split(X, groups=groups_):
            estimators, priors = self._fit_all(X[train], Y[train])
            oof[test] = self._raw(estimators, priors, X[test])
        for j in learned:
            ok = (Y[:, j] != UNKNOWN) & ~np.isnan(oof[:, j])
            self.calibration_[j] = _platt(oof[ok, j], Y[ok, j])
            prob = _sigmoid(oof[ok, j] * self.calibration_[j, 0] + self.calibration_[j, 1])
            self.thresholds_[j] = best_f1_threshold(Y[ok, j], prob, self.default_threshold)
        sim = self._similarity(X)
        if sim is None or not zero_shot or not learned:
            return
        # Zero-shot tags borrow one calibration and threshold from the labelled tags'
        # similarity-only scores.
        raw = SIMILARITY_SCALE * sim[:, learned]
        ys = Y[:, learned]
        ok = ys != UNKNOWN
        centred = raw - np.median(raw, axis=0)
        a, b = _platt(centred[ok], ys[ok])
        th = best_f1_threshold(ys[ok], _sigmoid(centred[ok] * a + b), self.default_threshold)
        med = np.median(SIMILARITY_SCALE * sim, axis=0)
        for j in zero_shot:
            self.calibration_[j] = [a, b - a * med[j]]
            self.thresholds_[j] = th


def _rows(sim: NDArray[Any] | None, mask: NDArray[Any]) -> NDArray[Any] | None:
    return None if sim is None else sim[mask]


def _sigmoid(z: NDArray[Any]) -> NDArray[np.float64]:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -50, 50))), dtype=np.float64)


def _platt(raw: NDArray[Any], y: NDArray[Any]) -> list[float]:
    """Fit ``sigmoid(a * raw + b)`` to 0/1 labels; identity-ish if it cannot be fitted."""
    y = np.asarray(y)
    if raw.size < 4 or (y == 1).sum() < 2 or (y == 0).sum() < 2:
        return [1.0, 0.0]
    model = LogisticRegression(C=100.0, max_iter=1000).fit(raw.reshape(-1, 1), y)
    a = float(model.coef_[0, 0])
    return [a, float(model.intercept_[0])] if a > 0 else [1.0, 0.0]


def best_f1_threshold(y: NDArray[Any], scores: NDArray[Any], default: float = 0.5) -> float:
    """Return the threshold that maximises F1 of ``scores >= threshold`` against ``y``.

    The threshold sits halfway between the lowest accepted score and the next score below
    it, so it generalises a little better than the bare score. ``default`` is returned when
    ``y`` has no positives.

    Args:
        y: True 0/1 labels, shape ``(n,)``.
        scores: Scores, shape ``(n,)``.
        default: Fallback threshold.
    """
    y = np.asarray(y)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int((y == 1).sum())
    if n_pos == 0 or scores.size == 0:
        return default
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], (y[order] == 1).astype(np.float64)
    tp = np.cumsum(t)
    k = np.arange(1, s.size + 1)
    f1 = 2 * tp / (k + n_pos)
    last_of_tie = np.r_[s[1:] != s[:-1], True]  # only cut between distinct scores
    f1 = np.where(last_of_tie, f1, -1.0)
    best = int(np.argmax(f1))
    below = s[best + 1] if best + 1 < s.size else max(s[best] - 0.05, 0.0)
    return float((s[best] + below) / 2)
