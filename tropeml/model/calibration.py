"""Per-tag calibration of the classifier's summed views: scaling, Platt, thresholds."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression

from tropeml.model.head import sigmoid as _sigmoid


def scale_views(views: NDArray[Any], known: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Per view and tag, the mean and standard deviation of the scores, shape ``(3, T, 2)``.

    Only rows whose label for the tag is known count (all rows for a tag with none). NaN
    where a tag lacks the view; a spread of zero becomes 1.
    """
    known = known | ~known.any(axis=0)
    masked = np.where(known[None], views, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: the tag lacks the view
        mean = np.nanmean(masked, axis=1)
        std = np.nanstd(masked, axis=1)
    std = np.where(np.isnan(std) | (std > 1e-12), std, 1.0)
    return np.stack([mean, std], axis=-1).astype(np.float64)


def null_threshold(raw: NDArray[Any], y: NDArray[Any], keep_out: float = 0.95) -> float:
    """A threshold that passes ``1 - keep_out`` of a tag's non-positive rows (uncalibrated).

    For tags with too few positives to calibrate: rows labelled 0 (or every non-positive
    row when none is) stand in for the null, so the tag cannot fire on half the passages.
    """
    scores = raw[~np.isnan(raw) & (y == 0)]
    if scores.size == 0:
        scores = raw[~np.isnan(raw) & (y != 1)]
    if scores.size == 0:
        return 0.5
    return float(np.nextafter(_sigmoid(np.quantile(scores, keep_out)), np.inf))


STACK_MIN_POSITIVES = 20
"""Fewest positives (and negatives) a tag needs for learned view weights: with fewer, the
stacker's weights swing from fold to fold and the fixed ones are safer."""


def stack_weights(
    z: NDArray[Any], y: NDArray[Any], fixed: NDArray[Any], C: float
) -> NDArray[np.float64]:
    """One tag's view weights, learned from its standardised out-of-fold view scores.

    A balanced logistic regression on the views (a stacker) weighs each view by how well it
    separates the tag's labelled rows once the others are counted; negative weights are
    clipped to 0. Views whose fixed weight is 0 stay off, and a view the tag lacks (NaN)
    gets 0. With too few rows the fixed weights are kept.

    Args:
        z: Standardised view scores of the rows with a known label, shape ``(3, n)``.
        y: Their 0/1 labels, shape ``(n,)``.
        fixed: The fixed weights, shape ``(3,)``.
        C: Inverse regularisation strength of the stacker.

    Returns:
        Shape ``(3,)``.
    """
    y = np.asarray(y)
    used = (np.asarray(fixed) > 0) & ~np.all(np.isnan(z), axis=1)
    too_few = min((y == 1).sum(), (y == 0).sum()) < STACK_MIN_POSITIVES
    if too_few or not used.any():
        return np.asarray(fixed, dtype=np.float64)
    features = np.nan_to_num(np.asarray(z, dtype=np.float64)[used].T)
    model = LogisticRegression(C=C, class_weight="balanced", max_iter=1000).fit(features, y)
    out = np.zeros(3)
    out[used] = np.maximum(model.coef_[0], 0.0)
    return out if out.any() else np.asarray(fixed, dtype=np.float64)


def platt(raw: NDArray[Any], y: NDArray[Any]) -> list[float]:
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
