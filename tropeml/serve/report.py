"""See the tags in the text: the view of a tagged work, the trope timeline, the static report.

One view serves both the local web page (``tropeml serve``) and the self-contained report
(``tropeml report``): :func:`analysis` tags a work step by step (so a server can report
progress), :class:`WorkView` holds what the page shows (the text, its chapters, every tag
with its evidence, the timeline and the audit), and :func:`render_report` writes the page's
own HTML, CSS and JavaScript into one file with the views' data inlined.

The timeline is drawn by hand as SVG (:func:`timeline_svg`): one row per tag, its passage
scores as a step line along the text (x: character offset, each passage drawn over the
stretch of text it covers), the threshold dashed, chapters marked. :func:`write_plot` writes
it alone as ``.svg``, or as ``.png`` with matplotlib (the ``plot`` extra).
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
from tropeml.core.types import Timeline, Work, WorkResult
from tropeml.serve.audit import AuditResult, ScoredWork, audit_scored

if TYPE_CHECKING:
    from tropeml.serve.tagger import Tagger

PALETTE = (
    "#4e79a7",
    "#e15759",
    "#59a14f",
    "#f28e2b",
    "#b07aa1",
    "#76b7b2",
    "#9c755f",
    "#edc948",
    "#ff9da7",
    "#6b6ecf",
)
"""Series colours, cycled (Tableau 10, reordered so neighbours differ)."""

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


# --------------------------------------------------------------------------- the timeline


def _fmt(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def timeline_svg(timeline: Timeline, width: int = 900, row_height: int = 36) -> str:
    """Draw a timeline as a standalone SVG document (no script, no external resource).

    One row (``<g class="series" data-tag="ID">``) per tag: the passage scores (0..1) as a
    step line over the stretch of text each passage covers, the tag's threshold dashed, a
    dot on each passage over it. Chapter starts are vertical lines
    (``<line class="chapter-mark">``) labelled at the top.

    Args:
        timeline: From :meth:`WorkResult.timeline`.
        width: Width in pixels (the SVG scales; this sets text size against the plot).
        row_height: Height of one tag's row, in pixels.

    Returns:
        The SVG markup (UTF-8 text starting with ``<svg``).
    """
    series = timeline.series
    marks = timeline.chapter_marks()
    label_w, right, gap = 170, 14, 8
    top = 30 if marks else 10
    bottom = 26
    plot_w = width - label_w - right
    height = top + max(len(series), 1) * (row_height + gap) + bottom
    length = timeline.length or 1

    def x(offset: float) -> float:
        return label_w + plot_w * offset / length

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
        f'font-size="12" role="img" aria-label="Trope timeline: passage scores along the '
        f'text, one row per tag">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    if not series:
        out.append(
            f'<text x="{width / 2}" y="{top + row_height / 2}" text-anchor="middle" '
            f'fill="#666666">No tag over its threshold.</text>'
        )
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        y0 = top + i * (row_height + gap)
        base = y0 + row_height

        def y(score: float, base: float = base) -> float:
            return base - row_height * min(max(score, 0.0), 1.0)

        attrs = f'class="series" data-tag="{html.escape(s.id)}"'
        if s.spoiler:
            attrs += ' data-spoiler="true"'
        out.append(f"<g {attrs}>")
        out.append(f"<title>{html.escape(s.name)} ({html.escape(s.id)})</title>")
        out.append(
            f'<text class="label" x="{label_w - 8}" y="{_fmt(y0 + row_height / 2 + 4)}" '
            f'text-anchor="end" fill="#222222">{html.escape(_short(s.name, 24))}</text>'
        )
        out.append(
            f'<rect class="track" x="{label_w}" y="{y0}" width="{plot_w}" '
            f'height="{row_height}" fill="#f4f4f6"/>'
        )
        if s.scores:
            points = [f"M{_fmt(x(timeline.starts[0]))},{_fmt(base)}"]
            for start, end, score in zip(timeline.starts, timeline.ends, s.scores, strict=True):
                points.append(f"L{_fmt(x(start))},{_fmt(y(score))}")
                points.append(f"L{_fmt(x(end))},{_fmt(y(score))}")
            points.append(f"L{_fmt(x(timeline.ends[-1]))},{_fmt(base)}Z")
            out.append(
                f'<path class="line" d="{"".join(points)}" fill="{colour}" '
                f'fill-opacity="0.25" stroke="{colour}" stroke-width="1.5" '
                f'stroke-linejoin="round"/>'
            )
        if s.threshold is not None:
            ty = _fmt(y(s.threshold))
            out.append(
                f'<line class="threshold" x1="{label_w}" x2="{label_w + plot_w}" y1="{ty}" '
                f'y2="{ty}" stroke="#555555" stroke-width="0.8" stroke-dasharray="3,3"/>'
            )
            for start, end, chapter, score in zip(
                timeline.starts, timeline.ends, timeline.chapters, s.scores, strict=True
            ):
                if score < s.threshold:
                    continue
                where = f"characters {start}-{end}" + (f", {chapter}" if chapter else "")
                out.append(
                    f'<circle class="hot" cx="{_fmt(x((start + end) / 2))}" '
                    f'cy="{_fmt(y(score))}" r="2.6" fill="{colour}" data-start="{start}" '
                    f'data-end="{end}"><title>{html.escape(s.name)}: {score:.2f} '
                    f"({html.escape(where)})</title></circle>"
                )
        out.append("</g>")
    plot_bottom = top + max(len(series), 1) * (row_height + gap) - gap
    if marks:
        out.append('<g class="chapter-marks">')
        room = plot_w / len(marks)
        every = max(1, int(np.ceil(36 / room)))
        for k, (start, title) in enumerate(marks):
            cx = _fmt(x(start))
            out.append(
                f'<line class="chapter-mark" x1="{cx}" x2="{cx}" y1="{top - 6}" '
                f'y2="{plot_bottom}" stroke="#888888" stroke-width="0.8" '
                f'data-start="{start}"><title>{html.escape(title)}</title></line>'
            )
            if k % every == 0:
                label = _short(title, max(3, int(room * every / 7))) if room * every >= 60 else ""
                label = label or str(k + 1)
                out.append(
                    f'<text class="chapter-label" x="{_fmt(float(cx) + 3)}" y="{top - 10}" '
                    f'fill="#555555" font-size="10">{html.escape(label)}</text>'
                )
        out.append("</g>")
    axis_y = plot_bottom + 16
    for share in (0.0, 0.25, 0.5, 0.75, 1.0):
        anchor = "start" if share == 0 else "end" if share == 1 else "middle"
        out.append(
            f'<text class="axis" x="{_fmt(label_w + plot_w * share)}" y="{axis_y}" '
            f'text-anchor="{anchor}" fill="#666666" font-size="10">{share:.0%}</text>'
        )
    out.append(
        f'<text class="axis" x="{label_w - 8}" y="{axis_y}" text-anchor="end" fill="#666666" '
        f'font-size="10">position in the text</text>'
    )
    out.append("</svg>")
    return "\n".join(out)


def timeline_png(timeline: Timeline, path: str | Path, dpi: int = 120) -> None:
    """Draw a timeline as a PNG with matplotlib (the ``plot`` extra).

    Raises:
        TropemlError: If matplotlib is not installed or the file cannot be written.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise TropemlError(
            f"{path}: a PNG plot needs matplotlib (pip install 'tropeml[plot]'), or write .svg"
        ) from None
    series = timeline.series
    rows = max(len(series), 1)
    fig = Figure(figsize=(9, 0.5 * rows + 0.9), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    length = timeline.length or 1
    edges = [v / length for pair in zip(timeline.starts, timeline.ends, strict=True) for v in pair]
    for i, (ax, s) in enumerate(zip(axes, series, strict=False)):
        colour = PALETTE[i % len(PALETTE)]
        heights = [v for score in s.scores for v in (score, score)]
        ax.fill_between(edges, heights, color=colour, alpha=0.3, linewidth=0)
        ax.plot(edges, heights, color=colour, linewidth=1)
        if s.threshold is not None:
            ax.axhline(s.threshold, color="#555555", linewidth=0.6, linestyle="--")
        ax.set_ylim(0, 1)
        ax.set_yticks([])
        ax.set_ylabel(_short(s.name, 24), rotation=0, ha="right", va="center", fontsize=8)
        for start, _ in timeline.chapter_marks():
            ax.axvline(start / length, color="#888888", linewidth=0.6)
    if not series:
        axes[0].text(0.5, 0.5, "No tag over its threshold.", ha="center", va="center")
        axes[0].set_yticks([])
    axes[-1].set_xlim(0, 1)
    axes[-1].xaxis.set_major_formatter("{x:.0%}")
    axes[-1].set_xlabel("position in the text (vertical lines: chapters)", fontsize=8)
    try:
        fig.savefig(str(path), dpi=dpi, format="png")
    except OSError as exc:
        raise TropemlError(f"{path}: cannot write ({exc.strerror or exc})") from None


def write_plot(timeline: Timeline, path: str | Path) -> Path:
    """Write a timeline to ``path``: SVG or PNG, by the name's ending.

    Raises:
        TropemlError: For another ending, or if the file cannot be written.
    """
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix == ".svg":
        _write_text(out, timeline_svg(timeline) + "\n")
    elif suffix == ".png":
        timeline_png(timeline, out)
    else:
        raise TropemlError(f"{out}: a plot is written as .svg or .png, not {suffix or 'no ending'}")
    return out


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
    _write_text(out, render_report(views, f"tropeml: {name}"))
    return out


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise TropemlError(f"{path}: cannot write ({exc.strerror or exc})") from None
