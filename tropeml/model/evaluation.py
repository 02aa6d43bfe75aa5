"""Honest evaluation: cross-validation grouped by work, per-tag metrics with support."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import clone
from sklearn.metrics import average_precision_score, precision_recall_fscore_support

from tropeml.model.classifier import UNKNOWN, TropeClassifier
from tropeml.model.rollup import pool_scores

MIN_SUPPORT = 3
"""Fewest test positives for a tag's numbers to mean something."""


def nan_to_none(values: dict[str, Any]) -> dict[str, Any]:
    """Return ``values`` with NaN floats replaced by ``None`` (NaN is not valid JSON)."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


@dataclass(frozen=True)
class TagMetrics:
    """Cross-validated metrics of one tag (passage level)."""

    tag: str
    support: int
    n_test: int
    precision: float
    recall: float
    f1: float
    average_precision: float
    note: str = ""

    @property
    def enough_data(self) -> bool:
        """Whether the numbers are worth reading."""
        return not self.note


@dataclass(frozen=True)
class WorkCheck:
    """Work-level view of one held-out work."""

    work: str
    true_tags: list[str]
    predicted_tags: list[str]

    @property
    def missed(self) -> list[str]:
        """Tags labelled in the work that the rolled-up prediction missed."""
        return [t for t in self.true_tags if t not in self.predicted_tags]

    @property
    def extra(self) -> list[str]:
        """Tags predicted for the work that no label supports."""
        return [t for t in self.predicted_tags if t not in self.true_tags]


@dataclass
class EvalReport:
    """The result of :func:`leave_one_work_out`."""

    tags: list[TagMetrics]
    works: list[WorkCheck] = field(default_factory=list)
    n_folds: int = 0
    scheme: str = "leave-one-work-out"

    def macro(self) -> dict[str, float]:
        """Return macro averages over the tags with enough data."""
        rows = [t for t in self.tags if t.enough_data]
        if not rows:
            return {"precision": math.nan, "recall": math.nan, "f1": math.nan, "ap": math.nan}
        return {
            "precision": float(np.mean([t.precision for t in rows])),
            "recall": float(np.mean([t.recall for t in rows])),
            "f1": float(np.mean([t.f1 for t in rows])),
            "ap": float(np.mean([t.average_precision for t in rows])),
        }

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (metrics that mean nothing are ``None``, not NaN)."""
        return {
            "scheme": self.scheme,
            "n_folds": self.n_folds,
            "macro": nan_to_none(self.macro()),
            "tags": [nan_to_none(asdict(t)) for t in self.tags],
            "works": [asdict(w) for w in self.works],
        }

    def to_markdown(self) -> str:
        """Return the per-tag table (and the work-level view) as Markdown."""
        lines = [
            "| tag | support | precision | recall | F1 | AP |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for t in self.tags:
            if t.enough_data:
                lines.append(
                    f"| {t.tag} | {t.support} | {t.precision:.2f} | {t.recall:.2f} | "
                    f"{t.f1:.2f} | {t.average_precision:.2f} |"
                )
            else:
                lines.append(f"| {t.tag} | {t.support} | {t.note} | | | |")
        m = self.macro()
        lines.append(
            f"| **macro** (tags with enough data) | | {m['precision']:.2f} | {m['recall']:.2f} | "
            f"{m['f1']:.2f} | {m['ap']:.2f} |"
        )
        if self.works:
            lines += ["", "| held-out work | labelled tags | missed | extra |", "|---|---|---|---|"]
            for w in self.works:
                lines.append(
                    f"| {w.work} | {len(w.true_tags)} | {', '.join(w.missed) or '-'} | "
                    f"{', '.join(w.extra) or '-'} |"
                )
        return "\n".join(lines)


def leave_one_work_out(
    estimator: TropeClassifier,
    X: ArrayLike,
    Y: ArrayLike,
    groups: ArrayLike,
    test_mask: ArrayLike | None = None,
    top_k: int = 2,
    texts: Sequence[str] | None = None,
) -> EvalReport:
    """Cross-validate by work: each test work's passages are never in its training fold.

    Every distinct group among the rows in ``test_mask`` is held out once; the estimator
    (cloned) is fitted on all other rows, including rows outside ``test_mask`` (e.g.
    hand-written exemplars, which are therefore never tested against themselves), and its
    thresholds are chosen by its own inner grouped CV. Scores are pooled across folds.

    Args:
        estimator: An unfitted or fitted :class:`TropeClassifier` (it is cloned).
        X: Embeddings, shape ``(n, d)``.
        Y: Labels, shape ``(n, T)`` (1, 0, or -1 unknown).
        groups: Work id per row, shape ``(n,)``.
        test_mask: Rows that may be tested, shape ``(n,)`` (default: all).
        top_k: Passages pooled for the work-level view.
        texts: Row texts for the classifier's lexical view (``None``: none).

    Returns:
        Per-tag metrics (``note`` says "not enough data" where numbers mean nothing).
    """
    groups_ = np.asarray(groups)
    mask = _mask(test_mask, len(groups_))
    folds = [[g] for g in dict.fromkeys(groups_[mask])]
    scores, decisions, works = _out_of_fold(estimator, X, Y, groups_, mask, folds, top_k, texts)
    rows = _metrics(_tags(estimator, np.asarray(Y)), Y, scores, decisions, mask)
    return EvalReport(tags=rows, works=works, n_folds=len(folds))


def grouped_kfold(
    estimator: TropeClassifier,
    X: ArrayLike,
    Y: ArrayLike,
    groups: ArrayLike,
    test_mask: ArrayLike | None = None,
    n_splits: int = 5,
    repeats: int = 3,
    random_state: int = 0,
    texts: Sequence[str] | None = None,
) -> EvalReport:
    """Repeated k-fold cross-validation over groups (works never straddle folds).

    The groups of the rows in ``test_mask`` are shuffled into ``n_splits`` folds, ``repeats``
    times with different shuffles; rows outside ``test_mask`` are always training data.
    Per-tag metrics are averaged over the repeats.

    Args:
        estimator: A :class:`TropeClassifier` (cloned for each fold).
        X: Embeddings, shape ``(n, d)``.
        Y: Labels, shape ``(n, T)``.
        groups: Work id per row, shape ``(n,)``.
        test_mask: Rows that may be tested, shape ``(n,)`` (default: all).
        n_splits: Folds per repeat.
        repeats: Repeats with different shuffles.
        random_state: Seed of the shuffles.
        texts: Row texts for the classifier's lexical view (``None``: none).
    """
    groups_ = np.asarray(groups)
    mask = _mask(test_mask, len(groups_))
    Y_ = np.asarray(Y, dtype=np.int8)
    tags = _tags(estimator, Y_)
    rng = np.random.default_rng(random_state)
    unique = np.array(list(dict.fromkeys(groups_[mask])), dtype=object)
    k = max(2, min(n_splits, len(unique)))
    per_repeat: list[list[TagMetrics]] = []
    for _ in range(repeats):
        order = unique[rng.permutation(len(unique))]
        folds = [list(order[i::k]) for i in range(k)]
        scores, decisions, _ = _out_of_fold(estimator, X, Y_, groups_, mask, folds, 2, texts)
        per_repeat.append(_metrics(tags, Y_, scores, decisions, mask))
    rows = [_average([rep[j] for rep in per_repeat]) for j in range(len(tags))]
    scheme = f"grouped {k}-fold CV x {repeats} repeats"
    return EvalReport(tags=rows, works=[], n_folds=k * repeats, scheme=scheme)


def _rows(texts: Sequence[str] | None, mask: NDArray[np.bool_]) -> list[str] | None:
    return None if texts is None else [t for t, m in zip(texts, mask, strict=True) if m]


def _mask(test_mask: ArrayLike | None, n: int) -> NDArray[np.bool_]:
    return np.ones(n, bool) if test_mask is None else np.asarray(test_mask, bool)


def _tags(estimator: TropeClassifier, Y: NDArray[Any]) -> list[str]:
    return [str(t) for t in (estimator.tags or range(Y.shape[1]))]


def _out_of_fold(
    estimator: TropeClassifier,
    X: ArrayLike,
    Y: ArrayLike,
    groups: NDArray[Any],
    mask: NDArray[np.bool_],
    folds: list[list[Any]],
    top_k: int,
    texts: Sequence[str] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.int8], list[WorkCheck]]:
    """Fit a clone per fold (its groups held out) and score the fold's test rows."""
    X_ = np.asarray(X, dtype=np.float32)
    Y_ = np.asarray(Y, dtype=np.int8)
    tags = _tags(estimator, Y_)
    scores = np.full(Y_.shape, np.nan)
    decisions = np.zeros(Y_.shape, dtype=np.int8)
    works: list[WorkCheck] = []
    for fold in folds:
        held = np.isin(groups, np.array(fold, dtype=groups.dtype))
        test, train = mask & held, ~held
        model = clone(estimator).fit(
            X_[train], Y_[train], groups=groups[train], texts=_rows(texts, train)
        )
        test_texts = _rows(texts, test)
        proba = model.predict_proba(X_[test], test_texts)
        # AP ranks by the raw score: calibration is a per-fold monotone map, and pooled
        # over folds its fold-to-fold differences would count as ranking errors.
        scores[test] = model.decision_function(X_[test], test_texts)
        decisions[test] = proba >= model.thresholds_
        if len(fold) == 1:  # one work held out: also compare work-level tags
            known = Y_[test] != UNKNOWN
            true = [t for j, t in enumerate(tags) if (Y_[test][:, j][known[:, j]] == 1).any()]
            pooled = pool_scores(proba, top_k)
            pred = [t for j, t in enumerate(tags) if pooled[j] >= model.thresholds_[j]]
            works.append(WorkCheck(work=str(fold[0]), true_tags=true, predicted_tags=pred))
    return scores, decisions, works


