"""Tags for an HTML download (AO3's HTML format), written to a copy: ``NAME.tropeml.html``.

The original is never changed. The copy is the original's text with two additions: a
``<meta name="keywords">`` in the head (with a ``<meta name="tropeml:model">`` naming the
model), and a visible "Tropes (tropeml):" entry, added to the AO3 preface's tag list when
there is one, else at the top of the body. The copy is written atomically, and rebuilt from
the original on every run, so running twice gives the same file.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path

from tropeml.core.errors import TropemlError
from tropeml.core.fileio import atomic_write_bytes

COPY_SUFFIX = ".tropeml.html"
"""The ending of the copy's name: ``fic.html`` -> ``fic.tropeml.html``."""

LABEL = "Tropes (tropeml):"

_HEAD_END = re.compile(r"</head\s*>", re.I)
_BODY_START = re.compile(r"<body\b[^>]*>", re.I)
_TAGS_DL = re.compile(r"<dl\b[^>]*\bclass\s*=\s*[\"'][^\"']*\btags\b[^\"']*[\"'][^>]*>", re.I)
_DL_END = re.compile(r"</dl\s*>", re.I)


def copy_path(path: str | Path) -> Path:
    """Where the tagged copy of an HTML file goes (``NAME.tropeml.html`` beside it)."""
    p = Path(path)
    stem = p.name[: -len(p.suffix)] if p.suffix else p.name
    return p.with_name(stem + COPY_SUFFIX)


def is_copy(path: str | Path) -> bool:
    """Whether ``path`` is a tagged copy written by :func:`write_html_copy`."""
    return str(path).lower().endswith(COPY_SUFFIX)


def tagged_html(text: str, subjects: Sequence[str], model: str) -> str:
    """Return ``text`` (an HTML document) with the tags added to its head and preface."""
    names = ", ".join(subjects)
    meta = (
        f'<meta name="keywords" content="{html.escape(names)}"/>'
        f'<meta name="tropeml:model" content="{html.escape(model)}"/>'
    )
    m = _HEAD_END.search(text)
    if m:
        text = text[: m.start()] + meta + "\n" + text[m.start() :]
    shown = html.escape(names) if subjects else "(none)"
    entry = f'<dt class="tropeml">{LABEL}</dt><dd class="tropeml">{shown}</dd>\n'
    dl = _TAGS_DL.search(text)
    end = _DL_END.search(text, dl.end()) if dl else None
    if end is not None:
        return text[: end.start()] + entry + text[end.start() :]
    block = f'<div class="tropeml"><dl>{entry}</dl></div>\n'
    body = _BODY_START.search(text)
    if body is not None:
        return text[: body.end()] + "\n" + block + text[body.end() :]
    return block + text


def write_html_copy(
    path: str | Path, text: str, subjects: Sequence[str], model: str
) -> tuple[Path, bool]:
    """Write the tagged copy of an HTML file; return its path and whether it changed.

    Args:
        path: The original HTML file (left unchanged).
        text: Its decoded text.
        subjects: Display names to add.
        model: The model that made them.

    Raises:
        TropemlError: If the copy cannot be written.
    """
    out = copy_path(path)
    data = tagged_html(text, subjects, model).encode("utf-8")
    try:
        if out.is_file() and out.read_bytes() == data:
            return out, False
        atomic_write_bytes(out, data)
    except PermissionError:
        raise TropemlError(f"{out}: permission denied (cannot write the tagged copy)") from None
    except OSError as exc:
        raise TropemlError(f"{out}: cannot write: {exc.strerror or exc}") from None
    return out, True
