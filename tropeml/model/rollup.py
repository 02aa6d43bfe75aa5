"""Roll passage scores up to work-level scores, prominence and evidence."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def pool_scores(scores: ArrayLike, top_k: int = 2) -> NDArray[np.float64]:
    """Pool passage scores into work scores: the mean of each tag's ``top_k`` best passages.

    Averaging a few top passages (rather than taking the single maximum) keeps one stray
    passage from tagging a whole work, while a trope shown in one scene still counts.

    Args:
        scores: Passage probabilities, shape ``(n, T)``.
        top_k: How many best passages to average (fewer if the work is shorter).

    Returns:
        Work-level scores, shape ``(T,)``; zeros if ``n == 0``.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.shape[0] == 0:
        return np.zeros(s.shape[1] if s.ndim == 2 else 0)
    k = max(1, min(top_k, s.shape[0]))
    top = -np.sort(-s, axis=0)[:k]
    return np.asarray(top.mean(axis=0))


def prominence(scores: ArrayLike, thresholds: ArrayLike, lengths: ArrayLike) -> NDArray[np.float64]:
    """Return the share of the work's text in passages over each tag's threshold.

    Args:
        scores: Passage probabilities, shape ``(n, T)``.
        thresholds: Per-tag thresholds, shape ``(T,)``.
        lengths: Passage lengths in characters, shape ``(n,)``.

    Returns:
        Shape ``(T,)``, each in [0, 1].
    """
    s = np.asarray(scores, dtype=np.float64)
    w = np.asarray(lengths, dtype=np.float64)
    if s.shape[0] == 0 or w.sum() <= 0:
        return np.zeros(s.shape[1] if s.ndim == 2 else 0)
    over = s >= np.asarray(thresholds, dtype=np.float64)
    return np.asarray((over * w[:, None]).sum(axis=0) / w.sum())


def evidence_order(scores: ArrayLike, threshold: float, limit: int = 3) -> list[int]:
    """Return the indices of passages over ``threshold`` for one tag, best first.

    Args:
        scores: One tag's passage probabilities, shape ``(n,)``.
        threshold: The tag's threshold.
        limit: Most indices to return.
    """
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    return [int(i) for i in order[:limit] if s[i] >= threshold] or [int(i) for i in order[:1]]
