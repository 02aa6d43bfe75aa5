"""The trope timeline drawn: SVG by hand, PNG with matplotlib, written by the file's ending.

:func:`timeline_svg` draws one row per tag, its passage scores as a step line along the text
(x: character offset, each passage drawn over the stretch of text it covers), the threshold
dashed, chapters marked. :func:`write_plot` writes it alone as ``.svg``, or as ``.png`` with
matplotlib (the ``plot`` extra). The page and the report (:mod:`tropeml.serve.report`) show
the same SVG.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from tropeml.core.errors import TropemlError
from tropeml.core.types import Timeline

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
        write_text(out, timeline_svg(timeline) + "\n")
    elif suffix == ".png":
        timeline_png(timeline, out)
    else:
        raise TropemlError(f"{out}: a plot is written as .svg or .png, not {suffix or 'no ending'}")
    return out


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8, with a one-line error if that fails."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise TropemlError(f"{path}: cannot write ({exc.strerror or exc})") from None
