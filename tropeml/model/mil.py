"""Multiple-instance learning for works labelled only at work level (author tags).

A work tagged with a trope must show it in at least one passage. Its best-scoring passages
for that trope (by the model trained so far) become positives; its other passages, and every
trope it is not tagged with, stay unknown (``-1``), never negative. This is the only place
that chooses those passages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.base import clone

from tropeml.core.types import UNKNOWN
from tropeml.model.classifier import TropeClassifier
from tropeml.model.dataset import WorkBag
from tropeml.model.rollup import pool_scores


def mil_targets(scores: NDArray[Any], positive: Sequence[int], top_k: int = 1) -> NDArray[np.int8]:
    """Multiple-instance targets for one work known to show the tags in ``positive``.

    Args:
        scores: The work's passage scores, shape ``(n, T)``.
        positive: Columns of the tags the work shows.
        top_k: Passages made positive per tag (its best-scoring ones).

    Returns:
        Shape ``(n, T)``: 1 for each positive tag's ``top_k`` best passages, else -1.
    """
    Y = np.full(scores.shape, UNKNOWN, dtype=np.int8)
    k = max(1, min(top_k, scores.shape[0]))
    for j in positive:
        Y[np.argsort(-scores[:, j], kind="stable")[:k], j] = 1
    return Y


@dataclass
class Rows:
    """Training rows: embeddings, targets, fold groups and texts."""

    X: NDArray[np.float32]
    Y: NDArray[np.int8]
    groups: list[str]
    texts: list[str]


def stack(base: Rows, bags: Sequence[WorkBag], selected: Sequence[NDArray[np.int8]]) -> Rows:
    """The base rows plus each bag's chosen passages (those with any label)."""
    Xs, Ys, g, texts = [base.X], [base.Y], list(base.groups), list(base.texts)
    for w, Y_w in zip(bags, selected, strict=True):
        keep = (Y_w != UNKNOWN).any(axis=1)
        Xs.append(w.X[keep])
        Ys.append(Y_w[keep])
        g += [w.group] * int(keep.sum())
        texts += [c for c, k in zip(w.chunks, keep, strict=True) if k]
    return Rows(np.concatenate(Xs).astype(np.float32), np.concatenate(Ys).astype(np.int8), g, texts)


MIL_FOLDS = 5
"""Folds over the bags: a bag's positives are chosen by a model that never saw that bag."""


def fit_mil(
    clf: TropeClassifier,
    base: Rows,
    bags: Sequence[WorkBag],
    rounds: int = 2,
    top_k: int = 1,
) -> tuple[TropeClassifier, list[NDArray[np.int8]]]:
    """Fit ``clf`` (a clone) on ``base`` plus the bags, choosing bag positives out of fold.

    Each round, the bags are split into up to :data:`MIL_FOLDS` folds; a bag's passages are
    scored by a model fitted on ``base`` and the other folds' bags (with their current
    positives), so no bag chooses its own positives. Rounds stop early once no bag's choice
    changes.

    Args:
        clf: The unfitted classifier (cloned, never changed).
        base: Rows labelled at passage level.
        bags: Works labelled at work level.
        rounds: Most rounds of choosing each bag's positives.
        top_k: Passages made positive per tag and work.

    Returns:
        The model fitted on everything, and each bag's targets, shape ``(n_passages, T)``.
    """
    selected: list[NDArray[np.int8]] = [
        np.full((len(w.chunks), base.Y.shape[1]), UNKNOWN, dtype=np.int8) for w in bags
    ]
    folds = [list(range(i, len(bags), MIL_FOLDS)) for i in range(min(MIL_FOLDS, len(bags)))]
    for _ in range(max(1, rounds) if bags else 0):
        chosen = list(selected)
        for fold in folds:
            others = [i for i in range(len(bags)) if i not in fold]
            rows = stack(base, [bags[i] for i in others], [selected[i] for i in others])
            model: TropeClassifier = clone(clf).fit(
                rows.X, rows.Y, groups=rows.groups, texts=rows.texts
            )
            for i in fold:
                w = bags[i]
                chosen[i] = mil_targets(model.predict_proba(w.X, w.chunks), w.positive, top_k)
        unchanged = all(np.array_equal(a, b) for a, b in zip(chosen, selected, strict=True))
        selected = chosen
        if unchanged:
            break
    rows = stack(base, bags, selected)
    final: TropeClassifier = clone(clf).fit(rows.X, rows.Y, groups=rows.groups, texts=rows.texts)
    return final, selected


@dataclass
class WorkCheck:
    """A labelled work held out: its work tags against the model's."""

    work: str
    tags: list[str]
    predicted: list[str]

    @property
    def recovered(self) -> list[str]:
        """Return the work's tags the held-out model also predicts."""
        return [t for t in self.tags if t in self.predicted]


def work_checks(
    clf: TropeClassifier,
    base: Rows,
    bags: Sequence[WorkBag],
    tags: list[str],
    top_k: int,
    limit: int,
    rounds: int = 2,
    top_k_mil: int = 1,
) -> list[WorkCheck]:
    """Hold each labelled work out (up to ``limit``) and compare its tags with the model's.

    Everything the held-out work could influence is redone without it, multiple-instance
    selection included.
    """
    checks = []
    for i, w in enumerate(bags[:limit]):
        others = [b for b_i, b in enumerate(bags) if b_i != i]
        # the other works' positives are chosen again, by models that never see this one
        model, _ = fit_mil(clf, base, others, rounds, top_k_mil)
        pooled = pool_scores(model.predict_proba(w.X, w.chunks), top_k)
        predicted = [t for j, t in enumerate(tags) if pooled[j] >= model.thresholds_[j]]
        checks.append(WorkCheck(w.group, [tags[j] for j in w.positive], predicted))
    return checks
