"""Audit a work's author tags against the model, in both directions.

For a work whose source lists author tags (an AO3 download or work page, or a copied
"Work Header"), the audit reports:

- **unlisted**: tags the model finds over their threshold that the author did not write, with
  their evidence passages and prominence;
- **unsupported**: author tags (mapped to taxonomy ids) whose work score stays under the
  threshold, with the best passage the model could find;
- **confirmed**: author tags the model agrees with, and the author tags that map to no trope.

Each finding carries a one-line reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tropeml.core.types import Evidence, Passage, Work, WorkResult
from tropeml.io.author_tags import AuthorTags, map_author_tags

if TYPE_CHECKING:
    from tropeml.serve.tagger import Tagger

UNLISTED = "unlisted"
UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class ScoredWork:
    """A work split, embedded and scored by a tagger.

    Attributes:
        work: The work.
        passages: Its passages.
        X: Their embeddings, shape ``(n, d)``.
        scores: Passage probabilities, shape ``(n, T)`` (columns: ``tagger.tags``).
        result: The work-level result (every tag, spoilers included).
    """

    work: Work
    passages: list[Passage]
    X: NDArray[np.float32]
    scores: NDArray[np.float64]
    result: WorkResult


def score_work(tagger: Tagger, work: Work, source: str | None = None) -> ScoredWork:
    """Split, embed and score a work once; the passage scores and the work result."""
    passages = tagger.passages(work)
    texts = tagger.texts(passages, work)  # masked once, for the encoder and the head
    X = tagger.embed_texts(texts)
    scores = tagger.score_passages(work, passages, X, texts)
    result = tagger.tag_embedded(work, passages, X, source, texts)
    return ScoredWork(work, passages, X, scores, result)


def evidence_at(scored: ScoredWork, i: int, j: int) -> Evidence:
    """Evidence for tag column ``j`` from passage ``i``."""
    p = scored.passages[i]
    return Evidence(p.start, p.end, float(scored.scores[i, j]), p.text, p.chapter)


def _where(ev: Evidence) -> str:
    return ev.chapter or f"characters {ev.start}-{ev.end}"


@dataclass(frozen=True)
class AuditFinding:
    """One disagreement between the model and the author's tags."""

    id: str
    name: str
    kind: str
    score: float
    threshold: float | None
    prominence: float
    reason: str
    author_tags: tuple[str, ...] = ()
    evidence: tuple[Evidence, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "score": round(self.score, 4),
            "threshold": None if self.threshold is None else round(self.threshold, 4),
            "prominence": round(self.prominence, 4),
            "reason": self.reason,
            "author_tags": list(self.author_tags),
            "evidence": [e.to_dict() for e in self.evidence],
        }


@dataclass(frozen=True)
class AuditResult:
    """The audit of one work.

    Attributes:
        source: The path as given.
        model: The model's name.
        author_tags: The author's tags, mapped to ids, and those that map to none.
        unlisted: Tags the model finds that the author did not write, best first.
        unsupported: Author tags the model finds no support for, weakest first.
        confirmed: Ids of author tags the model agrees with.
    """

    source: str
    model: str
    author_tags: AuthorTags
    unlisted: tuple[AuditFinding, ...]
    unsupported: tuple[AuditFinding, ...]
    confirmed: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the ``tropeml audit --json`` schema)."""
        return {
            "source": self.source,
            "model": self.model,
            "author_tags": self.author_tags.to_dict(),
            "confirmed": list(self.confirmed),
            "unlisted": [f.to_dict() for f in self.unlisted],
            "unsupported": [f.to_dict() for f in self.unsupported],
        }


def audit_scored(tagger: Tagger, scored: ScoredWork) -> AuditResult:
    """Audit a scored work (see :func:`audit_work`)."""
    result = scored.result
    mapped = map_author_tags(scored.work.author_tags, tagger.taxonomy)
    over = {t.id: t for t in result.tags}
    unlisted = []
    for tag in result.tags:
        if tag.id in mapped.ids:
            continue
        bar = (
            "its evidence beats chance"
            if tag.threshold is None
            else f"threshold {tag.threshold:.2f}"
        )
        reason = (
            f"not in the author's tags, but scores {tag.score:.2f} ({bar}) and shows in "
            f"{tag.prominence:.0%} of the text; strongest in {_where(tag.evidence[0])}"
        )
        unlisted.append(
            AuditFinding(
                tag.id,
                tag.name,
                UNLISTED,
                tag.score,
                tag.threshold,
                tag.prominence,
                reason,
                evidence=tag.evidence,
            )
        )
    unsupported = []
    col = {t: j for j, t in enumerate(tagger.tags)}
    for tid, written in mapped.ids.items():
        if tid in over or tid not in col:
            continue
        j = col[tid]
        threshold = float(tagger.thresholds[j])
        evidence: tuple[Evidence, ...] = ()
        if scored.passages:
            best = int(np.argmax(scored.scores[:, j]))
            evidence = (evidence_at(scored, best, j),)
            reason = (
                f"the author tagged {written[0]!r}, but no passage reaches the threshold "
                f"{threshold:.2f}; the closest ({_where(evidence[0])}) scores "
                f"{evidence[0].score:.2f}"
            )
        else:
            reason = f"the author tagged {written[0]!r}, but the work has no story text"
        trope = tagger.taxonomy.get(tid)
        unsupported.append(
            AuditFinding(
                tid,
                trope.name if trope else tid,
                UNSUPPORTED,
                float(result.scores.get(tid, 0.0)),
                threshold,
                0.0,
                reason,
                author_tags=written,
                evidence=evidence,
            )
        )
    unsupported.sort(key=lambda f: f.score)
    confirmed = tuple(t for t in mapped.ids if t in over)
    return AuditResult(
        result.source, result.model, mapped, tuple(unlisted), tuple(unsupported), confirmed
    )


def audit_work(tagger: Tagger, work: Work, source: str | None = None) -> AuditResult:
    """Compare the model's tags for ``work`` with the tags its author wrote.

    Args:
        tagger: The model.
        work: A work read from an AO3 download, work page or Work Header text.
        source: Name to report (default: the work's own source).

    Returns:
        The unlisted, unsupported and confirmed tags. A work without author tags gives
        empty lists for ``confirmed`` and ``unsupported``.
    """
    return audit_scored(tagger, score_work(tagger, work, source))
