"""Choose a model's work-rule alphas and score calibrator on judged works (``tropeml tune``).

The chance rule (:mod:`tropeml.model.decision`) fires a tag when a work's evidence beats
what a trope-free work of the same length shows with chance ``alpha``, and reports how
likely the work shows the tag, from a logistic regression on its evidence
(:mod:`tropeml.model.workcal`). Both are properties of one model: its passage scores and
its background null. The shipped values were chosen for the shipped model on judged works,
so a model trained on other labels or with another encoder needs its own, chosen on works
judged for its tags, by the same written rule:

- **alpha** per tag: the largest of :data:`GRID` whose false-tag rate on the judged works
  that do not show the tag is at most :func:`target` (5% for the AU tags, 10% for the
  rest), pooled and on each kind of work (public-domain, written) with enough trope-free
  works to measure it (:func:`meets`), then moved :data:`MARGIN` of the way towards the
  weakest work it finds, keeping the same works found (:func:`choose`); the rate counts
  only works of the kinds that show the tag somewhere (:func:`informative`), and the
  evidence is kept in decades so that it never saturates (:func:`work_evidence`); a model
  left without a calibration, which decides on ``1 - chance``, gets no alpha under
  :data:`UNCALIBRATED`;
- **calibrator**: :func:`~tropeml.model.workcal.fit_work_calibrator` on every judged
  (work, tag) pair's evidence at the alphas chosen; when only some tags are tuned, only
  their offsets (:func:`~tropeml.model.workcal.fit_tag_offsets`). (:func:`fit_calibration`,
  the one intercept and slope of earlier models, stays for ``benchmarks/calibration.py``.)
- **cross tags** (a calibrator's :attr:`~tropeml.model.workcal.WorkCalibrator.cross`): each
  refitted on the new scores of every tag (:func:`~tropeml.model.workcal.fit_cross`), with
  its floor chosen like an alpha: the lowest of :data:`FLOOR_GRID` whose false-tag rate
  meets the target (:func:`meets`), since the floor alone decides such a tag.

Choosing on the works one then reports on flatters the report: ``benchmarks/alpha.py``
estimates the cost on split halves, and works that chose nothing (``data/confirm``) test it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tropeml.core.errors import TropemlError
from tropeml.core.fileio import atomic_write_text
from tropeml.io.devset import DevItem
from tropeml.model.card import refresh_work_score
from tropeml.model.decision import log_chance
from tropeml.model.integrity import verified_config
from tropeml.model.persistence import CARD_FILE, CONFIG_FILE, model_lock
from tropeml.model.workcal import (
    READS,
    CrossScore,
    WorkCalibrator,
    ending_evidence,
    evidence_features,
    fit_tag_offsets,
    fit_work_calibrator,
)
from tropeml.serve.crosstune import CrossChoice, refit_cross
from tropeml.serve.deveval import score_items
from tropeml.serve.tagger import Tagger
from tropeml.serve.targets import Kinds, judged, meets

_SERIES = tuple(
    float(f"{m * 10.0**-e:.2g}") for e in range(1, 61) for m in (2, 1.5, 1, 0.7, 0.5, 0.3)
)
GRID = (0.5, 0.3, *_SERIES[:-3])
"""0.5, 0.3, then 0.2, 0.15, 0.1, 0.07, 0.05, 0.03, 0.02, ... down to 1e-60. A
coarser grid (2-1-0.5) left recall to chance on tags with few trope-free works: one step
from 0.1 to 0.05 or 0.02 could drop a third of a tag's works when the second-highest
negative sat just over a step (held out, the finer grid found 0.01 more of the shown tags on
each data set tried). The null's normal tail is far thinner than real prose's, so a tag
whose look-alikes sit outside the background (mates on wolf stories) needs a nominal alpha
far below its observed rate: A/B/O's written look-alikes reach 1e-19 while the works that
show it sit beyond 1e-38, so the grid goes as deep as the chances (kept in logs) do."""

UNCALIBRATED = 1e-15
"""The smallest alpha a model without a calibration can use: it decides on ``1 - chance``,
which float64 cannot tell from 1 for chances much under ``1e-16``."""

MARGIN = 0.25
"""How far into the gap the chosen alpha moves (see :func:`choose`)."""


def evidence(alpha: float | NDArray[np.float64]) -> NDArray[np.float64]:
    """``-log10`` of an alpha (a chance): the decades of evidence it stands for."""
    return np.asarray(-np.log10(np.clip(alpha, 1e-300, 1.0)))


def work_evidence(log_chances: NDArray[np.float64]) -> NDArray[np.float64]:
    """Decades of evidence from :func:`~tropeml.model.decision.log_chance`'s natural logs.

    A tag fires where its evidence reaches :func:`evidence` of its alpha. Unlike ``1 -
    chance``, this does not saturate at float64's ``1e-16`` near 1, so works far beyond
    their null stay ordered (the works that show mates sit 27-60 decades out).
    """
    return np.asarray(-np.asarray(log_chances, dtype=np.float64) / np.log(10.0))


def choose(
    ev: NDArray[np.float64],
    y: NDArray[np.int_],
    tag: str,
    margin: float = MARGIN,
    kinds: Kinds = None,
) -> float:
    """The alpha for ``tag``: met target, then a margin inside the gap the works leave.

    First the largest alpha of the grid whose false-tag rate on these works meets the target
    (the *edge*). Every stricter alpha down to the weakest positive the edge finds keeps the
    same positives and fires on no more negatives, so the alpha chosen moves ``margin`` of
    that gap (in ``-log10`` alpha) away from the edge: the grid alpha nearest that point
    among those that still find the same positives. At the edge, the threshold sits just
    over the last negative allowed, and on new works it overshoots the target (held out,
    mates and A/B/O 0.06 against 5%); a quarter of the gap keeps in-sample recall and
    brings them under it (``benchmarks/results/alpha.md``, whose last line is the edge).

    Args:
        ev: Work evidence in decades (:func:`work_evidence`), shape ``(works,)``; a work
            fires at alpha ``a`` when ``ev >= evidence(a)``.
        y: Judgments, shape ``(works,)``: 1 shows the tag, 0 does not, -1 unknown.
        tag: The tag id (sets the target).
        margin: Share of the gap to move; 0 keeps the edge.
        kinds: Each work's kind: the target must also hold on each kind (:func:`meets`).
    """
    edge = next((a for a in GRID if meets(ev >= evidence(a), y, tag, kinds)), GRID[-1])
    found = ev[(y == 1) & (ev >= evidence(edge))]
    if margin <= 0 or not len(found):
        return edge
    weakest = float(found.min())
    aim = evidence(edge) + margin * (weakest - evidence(edge))
    same = [a for a in GRID if a <= edge and evidence(a) <= weakest]
    return min(same, key=lambda a: abs(evidence(a) - aim))


def fit_calibration(d: NDArray[np.float64], y: NDArray[np.int_]) -> tuple[float, float]:
    """``(intercept, slope)`` of the logistic regression of ``y`` on ``d`` (unpenalised).

    Args:
        d: Decades beyond each pair's alpha (:func:`tropeml.model.decision.beyond`),
            shape ``(pairs,)``.
        y: 1 if the pair's work shows its tag, else 0, shape ``(pairs,)``.
    """
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e12).fit(d[:, None], y)
    return float(model.intercept_[0]), float(model.coef_[0, 0])


@dataclass(frozen=True)
class TagChoice:
    """One tag's alpha, before and after, with what it finds on the judged works."""

    tag: str
    before: float
    alpha: float
    found: int
    shown: int
    false: int
    trope_free: int


