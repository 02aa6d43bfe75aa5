"""Screened scoring: the full encoder only for passages that can change a work's tags.

See :mod:`tropeml.model.screen`. For each work, the screen estimates every passage's logits;
passages whose estimate comes within the margin of a tag's bar (the evidence a work of that
length needs to fire) go through the full encoder, in one call for the whole batch of works.
Then every tag that fires has its best passages checked: any passage whose estimate comes
within one error spread of its fifth best (the score reads its five best passages, the
evidence its three best) is scored by the full encoder, so the evidence and the score
almost always come from the same passages as without the screen. The other passages
keep the screen's estimate, capped below the bar (unless the tag is settled: estimates
clear its bar by more than the margin), so they cannot make an open tag fire.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from tropeml.model.decision import evidence_bars, logits
from tropeml.model.head import sigmoid
from tropeml.model.screen import Screen
from tropeml.model.workcal import TOP_Z, WorkCalibrator, ending_passages


class _Scorer(Protocol):
    """What screening needs of a :class:`~tropeml.serve.tagger.Tagger`."""

    classifier: Any
    null: tuple[NDArray[np.float64], NDArray[np.float64]] | None
    alpha: NDArray[np.float64]
    k: int
    max_evidence: int
    calibrator: WorkCalibrator | None

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]: ...

    def fired(self, scores: NDArray[np.float64]) -> NDArray[np.bool_]: ...


def screened_scores(
    tagger: _Scorer, screen: Screen, texts: Sequence[Sequence[str]]
) -> tuple[list[NDArray[np.float64]], list[NDArray[np.bool_]]]:
    """Passage scores of several works, the full encoder run only where it matters.

    Args:
        tagger: The tagger (a model with a null: work scores that beat chance).
        screen: The model's screen.
        texts: Each work's passages as the model reads them.

    Returns:
        ``(scores, full)``: per work, passage scores shape ``(n, T)`` and which passages
        the full encoder scored, shape ``(n,)``.
    """
    if tagger.null is None:
        raise ValueError("screening needs a model whose work scores beat chance (a null)")
    mu, sigma = tagger.null
    flat = [t for ts in texts for t in ts]
    z_hat = logits(_proba(tagger, screen.approximate(flat), flat))
    scores, full, wanted, estimates, at = [], [], [], [], 0
    for ts in texts:
        z = z_hat[at : at + len(ts)]
        at += len(ts)
        bars = evidence_bars(len(ts), mu, sigma, tagger.alpha, tagger.k)
        need, cap = screen.plan(z, bars, tagger.k)
        scores.append(sigmoid(np.minimum(z, cap)))
        full.append(np.zeros(len(ts), dtype=bool))
        wanted.append(need)
        estimates.append(z)
    _fill(tagger, texts, scores, full, wanted)
    evidence = [
        _evidence(tagger, s, f, z, screen.sd)
        for s, f, z in zip(scores, full, estimates, strict=True)
    ]
    _fill(tagger, texts, scores, full, evidence)
    return scores, full


def _proba(tagger: _Scorer, X: NDArray[np.float32], texts: list[str]) -> NDArray[np.float64]:
    if not texts:
        return np.zeros((0, len(tagger.alpha)))
    uses = bool(tagger.classifier.uses_texts)
    return np.asarray(tagger.classifier.predict_proba(X, texts if uses else None), dtype=np.float64)


def _evidence(
    tagger: _Scorer,
    s: NDArray[np.float64],
    full: NDArray[np.bool_],
    z_hat: NDArray[np.float64],
    spread: NDArray[np.float64],
) -> NDArray[np.bool_]:
    """Passages not yet scored in full that could be among the best of a tag that fires.

    The best ``max(max_evidence, TOP_Z)`` passages of such a tag are its evidence and feed
    its score (:mod:`tropeml.model.workcal`), so every passage whose estimate comes within
    one error spread (the screen's ``sd``) of the last of them is scored in full. On the 331
    dev and confirmation works this leaves 5 of 5,958 decisions and 1 of 833 first evidence
    passages different from the full pipeline (checking only the three best by estimate:
    18 and 14), and on 10,000-word works the screen runs 1.34x the full pipeline's speed
    (1.63x checking the three best; 1.19x with the margin's 1.5 spreads instead of one).
    A model with cross tags read from every tag's score
    (:class:`~tropeml.model.workcal.CrossScore`) also has the passages scored in full whose
    estimate reaches the fifth best of every tag that does not fire: with the two the
    default carried from the twenty-first test
    (happy_ending, first_kiss), on the 363 dev and confirmation works 3 of 6,534 decisions
    differed (20 without it, 0 checking every tag like a fired one) and 956 of 957 first
    evidence passages were the same; on 10,000-word works 1.17x the full pipeline's speed
    (1.25x without it, 1.06x checking every tag like a fired one). A cross tag that reads the
    work's ending instead (:func:`~tropeml.model.workcal.ending_evidence`; the default's
    happy_ending) needs only the ending's passages scored in full: with it, on the 93 dev
    works and the 60 of the twenty-fourth and twenty-fifth rounds, 2 of 2,754 decisions
    differ from the full pipeline and all 418 first evidence passages are the same.

    Args:
        tagger: The tagger.
        s: The work's passage scores so far, shape ``(n, T)``.
        full: Which passages the full encoder scored, shape ``(n,)``.
        z_hat: The screen's estimated logits, shape ``(n, T)``.
        spread: The screen's error spread per tag, shape ``(T,)``.
    """
    need = np.zeros(len(s), dtype=bool)
    if not len(s):
        return need
    best = max(tagger.max_evidence, TOP_Z)
    z = logits(s)
    fired = tagger.fired(s)
    reads = {c.reads for c in tagger.calibrator.cross.values()} if tagger.calibrator else set()
    cross = "work" in reads
    if "ending" in reads:  # an ending score reads its passages' best
        need[len(s) - ending_passages(len(s)) :] = True
    for j in range(s.shape[1]):
        if fired[j]:
            last = -np.sort(-z[:, j])[:best][-1]
            need |= z_hat[:, j] >= last - spread[j]
        elif cross:  # a cross tag's score reads every tag's: their best passages in full too
            need |= z_hat[:, j] >= -np.sort(-z[:, j])[:TOP_Z][-1]
    return need & ~full


def _fill(
    tagger: _Scorer,
    texts: Sequence[Sequence[str]],
    scores: list[NDArray[np.float64]],
    full: list[NDArray[np.bool_]],
    wanted: list[NDArray[np.bool_]],
) -> None:
    """Score the ``wanted`` passages with the full encoder (one call), in place."""
    picks = [np.flatnonzero(w & ~f) for w, f in zip(wanted, full, strict=True)]
    flat = [texts[i][int(p)] for i, ps in enumerate(picks) for p in ps]
    if not flat:
        return
    P = _proba(tagger, tagger.embed_texts(flat), flat)
    at = 0
    for i, ps in enumerate(picks):
        scores[i][ps] = P[at : at + len(ps)]
        full[i][ps] = True
        at += len(ps)
