"""The reported work score: a logistic regression on a work's evidence, per tag.

The chance rule (:mod:`tropeml.model.decision`) decides whether a work gets a tag. What a
reader is shown beside the tag is how likely the work really shows it. A logistic function
of one number (how far the second-best passage beats the null) pooled over the tags gave
every tag the same score for the same evidence, though on fresh works shown fake_death tags
were right a third of the time and shown fluff tags six times in seven. The
:class:`WorkCalibrator` reads more of the evidence:

- ``d1..d4``: decades by which the best, second, third and fourth best passage beat a
  trope-free work of the same length at the tag's alpha (:func:`~tropeml.model.decision.beyond`;
  ``-CLIP`` where the work has fewer passages);
- the log of the number of passages;
- ``z1..z5``: the five best passage logits as z-scores against the tag's null, clipped to
  ``[-10, 30]`` (0 where the work has fewer passages): how many passages show the trope;
- the tag: one weight per tag it was fitted with (0 for any other tag).

It is fitted on judged whole works (``tropeml tune``; :func:`fit_work_calibrator`). A tag
fires when its evidence beats chance at its alpha and its score reaches the calibrator's
``floor``; with a floor of 0 the chance rule alone decides, so a tag can fire with a low
score (evidence beyond chance, of a kind that often misleads). A tag with a ``sure`` score
is also given, chance rule or not, when its score reaches it: the score reads more of the
evidence than the chance rule's second-best passage.

A tag can also be read from the whole work instead of its own passages: a *cross tag* has a
:class:`CrossScore`, a logistic regression on the scores of every tag of the work (its own
included), and is given when that score reaches its floor, without the chance rule
(:meth:`WorkCalibrator.decide`; ``tropeml tune --cross``). An *ending* cross score reads,
instead, each tag's best passage in the work's last tenth (:func:`ending_evidence`): whether
a story ends well is a matter of its last pages.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tropeml.model.decision import CLIP, beyond, log_chance, logits

RANKS = 4
"""Best passages whose ``d`` is a feature (``d1..d4``)."""
TOP_Z = 5
"""Best passage logits whose z-score is a feature (``z1..z5``)."""
Z_CLIP = (-10.0, 30.0)
"""Range the z-scores are clipped to."""
FEATURES = (
    *(f"d{i}" for i in range(1, RANKS + 1)),
    "log_passages",
    *(f"z{i}" for i in range(1, TOP_Z + 1)),
)
"""Names of the evidence features, in :func:`evidence_features`' column order."""
ENDING = 0.1
"""Share of a work's passages, counted from its end, that an ending cross score reads."""
READS = {"work": "every tag's score", "ending": "its ending"}
"""What a :class:`CrossScore` can read, with how to say it: the work's scores of every tag,
or its ending."""
C = 0.1
"""Inverse L2 strength of :func:`fit_work_calibrator` (scikit-learn's ``C``, raw features):
chosen by leaving one confirmation round out at a time (``data/confirm/README.md``, the
fifteenth test)."""


def evidence_features(
    probabilities: ArrayLike, mu: ArrayLike, sigma: ArrayLike, alpha: ArrayLike
) -> NDArray[np.float64]:
    """The evidence features of a work for every tag.

    Args:
        probabilities: The work's passage probabilities, shape ``(n, T)``, ``n >= 1``.
        mu: Null location per tag, shape ``(T,)``.
        sigma: Null scale per tag, shape ``(T,)``.
        alpha: Per-tag alpha, shape ``(T,)``.

    Returns:
        Shape ``(T, len(FEATURES))``, columns as :data:`FEATURES`.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    n, T = p.shape
    m, s = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    out = np.zeros((T, len(FEATURES)))
    for k in range(1, RANKS + 1):
        out[:, k - 1] = beyond(log_chance(p, m, s, k), alpha) if n >= k else -CLIP
    out[:, RANKS] = math.log(n)
    top = -np.sort(-logits(p), axis=0)[:TOP_Z]
    out[:, RANKS + 1 : RANKS + 1 + len(top)] = np.clip((top - m) / s, *Z_CLIP).T
    return out


def ending_passages(n: int) -> int:
    """How many of a work's ``n`` passages its ending is: the last :data:`ENDING`, at least 1."""
    return max(1, math.ceil(n * ENDING)) if n else 0


