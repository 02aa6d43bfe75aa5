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


class TropeClassifier(ClassifierMixin, BaseEstimator):
    """One-vs-rest logistic regression with per-tag thresholds chosen by grouped CV.

    Each tag gets its own balanced logistic regression over the passage embeddings. Its
    decision threshold maximises F1 on out-of-fold scores, where folds are groups (fics):
    no fic ever sits in both the fitting and the scoring side. Tags with too few positives
    get a constant score (their positive rate) and the default threshold.

    Args:
        tags: Tag ids, one per column of ``Y``; stored as ``classes_``. ``None`` numbers them.
        C: Inverse regularisation strength of each logistic regression.
        class_weight: Passed to :class:`~sklearn.linear_model.LogisticRegression`.
        min_positives: Fewest positive examples a tag needs to get a learned model.
        threshold_folds: Most folds for the threshold search (fewer if there are fewer groups).
        default_threshold: Threshold for tags whose threshold cannot be cross-validated.
        max_iter: Solver iteration limit.
    """

    def __init__(
        self,
        tags: list[str] | None = None,
        C: float = 1.0,
        class_weight: str | None = "balanced",
        min_positives: int = 2,
        threshold_folds: int = 5,
        default_threshold: float = 0.5,
        max_iter: int = 2000,
    ) -> None:
        self.tags = tags
        self.C = C
        self.class_weight = class_weight
        self.min_positives = min_positives
        self.threshold_folds = threshold_folds
        self.default_threshold = default_threshold
        self.max_iter = max_iter

    def fit(self, X: ArrayLike, Y: ArrayLike, groups: ArrayLike | None = None) -> TropeClassifier:
        """Fit one model per tag and choose thresholds by grouped cross-validation.

        Args:
            X: Passage embeddings, shape ``(n, d)``.
            Y: Labels, shape ``(n, T)``: 1 present, 0 absent, -1 unknown.
            groups: Work id of each passage, shape ``(n,)``. With two or more distinct
                groups, thresholds are cross-validated; otherwise the default is used.

        Returns:
            self
        """
        X_ = check_array(X, dtype=np.float32)
        Y_ = np.asarray(Y, dtype=np.int8)
        if Y_.ndim != 2 or Y_.shape[0] != X_.shape[0]:
            raise ValueError(f"Y must have shape (n_samples, n_tags); got {Y_.shape}")
        if self.tags is not None and len(self.tags) != Y_.shape[1]:
            raise ValueError(f"{len(self.tags)} tags given but Y has {Y_.shape[1]} columns")
        self.classes_ = np.asarray(self.tags if self.tags is not None else range(Y_.shape[1]))
        self.n_features_in_ = X_.shape[1]
        self.estimators_, self.priors_ = self._fit_all(X_, Y_)
        self.n_positives_ = (Y_ == 1).sum(axis=0).astype(np.int64)
        self.n_negatives_ = (Y_ == 0).sum(axis=0).astype(np.int64)
        self.thresholds_ = self._choose_thresholds(X_, Y_, groups)
        return self

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """Return per-tag probabilities, shape ``(n, T)``."""
        check_is_fitted(self, "estimators_")
        X_ = check_array(X, dtype=np.float32)
        if X_.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X_.shape[1]} features, but the classifier expects {self.n_features_in_}"
            )
        return _scores(self.estimators_, self.priors_, X_)

    def predict(self, X: ArrayLike) -> NDArray[np.int8]:
        """Return 0/1 tag decisions per passage, shape ``(n, T)``."""
        return (self.predict_proba(X) >= self.thresholds_).astype(np.int8)

    def _fit_all(self, X: NDArray[Any], Y: NDArray[np.int8]) -> tuple[list[Any], NDArray[Any]]:
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
            estimators.append(model.fit(X[known], y))
        return estimators, priors

    def _choose_thresholds(
        self, X: NDArray[Any], Y: NDArray[np.int8], groups: ArrayLike | None
    ) -> NDArray[np.float64]:
        thresholds = np.full(Y.shape[1], self.default_threshold, dtype=np.float64)
        if groups is None:
            return thresholds
        groups_ = np.asarray(groups)
        n_groups = len(np.unique(groups_))
        if n_groups < 2:
            return thresholds
        oof = np.full(Y.shape, np.nan)
        folds = GroupKFold(n_splits=min(self.threshold_folds, n_groups))
        for train, test in folds.split(X, groups=groups_):
            estimators, priors = self._fit_all(X[train], Y[train])
            oof[test] = _scores(estimators, priors, X[test])
        for j in range(Y.shape[1]):
            if self.estimators_[j] is None:
                continue
            known = Y[:, j] != UNKNOWN
            thresholds[j] = best_f1_threshold(Y[known, j], oof[known, j], self.default_threshold)
        return thresholds


def _scores(estimators: list[Any], priors: NDArray[Any], X: NDArray[Any]) -> NDArray[np.float64]:
    out = np.empty((X.shape[0], len(estimators)), dtype=np.float64)
    for j, model in enumerate(estimators):
        out[:, j] = priors[j] if model is None else model.predict_proba(X)[:, 1]
    return out


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
