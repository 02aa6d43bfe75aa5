"""The classifier's prediction as plain arrays: numpy only, no scikit-learn, no skops.

A fitted :class:`~tropeml.model.classifier.TropeClassifier` has three views (an RBF
support-vector machine or a logistic regression on the embedding, a logistic regression on
TF-IDF words, and a centred cosine to each prototype), followed by per-tag
standardisation, a weighted sum and Platt calibration. All of that is a handful of arrays.
A model folder stores them in ``head.npz`` beside ``head.skops``, and tagging loads them
with ``numpy.load(allow_pickle=False)``: nothing in the file can run, and a cold ``tropeml
tag`` never pays the seconds it takes to import scikit-learn and skops. Making the arrays
from a fitted classifier, and checking that they reproduce its scores before they are
written, is :mod:`tropeml.model.head_export`.

The maths shared with the estimator (combining the views, the prototype view, the sigmoid)
lives here, so the two cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tropeml.core.errors import TropemlError

VIEWS = ("embedding", "lexical", "prototype")
"""The three views, in the order of the first axis of ``scale_``."""

EMB, LEX, PROTO = range(3)

LEXICAL_BLOCK = 512
"""Passages vectorised at a time for the lexical view (bounds memory on long works)."""

HEAD_ARRAYS_VERSION = 3
"""3: the embedding view may be an RBF kernel machine (``emb_basis``, ``emb_dual``,
``emb_gamma``); 2: view weights per view and tag, shape ``(3, T)``; 1: one weight per view.
All are still read."""


def sigmoid(z: NDArray[Any]) -> NDArray[np.float64]:
    """Return the logistic function of ``z`` (clipped, so it never overflows)."""
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -50, 50))), dtype=np.float64)


KERNEL_BLOCK = 1024
"""Passages scored at a time by :func:`rbf_view` (bounds the kernel matrix's memory)."""


def rbf_view(
    X: NDArray[Any],
    basis: NDArray[np.float32],
    dual: NDArray[np.float64],
    bias: NDArray[np.float64],
    gamma: NDArray[np.float64],
) -> NDArray[np.float64]:
    """RBF kernel machines' decision values: ``exp(-gamma_t |x - b|^2) @ dual_t + bias_t``.

    Args:
        X: Passage embeddings, shape ``(n, d)``.
        basis: Training rows that are some tag's support vector, shape ``(m, d)``.
        dual: Dual coefficients, shape ``(m, T)`` (zero where a row does not support a tag).
        bias: Intercepts, shape ``(T,)``.
        gamma: Each tag's kernel width, shape ``(T,)``.

    Returns:
        Shape ``(n, T)``.
    """
    B = np.asarray(basis, dtype=np.float64)
    b2 = (B * B).sum(axis=1)
    support = [np.flatnonzero(dual[:, t]) for t in range(dual.shape[1])]
    out = np.tile(np.asarray(bias, dtype=np.float64), (X.shape[0], 1))
    for start in range(0, X.shape[0], KERNEL_BLOCK):
        x = np.asarray(X[start : start + KERNEL_BLOCK], dtype=np.float64)
        d2 = np.maximum((x * x).sum(axis=1)[:, None] + b2[None, :] - 2.0 * x @ B.T, 0.0)
        for t, rows in enumerate(support):
            if rows.size:
                out[start : start + len(x), t] += np.exp(-gamma[t] * d2[:, rows]) @ dual[rows, t]
    return out


def unit_rows(V: NDArray[Any]) -> NDArray[np.float32]:
    """Rows scaled to unit length (zero rows stay zero), same shape ``(n, d)``."""
    norms = np.linalg.norm(V, axis=1, keepdims=True)
    return np.asarray(V / np.maximum(norms, 1e-12), dtype=np.float32)


def prototype_view(X: NDArray[Any], P: NDArray[np.float32]) -> NDArray[np.float64]:
    """Cosine of each passage to each prototype, centred across tags.

    Args:
        X: Passage embeddings, shape ``(n, d)``, float32, L2-normalised.
        P: Prototypes, shape ``(T, d)``, float32.

    Returns:
        Shape ``(n, T)``: each similarity minus the passage's mean similarity to all tags
        (uncentred when there is one tag).
    """
    sim = np.asarray(X @ P.T, dtype=np.float64)
    return sim - sim.mean(axis=1, keepdims=True) if P.shape[0] > 1 else sim


def combine_views(
    views: NDArray[Any],
    scale: NDArray[np.float64],
    weights: NDArray[np.float64],
    priors: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Weighted sum of standardised views, shape ``(n, T)``.

    A tag with no learned view scores from its prototype alone (zero-shot); a tag with no
    view at all gets its training prevalence as a constant logit.

    Args:
        views: View scores, shape ``(3, n, T)``; NaN where a tag lacks a view.
        scale: Mean and spread of each view per tag, shape ``(3, T, 2)``.
        weights: Weight of each view, shape ``(3,)``, or per view and tag, shape ``(3, T)``.
        priors: Training prevalence of each tag, shape ``(T,)``.
    """
    mean, std = scale[:, :, 0], scale[:, :, 1]
    z = (views - mean[:, None, :]) / std[:, None, :]
    learned = ~np.isnan(scale[EMB, :, 0])
    w = np.array(per_tag_weights(weights, len(learned)))  # a copy: it is edited below
    w[PROTO, ~learned] = 1.0  # zero-shot: the prototype is all there is
    raw = np.nansum(z * w[:, None, :], axis=0)
    empty = np.all(np.isnan(scale[:, :, 0]), axis=0)
    if empty.any():
        p = np.clip(priors[empty], 1e-6, 1 - 1e-6)
        raw[:, empty] = np.log(p / (1 - p))
    return np.asarray(raw, dtype=np.float64)


def per_tag_weights(weights: ArrayLike, T: int) -> NDArray[np.float64]:
    """View weights per view and tag, shape ``(3, T)``.

    From one weight per view (3 numbers) or one per view and tag (``3 * T``, view-major).
    """
    w = np.asarray(weights, dtype=np.float64)
    return np.repeat(w.reshape(3, 1), T, axis=1) if w.size == 3 else w.reshape(3, T)


class _Tfidf:
    """The transform of a fitted word-level ``TfidfVectorizer`` (l2 norm, idf), in numpy.

    Only the settings :func:`export_arrays` accepts are supported: word analyzer, regex
    token pattern, optional lower-casing, n-grams, optional sublinear tf, no stop words,
    accent stripping, custom preprocessor or tokenizer.
    """

    def __init__(
        self,
        vocabulary: NDArray[np.str_],
        idf: NDArray[np.float64],
        token_pattern: str,
        lowercase: bool,
        ngram_range: tuple[int, int],
        sublinear_tf: bool,
    ) -> None:
        self.index = {str(term): i for i, term in enumerate(vocabulary.tolist())}
        self.idf = np.asarray(idf, dtype=np.float64)
        self.pattern = re.compile(token_pattern)
        self.lowercase = lowercase
        self.ngram_range = ngram_range
        self.sublinear_tf = sublinear_tf

    def _terms(self, text: str) -> list[str]:
        tokens = self.pattern.findall(text.lower() if self.lowercase else text)
        lo, hi = self.ngram_range
        if hi == 1:
            return list(tokens)
        out = list(tokens) if lo == 1 else []
        for n in range(max(lo, 2), min(hi, len(tokens)) + 1):
            out.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        return out

    def transform(
        self, texts: Sequence[str]
    ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
        """TF-IDF vectors of ``texts`` as sparse triplets, sorted by row then column.

        Returns:
            ``(rows, cols, values)``, each of shape ``(nnz,)``: row ``rows[k]`` (an index
            into ``texts``) has ``values[k]`` in vocabulary column ``cols[k]``.
        """
        get = self.index.get
        ids: list[int] = []
        lengths = []
        for text in texts:
            row = [i for i in map(get, self._terms(text)) if i is not None]
            ids.extend(row)
            lengths.append(len(row))
        V = max(len(self.idf), 1)
        pid = np.repeat(np.arange(len(texts), dtype=np.intp), lengths)
        keys, counts = np.unique(pid * V + np.asarray(ids, dtype=np.intp), return_counts=True)
        rows, cols = keys // V, keys % V
        tf = counts.astype(np.float64)
        if self.sublinear_tf:
            tf = np.log(tf) + 1.0
        values = tf * self.idf[cols]
        norms = np.sqrt(np.bincount(rows, weights=values * values, minlength=len(texts)))
        return rows, cols, values / norms[rows]


class ArrayHead:
    """A fitted :class:`~tropeml.model.classifier.TropeClassifier`, for prediction only.

    It predicts what the classifier does, to float32 rounding (logits agree to about
    1e-6), from plain arrays, and offers the same prediction interface: :attr:`classes_`,
    :attr:`thresholds_`, :attr:`n_features_in_`, :attr:`uses_texts`,
    :meth:`decision_function`, :meth:`predict_proba` and :meth:`predict`. Build one with
    :func:`export_arrays` and :meth:`from_arrays`, or load one with :meth:`load`.

    Args:
        arrays: The arrays :func:`export_arrays` makes.

    Raises:
        TropemlError: If the arrays are missing, of the wrong kind, or do not fit together.
    """

    def __init__(self, arrays: dict[str, NDArray[Any]]) -> None:
        try:
            self.classes_ = np.asarray(arrays["classes"]).astype(str)
            T = len(self.classes_)
            self.emb_basis_: NDArray[np.float32] | None = None
            if "emb_basis" in arrays:  # an RBF kernel machine (rbf_view)
                self.emb_basis_ = np.asarray(arrays["emb_basis"], dtype=np.float32)
                self.n_features_in_ = int(self.emb_basis_.shape[1])
                self.emb_dual_ = _floats(arrays["emb_dual"], (len(self.emb_basis_), T))
                self.emb_gamma_ = _floats(arrays["emb_gamma"], (T,))
            else:  # linear, kept in the dtype fitted (float32), as the estimator computes it
                self.emb_coef_ = _floats(arrays["emb_coef"], (T, -1), keep_dtype=True)
                self.n_features_in_ = int(self.emb_coef_.shape[1])
            self.emb_intercept_ = _floats(arrays["emb_intercept"], (T,), keep_dtype=True)
            self.has_emb_ = np.asarray(arrays["has_emb"], dtype=bool).reshape(T)
            self.scale_ = _floats(arrays["scale"], (3, T, 2))
            self.weights_ = per_tag_weights(_floats(arrays["weights"], (-1,)), T)
            self.priors_ = _floats(arrays["priors"], (T,))
            self.calibration_ = _floats(arrays["calibration"], (T, 2))
            self.thresholds_ = _floats(arrays["thresholds"], (T,))
            P = arrays.get("prototypes")
            self.prototypes_ = (
                None
                if P is None
                else np.asarray(P, dtype=np.float32).reshape(T, self.n_features_in_)
            )
            self.tfidf_: _Tfidf | None = None
            if "vocabulary" in arrays:
                vocabulary = np.asarray(arrays["vocabulary"])
                if vocabulary.dtype.kind != "U":
                    raise ValueError("vocabulary is not text")
                V = len(vocabulary)
                lo, hi = (int(v) for v in np.asarray(arrays["ngram_range"]).reshape(2))
                self.tfidf_ = _Tfidf(
                    vocabulary,
                    _floats(arrays["idf"], (V,)),
                    str(np.asarray(arrays["token_pattern"]).reshape(())),
                    bool(np.asarray(arrays["lowercase"]).reshape(())),
                    (lo, hi),
                    bool(np.asarray(arrays["sublinear_tf"]).reshape(())),
                )
                self.lex_coef_ = _floats(arrays["lex_coef"], (T, V))
                self.lex_intercept_ = _floats(arrays["lex_intercept"], (T,))
                self.has_lex_ = np.asarray(arrays["has_lex"], dtype=bool).reshape(T)
        except (KeyError, ValueError, TypeError, re.error) as exc:
            raise TropemlError(f"head arrays are incomplete or malformed ({exc})") from None

    @classmethod
    def from_arrays(cls, arrays: dict[str, NDArray[Any]]) -> ArrayHead:
        """Build the head from :func:`export_arrays`'s arrays."""
        return cls(arrays)

    @classmethod
    def load(cls, path: str | Path) -> ArrayHead:
        """Load ``head.npz`` (no pickles: object arrays are refused).

        Raises:
            TropemlError: If the file is unreadable, holds objects, or is malformed.
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except Exception as exc:
            raise TropemlError(f"{path}: cannot load head arrays ({type(exc).__name__})") from None
        version = arrays.pop("version", None)
        if version is None or int(np.asarray(version).reshape(())) > HEAD_ARRAYS_VERSION:
            raise TropemlError(f"{path}: head arrays of an unknown version")
        try:
            return cls(arrays)
        except TropemlError as exc:
            raise TropemlError(f"{path}: {exc}") from None

    @property
    def uses_texts(self) -> bool:
        """Whether prediction needs the passages' texts (the lexical view)."""
        return self.tfidf_ is not None

    def views(self, X: NDArray[Any], texts: Sequence[str] | None) -> NDArray[np.float64]:
        """Score every view, shape ``(3, n, T)``; NaN where a tag lacks that view."""
        n, T = X.shape[0], len(self.classes_)
        out = np.full((3, n, T), np.nan)
        if self.emb_basis_ is not None:
            emb = rbf_view(X, self.emb_basis_, self.emb_dual_, self.emb_intercept_, self.emb_gamma_)
        else:
            emb = X @ self.emb_coef_.T + self.emb_intercept_
        out[EMB][:, self.has_emb_] = emb[:, self.has_emb_]
        if self.tfidf_ is not None and texts is not None:
            lex = np.zeros((n, T))
            for start in range(0, n, LEXICAL_BLOCK):  # bounds memory on long works
                rows, cols, values = self.tfidf_.transform(texts[start : start + LEXICAL_BLOCK])
                if rows.size:
                    first = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
                    parts = values[:, None] * self.lex_coef_[:, cols].T  # (nnz, T)
                    lex[start + rows[first]] = np.add.reduceat(parts, first, axis=0)
            lex += self.lex_intercept_
            out[LEX][:, self.has_lex_] = lex[:, self.has_lex_]
        if self.prototypes_ is not None:
            out[PROTO] = prototype_view(X, self.prototypes_)
        return out

    def decision_function(
        self, X: ArrayLike, texts: Sequence[str] | None = None
    ) -> NDArray[np.float64]:
        """Return uncalibrated per-tag scores (logit scale), shape ``(n, T)``.

        Args:
            X: Passage embeddings, shape ``(n, d)``.
            texts: The passages' texts, required when the head has a lexical view.
        """
        X_ = np.asarray(X, dtype=np.float32)
        if X_.ndim != 2 or X_.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has shape {X_.shape}, but the classifier expects (n, {self.n_features_in_})"
            )
        if texts is not None:
            texts = list(texts)
            if len(texts) != X_.shape[0] or not all(isinstance(t, str) for t in texts):
                raise ValueError(f"texts must be {X_.shape[0]} strings, one per row of X")
        elif self.tfidf_ is not None:
            raise ValueError("this classifier reads passage texts too: pass texts=")
        views = self.views(X_, texts)
        return combine_views(views, self.scale_, self.weights_, self.priors_)

    def predict_proba(
        self, X: ArrayLike, texts: Sequence[str] | None = None
    ) -> NDArray[np.float64]:
        """Return calibrated per-tag probabilities, shape ``(n, T)``."""
        raw = self.decision_function(X, texts)
        return sigmoid(raw * self.calibration_[:, 0] + self.calibration_[:, 1])

    def predict(self, X: ArrayLike, texts: Sequence[str] | None = None) -> NDArray[np.int8]:
        """Return 0/1 tag decisions per passage, shape ``(n, T)``."""
        return (self.predict_proba(X, texts) >= self.thresholds_).astype(np.int8)


def _floats(a: Any, shape: tuple[int, ...], keep_dtype: bool = False) -> NDArray[Any]:
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"expected numbers, got {arr.dtype}")
    keep = keep_dtype and arr.dtype in (np.float32, np.float64)
    return np.asarray(arr, dtype=arr.dtype if keep else np.float64).reshape(shape)
