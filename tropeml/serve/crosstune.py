"""Refit the cross tags of a work calibrator on judged works (part of ``tropeml tune``).

A cross tag (:class:`~tropeml.model.workcal.CrossScore`) is scored from every tag's score of
the work (or from its ending) and decided by its floor alone, so after the base scores are
refitted, its regression is refitted on them (:func:`~tropeml.model.workcal.fit_cross`) and
its floor is chosen like an alpha: the lowest of :data:`FLOOR_GRID` whose false-tag rate on
the judged works meets the target (:func:`~tropeml.serve.targets.meets`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from tropeml.model.workcal import WorkCalibrator, fit_cross
from tropeml.serve.targets import Kinds, meets

FLOOR_GRID = tuple(round(0.01 * i, 2) for i in range(1, 100))
"""Floors a cross tag's is chosen from (0.01 ... 0.99)."""


@dataclass(frozen=True)
class CrossChoice:
    """A cross tag's floor, with what its cross score finds on the judged works."""

    tag: str
    reads: str
    before: float
    floor: float
    found: int
    shown: int
    false: int
    trope_free: int


def choose_floor(score: NDArray[np.float64], y: NDArray[np.int_], tag: str, kinds: Kinds) -> float:
    """The lowest floor of :data:`FLOOR_GRID` at which ``score`` meets ``tag``'s target.

    Args:
        score: Each work's cross score, shape ``(works,)``.
        y: Judgments, shape ``(works,)``: 1, 0 or -1.
        tag: The tag id (sets the target).
        kinds: Each work's kind (:func:`~tropeml.serve.targets.meets`).
    """
    return next((f for f in FLOOR_GRID if meets(score >= f, y, tag, kinds)), FLOOR_GRID[-1])


def refit_cross(
    calibrator: WorkCalibrator,
    features: NDArray[np.float64],
    tags: Sequence[str],
    judged: dict[str, NDArray[np.int_]],
    kinds: Sequence[str],
    only: Sequence[str] | None = None,
    ending: NDArray[np.float64] | None = None,
) -> tuple[WorkCalibrator, list[CrossChoice]]:
    """Refit ``calibrator``'s cross tags (those of ``only``, if given) and choose their floors.

    A cross tag keeps what it reads (:attr:`~tropeml.model.workcal.CrossScore.reads`) and
    its inputs: the tags it has weights for, or every tag if it has none yet.

    Args:
        calibrator: The calibrator, its base scores already fitted.
        features: Each work's :func:`evidence_features`, shape ``(works, T, len(FEATURES))``.
        tags: The model's ``T`` tag ids.
        judged: Per tag, each work's judgment (:func:`judged`), shape ``(works,)``.
        kinds: Each work's kind.
        only: The tags to refit; ``None``: every cross tag.
        ending: Each work's :func:`~tropeml.model.workcal.ending_evidence`, shape
            ``(works, T)``; needed for a cross tag that reads the ending.
    """
    base = np.array([calibrator.predict(f, tags) for f in features])
    cross, floors, out = dict(calibrator.cross), dict(calibrator.floors), []
    for tag, old in calibrator.cross.items():
        y = judged.get(tag)
        if y is None or (only is not None and tag not in only) or len(set(y[y >= 0])) < 2:
            continue
        m = y >= 0
        end = None if ending is None else ending[m]
        cross[tag] = fit_cross(base[m], tags, y[m], old.reads, end, list(old.weights) or None)
        score = cross[tag].predict(base, tags, ending)
        floor = choose_floor(score[m], y[m], tag, np.asarray(kinds)[m])
        fire = score >= floor
        before = calibrator.floor_of(tag)
        floors[tag] = floor
        out.append(
            CrossChoice(
                tag,
                old.reads,
                before,
                floor,
                int((fire & (y == 1)).sum()),
                int((y == 1).sum()),
                int((fire & (y == 0)).sum()),
                int((y == 0).sum()),
            )
        )
    return replace(calibrator, cross=cross, floors=floors), out