def _metrics(
    tags: list[str],
    Y: ArrayLike,
    scores: NDArray[np.float64],
    decisions: NDArray[np.int8],
    mask: NDArray[np.bool_],
) -> list[TagMetrics]:
    Y_ = np.asarray(Y, dtype=np.int8)
    return [
        _tag_metrics(t, Y_[:, j], scores[:, j], decisions[:, j], mask) for j, t in enumerate(tags)
    ]


def _average(rows: list[TagMetrics]) -> TagMetrics:
    first = rows[0]
    if not first.enough_data:
        return first
    return TagMetrics(
        tag=first.tag,
        support=first.support,
        n_test=first.n_test,
        precision=float(np.mean([r.precision for r in rows])),
        recall=float(np.mean([r.recall for r in rows])),
        f1=float(np.mean([r.f1 for r in rows])),
        average_precision=float(np.mean([r.average_precision for r in rows])),
    )


def _tag_metrics(
    tag: str, y: NDArray[Any], s: NDArray[Any], d: NDArray[Any], mask: NDArray[Any]
) -> TagMetrics:
    keep = mask & (y != UNKNOWN) & ~np.isnan(s)
    y, s, d = y[keep], s[keep], d[keep]
    support = int((y == 1).sum())
    if support < MIN_SUPPORT or support == y.size:
        note = "not enough data" if support < MIN_SUPPORT else "no negatives"
        return TagMetrics(tag, support, int(y.size), math.nan, math.nan, math.nan, math.nan, note)
    p, r, f, _ = precision_recall_fscore_support(
        y, d, average="binary", pos_label=1, zero_division=0
    )
    ap = average_precision_score(y, s)
    return TagMetrics(tag, support, int(y.size), float(p), float(r), float(f), float(ap))
