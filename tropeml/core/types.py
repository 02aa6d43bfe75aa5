"""Plain, frozen result types shared by every module."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

UNKNOWN = -1
"""Label value meaning "not known" (excluded from that tag's training)."""


@dataclass(frozen=True)
class Region:
    """A stretch of story text inside a source, e.g. one chapter.

    Attributes:
        start: Offset of the first character (in ``str`` characters).
        end: Offset one past the last character.
        chapter: Chapter title, or ``None`` for an untitled single text.
    """

    start: int
    end: int
    chapter: str | None = None


@dataclass(frozen=True)
class WorkMeta:
    """What an AO3 download or work page says about a work (its preface and tag list).

    Attributes:
        format: Where it was read from: ``"ao3-html"`` (HTML download), ``"ao3-epub"`` (EPUB
            download), ``"ao3-page"`` (a work page saved from the browser), ``"html"`` (other
            HTML) or ``"text"`` (plain text with a "Work Header").
        title: The work's title.
        authors: Its authors, as shown in the byline.
        rating: The rating, e.g. ``"Teen And Up Audiences"``.
        warnings: Archive warnings.
        categories: Categories (``"M/M"``, ``"Gen"``, ...).
        fandoms: Fandom tags.
        relationships: Relationship tags.
        characters: Character tags.
        freeform: Additional (freeform) tags: the ones that name tropes.
        summary: The summary text.
    """

    format: str = "text"
    title: str | None = None
    authors: tuple[str, ...] = ()
    rating: str | None = None
    warnings: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    fandoms: tuple[str, ...] = ()
    relationships: tuple[str, ...] = ()
    characters: tuple[str, ...] = ()
    freeform: tuple[str, ...] = ()
    summary: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "format": self.format,
            "title": self.title,
            "authors": list(self.authors),
            "rating": self.rating,
            "warnings": list(self.warnings),
            "categories": list(self.categories),
            "fandoms": list(self.fandoms),
            "relationships": list(self.relationships),
            "characters": list(self.characters),
            "freeform": list(self.freeform),
            "summary": self.summary,
        }


@dataclass(frozen=True)
class Work:
    """A fic as read from disk: its full text and where the story is inside it.

    Attributes:
        text: The whole decoded source text. All offsets point into it.
        source: Where it came from (a path as given, or ``"-"`` for stdin).
        regions: The story parts of ``text`` (headers such as AO3's "Work Header" are left out).
        title: The title if the reader found one.
        meta: The AO3 preface (tags, summary, ...) for AO3 downloads and work pages;
            ``None`` for plain text without a tag list. For HTML and EPUB sources ``text``
            is the extracted story text (chapters in order), and offsets point into it.
    """

    text: str
    source: str = "<text>"
    regions: tuple[Region, ...] = ()
    title: str | None = None
    meta: WorkMeta | None = None

    @property
    def author_tags(self) -> tuple[str, ...]:
        """Return the additional (freeform) tags the author wrote, if the source had any."""
        return self.meta.freeform if self.meta is not None else ()

    def story_regions(self) -> tuple[Region, ...]:
        """Return the story regions, or the whole text when none were given."""
        return self.regions or (Region(0, len(self.text)),)


@dataclass(frozen=True)
class Passage:
    """A window of a source text that fits the encoder.

    Invariant: ``text == source[start:end]``.
    """

    start: int
    end: int
    text: str
    chapter: str | None = None


@dataclass(frozen=True)
class Evidence:
    """A passage that supports a work-level tag."""

    start: int
    end: int
    score: float
    text: str
    chapter: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        out: dict[str, Any] = {
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 4),
            "text": self.text,
        }
        if self.chapter is not None:
            out["chapter"] = self.chapter
        return out


