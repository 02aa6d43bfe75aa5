"""Roll passage scores up to work-level scores, prominence and evidence."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tropeml.core.taxonomy import Taxonomy
from tropeml.core.types import Evidence, Passage, TagResult
from tropeml.model.workcal import WorkCalibrator


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


def tag_results(
    scores: NDArray[np.float64],
    work_scores: NDArray[np.float64],
    passages: Sequence[Passage],
    tags: Sequence[str],
    thresholds: NDArray[np.float64],
    work_thresholds: NDArray[np.float64],
    taxonomy: Taxonomy,
    max_evidence: int = 3,
    fired: NDArray[np.bool_] | None = None,
    evidence_from: NDArray[np.int_] | None = None,
) -> tuple[TagResult, ...]:
    """The work's tags, best first: each tag whose work score reaches its work threshold.

    With ``fired``, the tags it marks instead (a model whose score is not all that decides:
    :mod:`tropeml.model.workcal`); their ``threshold`` is the work threshold where it is
    positive (a floor the score must also reach), else ``None``.

    Args:
        scores: Passage scores, shape ``(n, T)``.
        work_scores: Work scores, shape ``(T,)``.
        passages: The ``n`` passages.
        tags: The ``T`` tag ids.
        thresholds: Passage thresholds (evidence and prominence), shape ``(T,)``.
        work_thresholds: Work thresholds, shape ``(T,)``.
        taxonomy: Names and spoiler flags.
        max_evidence: Evidence passages kept per tag.
        fired: The tags the work gets, shape ``(T,)`` (default: score over threshold).
        evidence_from: Per tag, the first passage its evidence may come from, shape ``(T,)``
            (default 0: any; a tag read from the work's ending shows passages of the ending).
    """
    if not len(passages):
        return ()
    prom = prominence(scores, thresholds, [p.end - p.start for p in passages])
    out = []
    for j, tag in enumerate(tags):
        if not (work_scores[j] >= work_thresholds[j] if fired is None else fired[j]):
            continue
        lo = 0 if evidence_from is None else int(evidence_from[j])
        evidence = tuple(
            Evidence(
                start=passages[i].start,
                end=passages[i].end,
                score=float(scores[i, j]),
                text=passages[i].text,
                chapter=passages[i].chapter,
            )
            for i in (
                lo + k for k in evidence_order(scores[lo:, j], float(thresholds[j]), max_evidence)
            )
        )
        trope = taxonomy.get(tag)
        out.append(
            TagResult(
                id=tag,
                name=trope.name if trope else tag,
                score=float(work_scores[j]),
                threshold=None
                if fired is not None and work_thresholds[j] <= 0
                else float(work_thresholds[j]),
                prominence=float(prom[j]),
                evidence=evidence,
                spoiler=bool(trope and trope.spoiler),
            )
        )
    # best first; scores equal to 6 decimals (often 1.0: evidence far beyond chance) keep the
    # model's tag order, so float rounding in how passages were batched never reorders them
    return tuple(sorted(out, key=lambda t: -round(t.score, 6)))


def rollup_settings(rollup: dict[str, Any], tags: Sequence[str]) -> dict[str, Any]:
    """:class:`~tropeml.serve.tagger.Tagger` keyword arguments from a config's ``rollup``.

    A ``"chance"`` roll-up (:mod:`tropeml.model.decision`) gives the null (per-tag location
    and scale, in ``tags`` order), the aimed false-tag rates, the evidence rank and, where
    the config has one, the work-score calibration (``calibration``: one intercept and
    slope; ``calibrator``: a :class:`~tropeml.model.workcal.WorkCalibrator`); any other is
    tropeml 0.1's mean of the ``top_k`` best passages.
    """
    out: dict[str, Any] = {
        "top_k": int(rollup.get("top_k", 2)),
        "max_evidence": int(rollup.get("max_evidence", 3)),
    }
    if rollup.get("method") == "chance":
        null = rollup["null"]
        out["null"] = ([null["mu"][t] for t in tags], [null["sigma"][t] for t in tags])
        out["alpha"] = {k: float(v) for k, v in rollup.get("alpha", {}).items()}
        out["k"] = int(rollup.get("k", 1))
        cal = rollup.get("calibration")
        if cal is not None:
            out["calibration"] = (float(cal["intercept"]), float(cal["slope"]))
        if rollup.get("calibrator") is not None:
            out["calibrator"] = WorkCalibrator.from_config(rollup["calibrator"])
    return out