@dataclass(frozen=True)
class Tuning:
    """The alphas and calibration chosen for a model, and the works they were chosen on."""

    choices: list[TagChoice]
    calibrator: WorkCalibrator | None
    calibrator_before: WorkCalibrator | None
    works: int
    pairs: int
    crossed: list[CrossChoice] = field(default_factory=list)

    @property
    def alphas(self) -> dict[str, float]:
        """The chosen alpha of each tag tuned."""
        return {c.tag: c.alpha for c in self.choices}


def tune(
    tagger: Tagger,
    items: Sequence[DevItem],
    only: Sequence[str] | None = None,
    floor: float | None = None,
    cross: Sequence[str] = (),
    reads: str = "work",
    inputs: Sequence[str] | None = None,
    sure: float | None = None,
) -> Tuning:
    """Choose alphas (:func:`choose`) and then the score calibrator for ``tagger`` on ``items``.

    Each tag's target must hold pooled and on each kind of work (:func:`meets`).

    A tag counts where any work judges it (works that do not judge it leave it unknown).
    Tags the model lacks, tags no work is judged not to show, and tags not in ``only`` (when
    given) keep their alpha. Without ``only``, the calibrator is fitted anew with every
    judged tag; with ``only``, only those tags' offsets are refitted
    (:func:`~tropeml.model.workcal.fit_tag_offsets`), so the other tags' scores stay as
    they were (a model without a calibrator gets one fitted anew). The model's calibrator
    is kept (``None`` if it has none) when the judged pairs do not hold both works that
    show their tag and works that do not. Floors are decision rules, never fitted: the
    calibrator's are kept, unless ``floor`` is given, which becomes the floor of the tags of
    ``only`` (or, without ``only``, the shared floor); so are sure scores, unless ``sure`` is
    given, which becomes the sure score of the tags of ``only`` (or of every tag). The
    calibrator's cross tags, and the
    tags of ``cross`` (made cross tags here, or made anew, reading ``reads`` of the tags
    ``inputs``, all by default), are refitted and given the lowest floor that meets their target
    (:func:`~tropeml.serve.crosstune.refit_cross`).

    Raises:
        TropemlError: If the model has no background null (nothing to choose), no works, or
            ``floor`` or ``sure`` is given to a model left without a calibrator.
    """
    if tagger.null is None:
        raise TropemlError(
            "this model has no background null, so it has no alphas to tune "
            "(train it with a data folder that has background/)"
        )
    if not items:
        raise TropemlError("no judged works to tune on")
    mu, sigma = tagger.null
    scored = score_items(tagger, items)
    log_c = np.array([log_chance(s.scores, mu, sigma, tagger.k) for s in scored])
    E = work_evidence(log_c)
    col = {t: j for j, t in enumerate(tagger.tags)}
    J = judged([s.item for s in scored], [t for t in col if any(t in i.judgments for i in items)])
    kinds = [s.item.kind for s in scored]

    def pick(floor: float) -> tuple[NDArray[np.float64], list[TagChoice]]:
        alpha, choices = tagger.alpha.copy(), []
        for t, y in J.items():
            j = col[t]
            if (y == 0).any() and (only is None or t in only):
                alpha[j] = max(choose(E[:, j], y, t, kinds=kinds), floor)
            fire = E[:, j] >= evidence(alpha[j])
            choices.append(
                TagChoice(
                    t,
                    float(tagger.alpha[j]),
                    float(alpha[j]),
                    int((fire & (y == 1)).sum()),
                    int((y == 1).sum()),
                    int((fire & (y == 0)).sum()),
                    int((y == 0).sum()),
                )
            )
        return alpha, choices

    alpha, choices = pick(0.0)
    rows, pair_tags, y_pairs, per_work, endings = [], [], [], [], []
    for s in scored:
        if not len(s.scores):
            continue
        features = evidence_features(s.scores, mu, sigma, alpha)
        per_work.append(features)
        endings.append(ending_evidence(s.scores, mu, sigma))
        for c in choices:
            if s.item.judgments.get(c.tag, -1) >= 0:
                rows.append(features[col[c.tag]])
                pair_tags.append(c.tag)
                y_pairs.append(s.item.judgments[c.tag])
    before = tagger.calibrator
    fitted = before
    if 0 < sum(y_pairs) < len(y_pairs):
        X, y = np.array(rows), np.array(y_pairs)
        if only is not None and before is not None:
            fitted = fit_tag_offsets(before, X, pair_tags, y, only)
        else:
            fitted = fit_work_calibrator(X, pair_tags, y)
            if before is not None:  # decision rules (floors, sure scores, cross tags) stay
                fitted = replace(
                    before, intercept=fitted.intercept, weights=fitted.weights, tags=fitted.tags
                )
    if fitted is None and tagger.calibration is None:
        # its decisions compare 1 - chance, which is 1.0 beyond UNCALIBRATED
        _, choices = pick(UNCALIBRATED)
    for name, value in (("floor", floor), ("sure score", sure), ("cross tag", cross or None)):
        if value is not None and fitted is None:
            raise TropemlError(f"a {name} needs a score calibrator, and this model has none")
    if fitted is not None:
        if floor is not None:
            if only is None:
                fitted = replace(fitted, floor=floor)
            else:
                fitted = replace(fitted, floors={**fitted.floors, **dict.fromkeys(only, floor)})
        if sure is not None:
            fitted = replace(
                fitted, sure={**fitted.sure, **dict.fromkeys(only or tagger.tags, sure)}
            )
        if cross:
            start = CrossScore(0.0, dict.fromkeys(inputs or (), 0.0), reads)
            fitted = replace(fitted, cross={**fitted.cross, **dict.fromkeys(cross, start)})
            only = None if only is None else [*only, *cross]
    crossed: list[CrossChoice] = []
    if fitted is not None and fitted.cross:
        has = np.array([len(s.scores) > 0 for s in scored])
        kept = [k for k, h in zip(kinds, has, strict=True) if h]
        J = {t: y[has] for t, y in J.items()}
        fitted, crossed = refit_cross(
            fitted, np.array(per_work), tagger.tags, J, kept, only, np.array(endings)
        )
    unfitted = sorted(set(cross) - {c.tag for c in crossed})
    if unfitted:
        raise TropemlError(
            f"cannot read {', '.join(unfitted)} from {READS[reads]}: it needs works judged to show "
            "it and works judged not to"
        )
    return Tuning(choices, fitted, before, len(items), len(y_pairs), crossed)


def write_tuning(folder: str | Path, tuning: Tuning) -> None:
    """Record ``tuning``'s alphas and calibrator in the model folder's config, atomically.

    They are the config fields left out of its content hash so that they can be edited, so
    the folder still verifies. The model card's work-score line is rewritten to match.
    """
    folder = Path(folder)
    with model_lock(folder):
        verified_config(folder)
        path = folder / CONFIG_FILE
        config = json.loads(path.read_text(encoding="utf-8"))
        rollup = config["rollup"]
        rollup["alpha"].update(tuning.alphas)
        if tuning.calibrator is not None:
            rollup["calibrator"] = tuning.calibrator.to_config()
            rollup.pop("calibration", None)  # the calibrator takes its place
        atomic_write_text(path, json.dumps(config, indent=2) + "\n")
        card = folder / CARD_FILE
        if card.is_file():
            text = card.read_text(encoding="utf-8")
            atomic_write_text(card, refresh_work_score(text, rollup))
