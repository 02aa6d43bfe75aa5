"""The false-tag targets a tag's decisions must meet on judged works.

A tag's false-tag rate is the share of the judged works that do not show it which still get
it. ``tropeml tune`` chooses every decision threshold (alphas, cross tags' floors) as the
loosest that keeps that rate under :func:`target`, pooled and on each kind of work
(:func:`meets`), counting only the kinds of work that show the tag somewhere
(:func:`informative`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from tropeml.io.devset import DevItem

AU_TAGS = ("mates", "alpha_beta_omega", "soulmates")

Kinds = Sequence[str] | NDArray[np.str_] | None
"""Each work's kind (:attr:`~tropeml.io.devset.DevItem.kind`), or ``None`` to pool them."""


def target(tag: str) -> float:
    """The false-tag rate allowed for ``tag``: 5% for the AU tags, 10% for the rest."""
    return 0.05 if tag in AU_TAGS else 0.10


def informative(y: NDArray[np.int_], kinds: Sequence[str]) -> NDArray[np.int_]:
    """Judgments with the trope-free works of kinds that never show the tag set unknown.

    A tag's false-tag rate is counted on the kinds of work (public-domain prose, works
    written for the project) in which at least one work shows it. Public-domain prose
    never shows mates, A/B/O or soulmates, so its works are easy negatives for them: a
    hundred of them would dilute the 5% target until the written look-alikes (friends who
    call each other "mate", wolf packs without bonds) fired freely. Without a work that
    shows the tag, nothing is changed.

    Args:
        y: Judgments, shape ``(works,)``: 1, 0 or -1.
        kinds: Each work's kind (:attr:`~tropeml.io.devset.DevItem.kind`), length ``works``.
    """
    k = np.asarray(kinds)
    if not (y == 1).any():
        return y
    return np.where((y == 0) & ~np.isin(k, k[y == 1]), -1, y)


def judged(items: Sequence[DevItem], tags: Sequence[str]) -> dict[str, NDArray[np.int_]]:
    """Each tag's judgments of ``items`` as the rule counts them (:func:`informative`).

    Returns:
        Per tag, shape ``(items,)``: 1, 0 or -1 (unknown, unjudged, or a trope-free work of
        a kind that never shows the tag).
    """
    kinds = [it.kind for it in items]
    return {
        t: informative(np.array([it.judgments.get(t, -1) for it in items]), kinds) for t in tags
    }


def meets(fired: NDArray[np.bool_], y: NDArray[np.int_], tag: str, kinds: Kinds = None) -> bool:
    """Whether firing ``fired`` meets ``tag``'s false-tag target on the works judged ``y``.

    Pooled over the trope-free works, and, given ``kinds``, also on each kind of work with
    enough trope-free works to measure it (at least ``1 / target``: 10 for the prose tags,
    20 for the AU tags), so that easy look-alikes of one kind (written works without a
    reunion) cannot let a tag fire more often than the target on another (public-domain
    prose).

    Args:
        fired: Whether each work gets the tag, shape ``(works,)``.
        y: Judgments, shape ``(works,)``: 1, 0 or -1.
        tag: The tag id (sets the target).
        kinds: Each work's kind, length ``works``; ``None`` pools every work.
    """
    neg = y == 0
    if neg.any() and fired[neg].mean() > target(tag):
        return False
    if kinds is None:
        return True
    k = np.asarray(kinds)
    groups = (neg & (k == kind) for kind in np.unique(k))
    return all(fired[g].mean() <= target(tag) for g in groups if g.sum() >= round(1 / target(tag)))