def ending_evidence(
    probabilities: ArrayLike, mu: ArrayLike, sigma: ArrayLike
) -> NDArray[np.float64]:
    """Each tag's best passage logit in the work's ending, as a z-score against its null.

    Args:
        probabilities: The work's passage probabilities in reading order, shape ``(n, T)``,
            ``n >= 1``.
        mu: Null location per tag, shape ``(T,)``.
        sigma: Null scale per tag, shape ``(T,)``.

    Returns:
        Shape ``(T,)``, clipped to :data:`Z_CLIP`.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    best = logits(p[-ending_passages(len(p)) :]).max(axis=0)
    return np.asarray(np.clip((best - np.asarray(mu)) / np.asarray(sigma), *Z_CLIP))


def cross_inputs(
    reads: str, base: ArrayLike, ending: ArrayLike | None = None
) -> NDArray[np.float64]:
    """What a cross score reading ``reads`` regresses on, shape ``(..., T)``.

    Args:
        reads: ``"work"``: the logits of ``base``; ``"ending"``: ``ending``.
        base: :meth:`WorkCalibrator.predict` scores, shape ``(..., T)``.
        ending: :func:`ending_evidence`, shape ``(..., T)``; needed to read the ending.
    """
    if reads == "work":
        return logits(base)
    if ending is None:
        raise ValueError("a cross score on the ending needs the work's ending evidence")
    return np.asarray(ending, dtype=np.float64)


@dataclass(frozen=True)
class CrossScore:
    """A tag's score read from every tag's score of the work, or from its ending.

    ``P = sigmoid(bias + sum over tags t of weights[t] * x[t])`` (tags not in ``weights``
    weigh 0), where ``x`` is :func:`cross_inputs`: with ``reads="work"`` the logit of each
    tag's base score (:meth:`WorkCalibrator.predict`), with ``reads="ending"`` each tag's
    :func:`ending_evidence`.
    """

    bias: float
    weights: Mapping[str, float]
    reads: str = "work"

    def __post_init__(self) -> None:
        if self.reads not in READS:
            raise ValueError(f"a cross score reads one of {tuple(READS)}, not {self.reads!r}")

    def predict(
        self, base: ArrayLike, tags: Sequence[str], ending: ArrayLike | None = None
    ) -> NDArray[np.float64]:
        """The cross score from base scores (and ending evidence) ``(..., T)``: ``(...)``."""
        w = np.array([self.weights.get(t, 0.0) for t in tags])
        x = cross_inputs(self.reads, base, ending)
        return np.asarray(1.0 / (1.0 + np.exp(-(self.bias + x @ w))))


@dataclass(frozen=True)
class WorkCalibrator:
    """``P(work shows tag) = sigmoid(intercept + weights . features + tags[tag])``.

    Attributes:
        intercept: The shared intercept.
        weights: One weight per :data:`FEATURES` entry.
        tags: Per-tag offsets (tags not in it get 0).
        floor: The least score a tag is shown with (0: the chance rule alone decides).
        floors: Per-tag floors that replace ``floor`` for their tags (:meth:`floor_of`).
        cross: Tags scored from every tag's score (:class:`CrossScore`), decided by their
            floor alone.
        sure: Per-tag scores from which a tag is shown without the chance rule.
    """

    intercept: float
    weights: tuple[float, ...]
    tags: Mapping[str, float] = field(default_factory=dict)
    floor: float = 0.0
    floors: Mapping[str, float] = field(default_factory=dict)
    cross: Mapping[str, CrossScore] = field(default_factory=dict)
    sure: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.weights) != len(FEATURES):
            raise ValueError(
                f"a work calibrator needs {len(FEATURES)} weights, got {len(self.weights)}"
            )
        crossed = (v for c in self.cross.values() for v in (c.bias, *c.weights.values()))
        values = (self.intercept, *self.weights, *self.tags.values(), *crossed)
        if not all(math.isfinite(v) for v in values):
            raise ValueError("a work calibrator's numbers must be finite")
        bars = {"floor": self.floor, **{f"floor for {t!r}": v for t, v in self.floors.items()}}
        bars |= {f"sure score for {t!r}": v for t, v in self.sure.items()}
        for name, bar in bars.items():
            if not 0.0 <= bar < 1.0:
                raise ValueError(f"a work calibrator's {name} must be in [0, 1), got {bar}")

    def floor_of(self, tag: str) -> float:
        """The least score ``tag`` is shown with: its own floor, else the shared one."""
        return self.floors.get(tag, self.floor)

    def for_tags(self, tags: Sequence[str]) -> WorkCalibrator:
        """This calibrator for a model of ``tags``: only the cross tags it can read."""
        have = set(tags)
        cross = {t: c for t, c in self.cross.items() if t in have and set(c.weights) <= have}
        return replace(self, cross=cross)

    def evidence_from(self, n: int, tags: Sequence[str]) -> NDArray[np.int_]:
        """Per tag, the first of a work's ``n`` passages its evidence is shown from, ``(T,)``.

        0 (any passage), but the first passage of the ending for a tag read from it.
        """
        ending = {t for t, c in self.cross.items() if c.reads == "ending"}
        return np.array([n - ending_passages(n) if t in ending else 0 for t in tags], dtype=int)

    def predict(self, features: ArrayLike, tags: Sequence[str]) -> NDArray[np.float64]:
        """Probabilities, shape ``(R,)``, from features of shape ``(R, len(FEATURES))``.

        Row ``i`` is for tag ``tags[i]``: a work's tags, or judged pairs of many works.
        """
        x = np.asarray(features, dtype=np.float64)
        offset = np.array([self.tags.get(t, 0.0) for t in tags])
        z = self.intercept + x @ np.asarray(self.weights) + offset
        return np.asarray(1.0 / (1.0 + np.exp(-z)))

    def predict_work(
        self, features: ArrayLike, tags: Sequence[str], ending: ArrayLike | None = None
    ) -> NDArray[np.float64]:
        """One work's scores, shape ``(T,)``, from its features, shape ``(T, len(FEATURES))``.

        :meth:`predict` for each tag, then the :attr:`cross` tags read from all of them (or
        from ``ending``, the work's :func:`ending_evidence`, shape ``(T,)``).
        """
        base = self.predict(features, tags)
        out = base.copy()
        for i, tag in enumerate(tags):
            if (c := self.cross.get(tag)) is not None:
                out[i] = c.predict(base, tags, ending)
        return out

    def decide(
        self, chance: NDArray[np.bool_], scores: NDArray[np.float64], tags: Sequence[str]
    ) -> NDArray[np.bool_]:
        """Which tags a work gets, shape ``(T,)``.

        Args:
            chance: Whether the chance rule gives each tag, shape ``(T,)``.
            scores: :meth:`predict_work`'s scores, shape ``(T,)``.
            tags: The tag ids.

        A tag needs its floor; the chance rule must give it too, unless it is a cross tag
        or its score reaches its :attr:`sure` score.
        """
        crossed = np.array([t in self.cross for t in tags], dtype=bool)
        floors = np.array([self.floor_of(t) for t in tags])
        sure = scores >= np.array([self.sure.get(t, np.inf) for t in tags])
        return np.asarray((chance | crossed | sure) & (scores >= floors))

    def to_config(self) -> dict[str, Any]:
        """The ``rollup.calibrator`` entry of a model's config (rounded to 6 decimals)."""
        entry: dict[str, Any] = {
            "features": list(FEATURES),
            "intercept": round(self.intercept, 6),
            "weights": [round(w, 6) for w in self.weights],
            "tags": {t: round(v, 6) for t, v in self.tags.items()},
        }
        if self.floor:
            entry["floor"] = self.floor
        if self.floors:
            entry["floors"] = dict(self.floors)
        if self.sure:
            entry["sure"] = dict(self.sure)
        if self.cross:
            entry["cross"] = {
                t: {
                    "bias": round(c.bias, 6),
                    "weights": {k: round(w, 6) for k, w in c.weights.items()},
                    **({"reads": c.reads} if c.reads != "work" else {}),
                }
                for t, c in self.cross.items()
            }
        return entry

    @classmethod
    def from_config(cls, entry: Mapping[str, Any]) -> WorkCalibrator:
        """Read :meth:`to_config`'s entry (checked by :mod:`tropeml.model.integrity`)."""
        if list(entry["features"]) != list(FEATURES):
            raise ValueError(f"unknown work-calibrator features {entry['features']}")
        return cls(
            float(entry["intercept"]),
            tuple(float(w) for w in entry["weights"]),
            {str(t): float(v) for t, v in entry["tags"].items()},
            float(entry.get("floor", 0.0)),
            {str(t): float(v) for t, v in entry.get("floors", {}).items()},
            {
                str(t): CrossScore(
                    float(c["bias"]),
                    {str(k): float(w) for k, w in c["weights"].items()},
                    str(c.get("reads", "work")),
                )
                for t, c in entry.get("cross", {}).items()
            },
            {str(t): float(v) for t, v in entry.get("sure", {}).items()},
        )


def fit_work_calibrator(
    features: NDArray[np.float64], tags: Sequence[str], y: NDArray[np.int_]
) -> WorkCalibrator:
    """Fit a :class:`WorkCalibrator` on judged (work, tag) pairs.

    Args:
        features: :func:`evidence_features` rows of the pairs, shape ``(pairs, len(FEATURES))``.
        tags: Each pair's tag, length ``pairs``.
        y: 1 if the pair's work shows its tag, else 0, shape ``(pairs,)``.
    """
    from sklearn.linear_model import LogisticRegression

    names = sorted(set(tags))
    onehot = np.array([[t == name for name in names] for t in tags], dtype=np.float64)
    x = np.c_[np.asarray(features, dtype=np.float64), onehot]
    model = LogisticRegression(C=C, max_iter=5000).fit(x, np.asarray(y))
    coef = model.coef_[0]
    k = len(FEATURES)
    return WorkCalibrator(
        float(model.intercept_[0]),
        tuple(float(w) for w in coef[:k]),
        {name: float(w) for name, w in zip(names, coef[k:], strict=True)},
    )


def fit_tag_offsets(
    calibrator: WorkCalibrator,
    features: NDArray[np.float64],
    tags: Sequence[str],
    y: NDArray[np.int_],
    only: Sequence[str],
) -> WorkCalibrator:
    """Refit the offsets of the tags ``only``, keeping everything else of ``calibrator``.

    The shared intercept and weights stay as they are, so the other tags' scores do not
    move; each tag of ``only`` gets the offset that minimises the log loss of its own judged
    pairs plus the L2 penalty :func:`fit_work_calibrator` puts on a tag's weight
    (``offset**2 / (2 * C)``). A tag of ``only`` with no judged pair keeps its offset.

    Args:
        calibrator: The calibrator to start from.
        features: :func:`evidence_features` rows of the pairs, shape ``(pairs, len(FEATURES))``.
        tags: Each pair's tag, length ``pairs``.
        y: 1 if the pair's work shows its tag, else 0, shape ``(pairs,)``.
        only: The tags whose offsets are refitted.
    """
    x = np.asarray(features, dtype=np.float64)
    base = calibrator.intercept + x @ np.asarray(calibrator.weights)
    target, names = np.asarray(y, dtype=np.float64), np.asarray(tags)
    offsets = dict(calibrator.tags)
    for tag in only:
        rows = names == tag
        if not rows.any():
            continue
        b = offsets.get(tag, 0.0)
        for _ in range(100):  # Newton's method on a smooth, strictly convex function
            p = 1.0 / (1.0 + np.exp(-(base[rows] + b)))
            step = (np.sum(p - target[rows]) + b / C) / (np.sum(p * (1 - p)) + 1 / C)
            b -= step
            if abs(step) < 1e-10:
                break
        offsets[tag] = float(b)
    return replace(calibrator, tags=offsets)


def fit_cross(
    base: NDArray[np.float64],
    tags: Sequence[str],
    y: NDArray[np.int_],
    reads: str = "work",
    ending: NDArray[np.float64] | None = None,
    inputs: Sequence[str] | None = None,
) -> CrossScore:
    """Fit one tag's :class:`CrossScore` on judged works (L2, scikit-learn's ``C`` = :data:`C`).

    Args:
        base: :meth:`WorkCalibrator.predict` scores of every tag of each work, shape
            ``(works, T)``.
        tags: The ``T`` tag ids, in ``base``'s column order.
        y: 1 if the work shows the tag, else 0, shape ``(works,)``.
        reads: What the score reads (:data:`READS`).
        ending: Each work's :func:`ending_evidence`, shape ``(works, T)``; needed to read
            the ending.
        inputs: The tags it reads; ``None``: all of ``tags``.
    """
    from sklearn.linear_model import LogisticRegression

    names = list(tags if inputs is None else inputs)
    x = cross_inputs(reads, base, ending)[:, [list(tags).index(t) for t in names]]
    model = LogisticRegression(C=C, max_iter=5000).fit(x, np.asarray(y))
    weights = dict(zip(names, (float(w) for w in model.coef_[0]), strict=True))
    return CrossScore(float(model.intercept_[0]), weights, reads)