@dataclass(frozen=True)
class TagResult:
    """One work-level tag over its threshold.

    Attributes:
        id: The tag id, e.g. ``"hurt_comfort"``.
        name: The AO3-style display tag, e.g. ``"Hurt/Comfort"``.
        score: How likely the work shows the tag, from its evidence (a calibrated
            probability for models with a calibration; see :mod:`tropeml.model.decision`).
        threshold: The score the tag is shown from. For models with a work calibrator
            (:mod:`tropeml.model.workcal`) the tag must also beat chance at its alpha, and
            this is the calibrator's floor; ``None`` where the floor is 0 and the chance rule
            alone decides.
        prominence: Share of the work's text in passages over the tag's passage threshold
            (0..1).
        evidence: The passages that justify the tag, best first.
        spoiler: Whether the taxonomy marks the tag as a spoiler (it gives a plot turn away).
    """

    id: str
    name: str
    score: float
    threshold: float | None
    prominence: float
    evidence: tuple[Evidence, ...] = ()
    spoiler: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (``"spoiler": true`` only for spoiler tags)."""
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "score": round(self.score, 4),
            "threshold": None if self.threshold is None else round(self.threshold, 4),
            "prominence": round(self.prominence, 4),
            "evidence": [e.to_dict() for e in self.evidence],
        }
        if self.spoiler:
            out["spoiler"] = True
        return out


@dataclass(frozen=True)
class TimelineSeries:
    """One tag's passage scores along a work.

    Attributes:
        id: The tag id.
        name: Its display name (the id when the result does not name it).
        scores: One score per passage of the timeline, in text order, shape ``(n,)``.
        threshold: The tag's passage threshold, when the result holds the tag (``None`` otherwise).
        spoiler: Whether the tag is a spoiler.
    """

    id: str
    name: str
    scores: tuple[float, ...]
    threshold: float | None = None
    spoiler: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "id": self.id,
            "name": self.name,
            "threshold": None if self.threshold is None else round(self.threshold, 4),
            "spoiler": self.spoiler,
            "scores": [round(s, 4) for s in self.scores],
        }


@dataclass(frozen=True)
class Timeline:
    """Where in a work each tag shows: passage scores along the text.

    Made by :meth:`WorkResult.timeline`.

    Attributes:
        starts: Each passage's first character offset, shape ``(n,)``, in text order.
        ends: Each passage's end offset (one past its last character), shape ``(n,)``.
        chapters: Each passage's chapter title (``None`` for works without chapters).
        series: One series per tag, each with ``n`` scores.
    """

    starts: tuple[int, ...]
    ends: tuple[int, ...]
    chapters: tuple[str | None, ...]
    series: tuple[TimelineSeries, ...]

    @property
    def length(self) -> int:
        """Return the offset where the last passage ends (0 for an empty work)."""
        return max(self.ends, default=0)

    @property
    def positions(self) -> tuple[float, ...]:
        """Return each passage's middle as a share of :attr:`length` (0..1), shape ``(n,)``."""
        total = self.length or 1
        return tuple((s + e) / 2 / total for s, e in zip(self.starts, self.ends, strict=True))

    def chapter_marks(self) -> tuple[tuple[int, str], ...]:
        """Return ``(offset, title)`` where each chapter's first passage starts."""
        marks: list[tuple[int, str]] = []
        previous: str | None = None
        for start, chapter in zip(self.starts, self.chapters, strict=True):
            if chapter is not None and chapter != previous:
                marks.append((start, chapter))
            previous = chapter
        return tuple(marks)

    def __getitem__(self, tag: str) -> TimelineSeries:
        """Return the series of tag id ``tag``."""
        for s in self.series:
            if s.id == tag:
                return s
        raise KeyError(tag)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict: passages (start, end, chapter), chapter marks, series."""
        return {
            "length": self.length,
            "passages": [
                {"start": s, "end": e, "chapter": c}
                for s, e, c in zip(self.starts, self.ends, self.chapters, strict=True)
            ],
            "chapters": [{"start": s, "title": t} for s, t in self.chapter_marks()],
            "series": [s.to_dict() for s in self.series],
        }


@dataclass(frozen=True)
class WorkResult:
    """Everything tropeml says about one work.

    Attributes:
        source: The path as given, or ``"-"``.
        n_passages: How many passages the work was split into.
        model: The model's name.
        scores: Work-level probability for every tag of the model.
        tags: The tags over their thresholds, best first.
        hidden_spoilers: Ids of spoiler tags over their thresholds that were left out of
            ``tags`` (see :meth:`without_spoilers`); their scores stay in ``scores``.
        passages: Each passage's ``(start, end, chapter)``, in text order, shape ``(n,)``
            (empty for results rebuilt from JSON). Not part of :meth:`to_dict`.
        passage_scores: Each passage's score for every tag, shape ``(n, T)``, columns in the
            order of ``scores``. Not part of :meth:`to_dict`; see :meth:`timeline`.
        passage_thresholds: Each tag's passage threshold (evidence and prominence), shape
            ``(T,)``; a tag's ``threshold`` is its work-level one. Not part of :meth:`to_dict`.
    """

    source: str
    n_passages: int
    model: str
    scores: dict[str, float] = field(default_factory=dict)
    tags: tuple[TagResult, ...] = ()
    hidden_spoilers: tuple[str, ...] = ()
    passages: tuple[tuple[int, int, str | None], ...] = field(default=(), repr=False)
    passage_scores: tuple[tuple[float, ...], ...] = field(default=(), repr=False)
    passage_thresholds: tuple[float, ...] = field(default=(), repr=False)

    def timeline(self, tags: Sequence[str] | None = None) -> Timeline:
        """Return each tag's passage scores along the work (x: position, y: score).

        Args:
            tags: Tag ids to include, in this order (any of ``scores``). Default: the
                result's ``tags`` (over their thresholds; spoilers only if not hidden).

        Returns:
            A :class:`Timeline` with one series per tag; empty series when the result holds
            no passage scores (e.g. rebuilt from JSON).

        Raises:
            KeyError: If a tag id is not one of the model's.
        """
        ids = [t.id for t in self.tags] if tags is None else list(tags)
        columns = {t: j for j, t in enumerate(self.scores)}
        known = {t.id: t for t in self.tags}
        series = []
        for tag in ids:
            if tag not in columns:
                raise KeyError(tag)
            j = columns[tag]
            found = known.get(tag)
            series.append(
                TimelineSeries(
                    id=tag,
                    name=found.name if found else tag,
                    scores=tuple(row[j] for row in self.passage_scores),
                    threshold=(
                        None
                        if not found
                        else self.passage_thresholds[j]
                        if self.passage_thresholds
                        else found.threshold
                    ),
                    spoiler=found.spoiler if found else False,
                )
            )
        spans = self.passages if self.passage_scores else ()
        return Timeline(
            starts=tuple(p[0] for p in spans),
            ends=tuple(p[1] for p in spans),
            chapters=tuple(p[2] for p in spans),
            series=tuple(series),
        )

    def without_spoilers(self) -> WorkResult:
        """Return a copy whose ``tags`` leave out spoiler tags (listed in ``hidden_spoilers``)."""
        hidden = tuple(t.id for t in self.tags if t.spoiler)
        return replace(
            self,
            tags=tuple(t for t in self.tags if not t.spoiler),
            hidden_spoilers=self.hidden_spoilers + hidden,
        )

    def at_least(self, min_score: float) -> WorkResult:
        """Return a copy whose ``tags`` keep only those scoring at least ``min_score``.

        With a calibrated model the score is how likely the work shows the tag, so this
        trades recall for surer tags (the README's Honest accuracy gives both at 0.5 and 0.7).
        Every score stays in ``scores``; scores are never negative, so 0 keeps every tag.
        """
        return replace(self, tags=tuple(t for t in self.tags if t.score >= min_score))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the ``--json`` schema)."""
        out: dict[str, Any] = {
            "source": self.source,
            "n_passages": self.n_passages,
            "model": self.model,
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "tags": [t.to_dict() for t in self.tags],
        }
        if self.hidden_spoilers:
            out["hidden_spoilers"] = list(self.hidden_spoilers)
        return out
