"""Screened scoring: the full encoder only for passages that can change a work's tags.

See :mod:`tropeml.model.screen`. For each work, the screen estimates every passage's logits;
passages whose estimate comes within the margin of a tag's bar (the evidence a work of that
length needs to fire) go through the full encoder, in one call for the whole batch of works.
Then every tag that fires has its evidence checked: any of its best passages not yet scored
by the full encoder is, so evidence always comes from the full encoder. The other passages
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


class _Scorer(Protocol):
    """What screening needs of a :class:`~tropeml.serve.tagger.Tagger`."""

    classifier: Any
    null: tuple[NDArray[np.float64], NDArray[np.float64]] | None
    alpha: NDArray[np.float64]
    k: int
    max_evidence: int

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
    scores, full, wanted, at = [], [], [], 0
    for ts in texts:
        z = z_hat[at : at + len(ts)]
        at += len(ts)
        bars = evidence_bars(len(ts), mu, sigma, tagger.alpha, tagger.k)
        need, cap = screen.plan(z, bars, tagger.k)
        scores.append(sigmoid(np.minimum(z, cap)))
        full.append(np.zeros(len(ts), dtype=bool))
        wanted.append(need)
    _fill(tagger, texts, scores, full, wanted)
    evidence = [_evidence(tagger, s, f) for s, f in zip(scores, full, strict=True)]
    _fill(tagger, texts, scores, full, evidence)
    return scores, full


def _proba(tagger: _Scorer, X: NDArray[np.float32], texts: list[str]) -> NDArray[np.float64]:
    if not texts:
        return np.zeros((0, len(tagger.alpha)))
    uses = bool(tagger.classifier.uses_texts)
    return np.asarray(tagger.classifier.predict_proba(X, texts if uses else None), dtype=np.float64)


def _evidence(
    tagger: _Scorer, s: NDArray[np.float64], full: NDArray[np.bool_]
) -> NDArray[np.bool_]:
    """Passages among the best of each tag that fires, not yet scored in full."""
    need = np.zeros(len(s), dtype=bool)
    if not len(s):
        return need
    for j in np.flatnonzero(tagger.fired(s)):
        need[np.argsort(-s[:, j], kind="stable")[: tagger.max_evidence]] = True
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
