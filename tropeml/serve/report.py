"""See the tags in the text: the view of a tagged work, the trope timeline, the static report.

One view serves both the local web page (``tropeml serve``) and the self-contained report
(``tropeml report``): :func:`analysis` tags a work step by step (so a server can report
progress), :class:`WorkView` holds what the page shows (the text, its chapters, every tag
with its evidence, the timeline and the audit), and :func:`render_report` writes the page's
own HTML, CSS and JavaScript into one file with the views' data inlined.

The timeline is drawn in :mod:`tropeml.serve.timeline` (:func:`timeline_svg`,
:func:`write_plot`: ``.svg``, or ``.png`` with matplotlib), re-exported here.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tropeml.core.errors import TropemlError
from tropeml.core.types import Work, WorkResult
from tropeml.serve.audit import AuditResult, ScoredWork, audit_scored
from tropeml.serve.timeline import PALETTE, timeline_png, timeline_svg, write_plot, write_text

if TYPE_CHECKING:
    from tropeml.serve.tagger import Tagger

__all__ = [
    "PALETTE",
    "Progress",
    "WorkView",
    "analyse",
    "analysis",
    "render_report",
    "static_text",
    "timeline_png",
    "timeline_svg",
    "write_plot",
    "write_report",
]


_EMBED_STEPS = 10  # progress reports while a work is embedded (at most)
_MIN_CHUNK = 16  # passages per encoder call, at least (smaller calls cost batching)


@dataclass(frozen=True)
class Progress:
    """How far :func:`analysis` has got.

    Attributes:
        stage: ``"splitting"``, ``"embedding"`` or ``"scoring"``.
        done: Passages embedded so far.
        total: Passages in the work.
    """

    stage: str
    done: int
    total: int

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (``event: "progress"``)."""
        return {"event": "progress", "stage": self.stage, "done": self.done, "total": self.total}


@dataclass(frozen=True)
class WorkView:
    """What the page shows about one work.

    Attributes:
        work: The work (its text, chapters and AO3 metadata).
        result: Its tags, spoilers included (the page hides them behind a reveal), with
            passage scores for the timeline.
        audit: The audit of the author's tags, for works that carry them.
    """

    work: Work
    result: WorkResult
    audit: AuditResult | None = None

    @property
    def title(self) -> str:
        """Return the work's title, or its source name."""
        meta_title = self.work.meta.title if self.work.meta else None
        return self.work.title or meta_title or self.result.source

    def to_dict(self) -> dict[str, Any]:
        """Return the page's data: the text, regions, result, timelines (data and SVG), audit.

        ``result`` is the ``tropeml tag --json --spoilers`` object. Offsets count Unicode
        code points of ``text`` (as Python's ``str`` does).
        """
        full = self.result
        visible = full.without_spoilers()
        has_spoilers = bool(visible.hidden_spoilers)
        return {
            "source": full.source,
            "title": self.title,
            "text": self.work.text,
            "regions": [
                {"start": r.start, "end": r.end, "chapter": r.chapter}
                for r in self.work.story_regions()
            ],
            "meta": self.work.meta.to_dict() if self.work.meta else None,
            "result": full.to_dict(),
            "timeline": full.timeline().to_dict(),
            "timeline_svg": timeline_svg(visible.timeline()),
            "timeline_svg_spoilers": timeline_svg(full.timeline()) if has_spoilers else None,
            "audit": self.audit.to_dict() if self.audit else None,
        }


