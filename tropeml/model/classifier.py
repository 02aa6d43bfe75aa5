"""The multi-label trope classifier (a scikit-learn estimator).

Three views of a passage score each tag, and their standardised scores are summed:

- **embedding**: a balanced RBF support-vector machine (or logistic regression) on the
  passage embedding;
- **lexical**: a balanced logistic regression on TF-IDF words of the passage's
  (name-masked) text, when texts are given: tropes have words of their own ("alpha",
  "soulmark", "voicemail", "funeral") that a 256-token sentence embedding blurs;
- **prototype**: the passage's cosine similarity to the tag's prototype (its definition and
  scene sketches, embedded), centred on the passage's mean similarity to all tags. This is
  prior knowledge from the taxonomy: it needs no labels, so a tag with none is predicted
  zero-shot, and it keeps the learned views from drifting to one corpus's style.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.utils.validation import check_array, check_is_fitted

from tropeml.core.types import UNKNOWN
from tropeml.model.calibration import (
    best_f1_threshold,
    null_threshold,
    platt,
    scale_views,
    stack_weights,
)
from tropeml.model.head import EMB as _EMB
from tropeml.model.head import LEX as _LEX
from tropeml.model.head import LEXICAL_BLOCK as _LEXICAL_BLOCK
from tropeml.model.head import PROTO as _PROTO
from tropeml.model.head import VIEWS, combine_views, per_tag_weights, prototype_view
from tropeml.model.head import sigmoid as _sigmoid
from tropeml.model.kernel import RbfView

__all__ = ["UNKNOWN", "VIEWS", "TropeClassifier", "best_f1_threshold"]


class TropeClassifier(ClassifierMixin, BaseEstimator):
    """Per-tag scores from three views of a passage, combined, calibrated and thresholded.

    For each tag, the *embedding* view reads the passage embedding (``kernel``), the
    *lexical* view is a balanced logistic regression on TF-IDF words of the passage text
    (only when ``texts`` are passed to :meth:`fit`), and the *prototype* view the passage's
    similarity to the tag's embedded definition, centred across tags. Each view's score is
    standardised per tag (mean and spread of its out-of-fold scores on the training rows)
    and the weighted sum is the tag's raw score. The weights are learned per tag by a
    stacker (a balanced logistic regression, weights clipped at 0) on the standardised
    out-of-fold view scores; tags with too few labels keep the fixed weights. Out-of-fold
    raw scores, with folds grouped by work, then fit a per-tag Platt calibration and the
    F1-maximising threshold.

    A tag with fewer than ``min_positives`` positives is predicted zero-shot from its
    prototype alone, calibrated on the labelled tags (without prototypes: a constant).

    Args:
        tags: Tag ids, one per column of ``Y``; stored as ``classes_``. ``None`` numbers them.
        prototypes: Embedded tag descriptions, shape ``(T, d)``, rows L2-normalised; or
            ``None`` to learn from labels alone.
        C: Inverse regularisation strength of the embedding view's models.
        kernel: The embedding view: ``"rbf"``, a balanced RBF support-vector machine per tag
            (:class:`~tropeml.model.kernel.RbfView`), or ``"linear"``, a logistic regression.
        gamma_scale: The RBF kernel's width as a multiple of sklearn's ``"scale"``.
        lexical_C: Inverse regularisation strength of the lexical view's regressions.
        class_weight: Passed to each :class:`~sklearn.linear_model.LogisticRegression`.
        embedding_weight: Fixed weight of the standardised embedding view.
        lexical_weight: Fixed weight of the standardised lexical view (0 turns it off).
        prototype_weight: Fixed weight of the standardised prototype view (0 turns it off
            for tags with labels; tags without labels still use it).
        stack_C: Inverse regularisation strength of the per-tag stacker that learns the
            view weights from out-of-fold scores (views with a fixed weight of 0 stay off);
            ``None`` keeps the fixed weights for every tag. Needs two or more groups.
        ngram_range: Word n-gram range of the lexical view.
        max_features: Largest lexical vocabulary (most frequent n-grams).
        min_df: Fewest training texts an n-gram must occur in.
        min_positives: Fewest positive examples a tag needs to get learned views.
        threshold_folds: Most folds for standardisation, calibration and thresholds (fewer
            if fewer groups).
        default_threshold: Threshold where none can be cross-validated.
        max_iter: Solver iteration limit.
    """

    gamma_scale = 1.0  # what get_params and clone read on classifiers saved before it existed

    def __init__(
        self,
        tags: list[str] | None = None,
        prototypes: ArrayLike | None = None,
        C: float = 1.0,
        kernel: str = "rbf",
        gamma_scale: float = 1.0,
        lexical_C: float = 1.0,
        class_weight: str | None = "balanced",
        embedding_weight: float = 0.5,
        lexical_weight: float = 1.0,
        prototype_weight: float = 1.0,
        stack_C: float | None = 0.1,
        ngram_range: tuple[int, int] = (1, 1),
        max_features: int | None = 30000,
        min_df: int = 2,
        min_positives: int = 2,
        threshold_folds: int = 5,
        default_threshold: float = 0.5,
        max_iter: int = 2000,
    ) -> None:
        self.tags = tags
        self.prototypes = prototypes
        self.C = C
        self.kernel = kernel
        self.gamma_scale = gamma_scale
        self.lexical_C = lexical_C
        self.class_weight = class_weight
        self.embedding_weight = embedding_weight
        self.lexical_weight = lexical_weight
        self.prototype_weight = prototype_weight
        self.stack_C = stack_C
        self.ngram_range = ngram_range
        self.max_features = max_features
        self.min_df = min_df
        self.min_positives = min_positives
        self.threshold_folds = threshold_folds
        self.default_threshold = default_threshold
        self.max_iter = max_iter

    def fit(
        self,
        X: ArrayLike,
        Y: ArrayLike,
        groups: ArrayLike | None = None,
        texts: Sequence[str] | None = None,
    ) -> TropeClassifier:
        """Fit the views per tag, then standardise, calibrate and choose thresholds by CV.

        Args:
            X: Passage embeddings, shape ``(n, d)``.
            Y: Labels, shape ``(n, T)``: 1 present, 0 absent, -1 unknown.
            groups: Work id of each passage, shape ``(n,)``. With two or more distinct
                groups, standardisation, calibration and thresholds are cross-validated;
                otherwise scores are standardised in-sample, stay uncalibrated, and the
                default threshold is used.
            texts: Passage texts, ``n`` strings (name-masked as at tagging time), for the
                lexical view; ``None`` leaves it out.

        Returns:
            self
        """
        X_ = check_array(X, dtype=np.float32)
        Y_ = np.asarray(Y, dtype=np.int8)
        if Y_.ndim != 2 or Y_.shape[0] != X_.shape[0]:
            raise ValueError(f"Y must have shape (n_samples, n_tags); got {Y_.shape}")
        if self.tags is not None and len(self.tags) != Y_.shape[1]:
            raise ValueError(f"{len(self.tags)} tags given but Y has {Y_.shape[1]} columns")
        texts_ = self._check_texts(texts, X_.shape[0])
        self.classes_ = np.asarray(self.tags if self.tags is not None else range(Y_.shape[1]))
        self.n_features_in_ = X_.shape[1]
        self.prototypes_ = self._prototypes(X_.shape[1], Y_.shape[1])
        self.estimators_, self.vectorizer_, self.lexical_, self.priors_ = self._fit_views(
            X_, Y_, texts_ if self.lexical_weight else None
        )
        self.n_positives_ = (Y_ == 1).sum(axis=0).astype(np.int64)
        self.n_negatives_ = (Y_ == 0).sum(axis=0).astype(np.int64)
        self.calibration_ = np.tile([1.0, 0.0], (Y_.shape[1], 1))
        self.thresholds_ = np.full(Y_.shape[1], self.default_threshold, dtype=np.float64)
        cv = groups is not None and len(np.unique(np.asarray(groups))) >= 2
        if cv:
            views = self._out_of_fold(X_, Y_, texts_, np.asarray(groups))
        else:
            views = self._views(self._fitted(), X_, texts_)
        self.scale_ = scale_views(views, Y_ != UNKNOWN)
        self.view_weights_ = per_tag_weights(self._fixed_weights(), Y_.shape[1])
        if cv and self.stack_C is not None:
            self._stack(views, Y_, self.stack_C)
        if cv:
            self._calibrate(self._combine(views), views, Y_)
        return self

    def decision_function(
        self, X: ArrayLike, texts: Sequence[str] | None = None
    ) -> NDArray[np.float64]:
        """Return uncalibrated per-tag scores (logit scale), shape ``(n, T)``.

        Args:
            X: Passage embeddings, shape ``(n, d)``.
            texts: The passages' texts, required when the classifier was fitted with them.
        """
        check_is_fitted(self, "estimators_")
        X_ = check_array(X, dtype=np.float32)
        if X_.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X_.shape[1]} features, but the classifier expects {self.n_features_in_}"
            )
        texts_ = self._check_texts(texts, X_.shape[0])
        if self.vectorizer_ is not None and texts_ is None:
            raise ValueError("this classifier reads passage texts too: pass texts=")
        return self._combine(self._views(self._fitted(), X_, texts_))

    def predict_proba(
        self, X: ArrayLike, texts: Sequence[str] | None = None
    ) -> NDArray[np.float64]:
        """Return calibrated per-tag probabilities, shape ``(n, T)`` (see :meth:`fit`)."""
        raw = self.decision_function(X, texts)
        return _sigmoid(raw * self.calibration_[:, 0] + self.calibration_[:, 1])

    def predict(self, X: ArrayLike, texts: Sequence[str] | None = None) -> NDArray[np.int8]:
        """Return 0/1 tag decisions per passage, shape ``(n, T)``."""
        return (self.predict_proba(X, texts) >= self.thresholds_).astype(np.int8)

    @property
    def uses_texts(self) -> bool:
        """Whether prediction needs the passages' texts (the lexical view was fitted)."""
        check_is_fitted(self, "estimators_")
        return self.vectorizer_ is not None

    # -- internals ---------------------------------------------------------------------------

    @staticmethod
    def _check_texts(texts: Sequence[str] | None, n: int) -> list[str] | None:
        if texts is None:
            return None
        out = list(texts)
        if len(out) != n or not all(isinstance(t, str) for t in out):
            raise ValueError(f"texts must be {n} strings, one per row of X")
        return out

    def _prototypes(self, d: int, n_tags: int) -> NDArray[np.float32] | None:
        if self.prototypes is None:
            return None
        P = np.asarray(self.prototypes, dtype=np.float32)
        if P.shape != (n_tags, d):
            raise ValueError(f"prototypes must have shape ({n_tags}, {d}); got {P.shape}")
        return P

    def _fitted(self) -> tuple[Any, Any, list[Any], NDArray[Any]]:
        return self.estimators_, self.vectorizer_, self.lexical_, self.priors_

    def _logreg(self, C: float, sparse: bool = False) -> LogisticRegression:
        if sparse:  # many more n-grams than rows: the dual problem is fast (50x lbfgs here)
            return LogisticRegression(
                C=C,
                class_weight=self.class_weight,
                max_iter=self.max_iter,
                solver="liblinear",
                dual=True,
                random_state=0,
            )
        return LogisticRegression(C=C, class_weight=self.class_weight, max_iter=self.max_iter)

    def _fit_views(
        self, X: NDArray[Any], Y: NDArray[np.int8], texts: list[str] | None
    ) -> tuple[Any, Any, list[Any], NDArray[Any]]:
        """Fit the embedding and lexical views of every tag with enough labels."""
        T = Y.shape[1]
        priors = np.zeros(T, dtype=np.float64)
        learnable = []
        for j in range(T):
            y = Y[Y[:, j] != UNKNOWN, j]
            priors[j] = float(y.mean()) if y.size else 0.0
            learnable.append((y == 1).sum() >= self.min_positives and (y == 0).sum() >= 1)
        vectorizer, V = None, None
        if texts is not None and any(learnable):
            vectorizer = TfidfVectorizer(
                sublinear_tf=True,
                ngram_range=self.ngram_range,
                max_features=self.max_features,
                min_df=min(self.min_df, len(texts)),
                dtype=np.float64,
            )
            try:
                V = vectorizer.fit_transform(texts)
            except ValueError:  # no n-gram occurs often enough: no lexical view
                vectorizer, V = None, None
        if self.kernel not in ("rbf", "linear"):
            raise ValueError(f"kernel must be 'rbf' or 'linear'; got {self.kernel!r}")
        rbf = self.kernel == "rbf"
        args = (X, Y, learnable, self.C, self.class_weight)
        embedding: Any = RbfView.fit(*args, scale=self.gamma_scale) if rbf else []
        lexical: list[Any] = []
        for j in range(T):
            known, ok = Y[:, j] != UNKNOWN, learnable[j]
            if not rbf:
                embedding.append(self._logreg(self.C).fit(X[known], Y[known, j]) if ok else None)
            lex = self._logreg(self.lexical_C, True) if ok else None
            lexical.append(None if lex is None or V is None else lex.fit(V[known], Y[known, j]))
        return embedding, vectorizer, lexical, priors

    def _views(
        self,
        fitted: tuple[Any, Any, list[Any], NDArray[Any]],
        X: NDArray[Any],
        texts: list[str] | None,
    ) -> NDArray[np.float64]:
        """Score every view, shape ``(3, n, T)``; NaN where a tag lacks that view."""
        embedding, vectorizer, lexical, _ = fitted
        n, T = X.shape[0], len(embedding)
        out = np.full((3, n, T), np.nan)
        if isinstance(embedding, RbfView):
            out[_EMB] = embedding.decision_function(X)
        else:
            for j, model in enumerate(embedding):
                if model is not None:
                    out[_EMB, :, j] = model.decision_function(X)
        if vectorizer is not None and texts is not None:
            for start in range(0, n, _LEXICAL_BLOCK):  # a whole novel at once costs GBs
                V = vectorizer.transform(texts[start : start + _LEXICAL_BLOCK])
                for j in range(T):
                    if lexical[j] is not None:
                        out[_LEX, start : start + V.shape[0], j] = lexical[j].decision_function(V)
        if self.prototypes_ is not None:
            out[_PROTO] = prototype_view(X, self.prototypes_)
        return out

    def _fixed_weights(self) -> NDArray[np.float64]:
        return np.array([self.embedding_weight, self.lexical_weight, self.prototype_weight])

    def _weights(self) -> NDArray[np.float64]:
        """View weights, shape ``(3, T)`` (:meth:`_stack`); fixed ones for older classifiers."""
        fixed = per_tag_weights(self._fixed_weights(), len(self.classes_))
        return np.asarray(getattr(self, "view_weights_", fixed), dtype=np.float64)

    def _stack(self, views: NDArray[Any], Y: NDArray[np.int8], C: float) -> None:
        """Learn each labelled tag's view weights from out-of-fold views ``(3, n, T)``."""
        mean, std = self.scale_[:, :, 0], self.scale_[:, :, 1]
        z = (views - mean[:, None, :]) / std[:, None, :]
        fixed = self._fixed_weights()
        for j, model in enumerate(self.estimators_):
            if model is not None:
                ok = (Y[:, j] != UNKNOWN) & ~np.isnan(views[_EMB, :, j])
                self.view_weights_[:, j] = stack_weights(z[:, ok, j], Y[ok, j], fixed, C)

    def _combine(self, views: NDArray[Any]) -> NDArray[np.float64]:
        """Weighted sum of standardised views, shape ``(n, T)`` (``head.combine_views``)."""
        return combine_views(views, self.scale_, self._weights(), self.priors_)

    def _out_of_fold(
        self, X: NDArray[Any], Y: NDArray[np.int8], texts: list[str] | None, groups: NDArray[Any]
    ) -> NDArray[np.float64]:
        """Out-of-fold view scores, shape ``(3, n, T)``, with folds grouped by work."""
        views = self._views(self._fitted(), X, texts)  # the prototype view needs no fitting
        learned = np.full((3, *Y.shape), np.nan)
        folds = GroupKFold(n_splits=min(self.threshold_folds, len(np.unique(groups))))
        for train, test in folds.split(X, groups=groups):
            sub = self._fit_views(
                X[train], Y[train], None if texts is None else [texts[i] for i in train]
            )
            part = self._views(sub, X[test], None if texts is None else [texts[i] for i in test])
            learned[:, test] = part
        for j, model in enumerate(self.estimators_):
            views[_EMB, :, j] = learned[_EMB, :, j] if model is not None else np.nan
            lex = self.lexical_[j] is not None
            views[_LEX, :, j] = learned[_LEX, :, j] if lex else np.nan
            unlearned = np.isnan(learned[_EMB, :, j]) & (Y[:, j] != UNKNOWN)
            if model is not None and unlearned.any():
                warnings.warn(
                    f"tag {self.classes_[j]!r}: {int(unlearned.sum())} rows fall in inner folds "
                    "with too few positives to learn it; they are left out of its calibration",
                    UserWarning,
                    stacklevel=3,
                )
        return views

    def _calibrate(self, raw: NDArray[Any], views: NDArray[Any], Y: NDArray[np.int8]) -> None:
        learned = [j for j, m in enumerate(self.estimators_) if m is not None]
        zero_shot = [j for j, m in enumerate(self.estimators_) if m is None]
        for j in learned:
            # only rows scored by the model every other row is scored by (never by the
            # prototype alone, where an inner fold could not learn the tag)
            ok = (Y[:, j] != UNKNOWN) & ~np.isnan(raw[:, j]) & ~np.isnan(views[_EMB, :, j])
            if (Y[ok, j] == 1).sum() < 2:  # nothing to calibrate on: keep 95% of rows out
                self.thresholds_[j] = null_threshold(raw[:, j], Y[:, j])
                continue
            self.calibration_[j] = platt(raw[ok, j], Y[ok, j])
            prob = _sigmoid(raw[ok, j] * self.calibration_[j, 0] + self.calibration_[j, 1])
            self.thresholds_[j] = best_f1_threshold(Y[ok, j], prob, self.default_threshold)
        if zero_shot and (self.prototypes_ is None or not learned):
            for j in zero_shot:  # nothing to borrow from: fire on the top 5% of passages
                self.thresholds_[j] = null_threshold(raw[:, j], Y[:, j])
            return
        if not zero_shot:
            return
        # Zero-shot tags borrow one calibration and threshold from the labelled tags'
        # standardised prototype scores.
        mean, std = self.scale_[_PROTO, learned, 0], self.scale_[_PROTO, learned, 1]
        z = (views[_PROTO][:, learned] - mean) / std
        ys = Y[:, learned]
        ok = ys != UNKNOWN
        a, b = platt(z[ok], ys[ok])
        th = best_f1_threshold(ys[ok], _sigmoid(z[ok] * a + b), self.default_threshold)
        for j in zero_shot:
            self.calibration_[j] = [a, b]
            self.thresholds_[j] = th