def analysis(
    tagger: Tagger, work: Work, source: str | None = None
) -> Iterator[Progress | WorkView]:
    """Tag a work one step at a time: progress reports, then its :class:`WorkView`.

    Each ``next()`` runs one step on the model (split and mask; embed a chunk of passages;
    score, roll up and audit), so a caller can run the steps where the model lives (one
    thread) and report progress between them. The result equals ``tagger.tag(work)`` with
    spoilers kept.

    Args:
        tagger: The model.
        work: The work.
        source: Name to report (default: the work's own source).

    Yields:
        :class:`Progress` reports, then one :class:`WorkView` (last).
    """
    passages = tagger.passages(work)
    texts = tagger.texts(passages, work)  # names masked once, for the encoder and the head
    n = len(passages)
    yield Progress("embedding", 0, n)
    chunk = max(_MIN_CHUNK, -(-n // _EMBED_STEPS))
    parts = []
    for at in range(0, n, chunk):
        parts.append(tagger.embed_texts(texts[at : at + chunk]))
        yield Progress("embedding", min(at + chunk, n), n)
    X = np.concatenate(parts) if parts else tagger.embed_texts([])
    result = tagger.tag_embedded(work, passages, X, source, texts)
    flush = getattr(tagger, "_flush", None)  # writes the cached split and names
    if callable(flush):
        flush()
    audit = None
    if work.author_tags:
        scores = np.asarray(result.passage_scores, dtype=np.float64).reshape(n, len(tagger.tags))
        audit = audit_scored(tagger, ScoredWork(work, passages, X, scores, result))
    yield WorkView(work, result, audit)


def analyse(tagger: Tagger, work: Work, source: str | None = None) -> WorkView:
    """Tag a work and return its :class:`WorkView` (:func:`analysis` run to the end)."""
    view: WorkView | None = None
    for step in analysis(tagger, work, source):
        if isinstance(step, WorkView):
            view = step
    assert view is not None
    return view


# --------------------------------------------------------------------------- the page


def static_text(name: str) -> str:
    """Return one of the page's files shipped in ``tropeml/serve/static/``."""
    return resources.files("tropeml.serve").joinpath("static", name).read_text(encoding="utf-8")


_REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
)


def _inline_json(data: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">`` (no ``<`` at all)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _fill(page: str, name: str, content: str) -> str:
    """Replace the block between ``<!--tropeml:NAME-->`` and ``<!--/tropeml:NAME-->``."""
    pattern = re.compile(rf"<!--tropeml:{name}-->.*?<!--/tropeml:{name}-->", re.S)
    if not pattern.search(page):
        raise TropemlError(f"the page template has no {name} block (a broken install?)")
    return pattern.sub(lambda _: content, page, count=1)


def render_report(views: Sequence[WorkView], title: str = "tropeml report") -> str:
    """Render works as one self-contained HTML page: the web page's view, offline.

    CSS, JavaScript, data and SVG are all inline, and the page's Content-Security-Policy
    forbids every network request, so it opens from a file or an e-mail attachment alike.

    Args:
        views: The works (from :func:`analyse`), shown one at a time with a picker.
        title: The page title.

    Returns:
        The HTML document.
    """
    css, js = static_text("app.css"), static_text("app.js")
    if "</style" in css.lower() or "</script" in js.lower():
        raise TropemlError("the page's CSS or JavaScript cannot be inlined (a broken install?)")
    page = static_text("index.html")
    csp = f'<meta http-equiv="Content-Security-Policy" content="{_REPORT_CSP}">'
    page = _fill(page, "csp", csp)
    page = _fill(page, "title", f"<title>{html.escape(title)}</title>")
    page = _fill(page, "css", f"<style>\n{css}</style>")
    payload = {"mode": "report", "works": [v.to_dict() for v in views]}
    page = _fill(
        page,
        "data",
        f'<script type="application/json" id="tropeml-data">{_inline_json(payload)}</script>',
    )
    return _fill(page, "js", f"<script>\n{js}</script>")


def write_report(views: Sequence[WorkView], path: str | Path, title: str | None = None) -> Path:
    """Write :func:`render_report` to ``path`` (UTF-8).

    Raises:
        TropemlError: If the file cannot be written.
    """
    out = Path(path)
    name = title or (views[0].title if len(views) == 1 else f"{len(views)} works")
    write_text(out, render_report(views, f"tropeml: {name}"))
    return out
