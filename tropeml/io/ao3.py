"""Read AO3 downloads (HTML, EPUB) and work pages saved from the browser.

AO3 offers two layouts of the same work:

- The **download** (HTML, and the EPUB built from it): a ``#preface`` with a ``dl.tags`` list
  of ``dt`` labels ("Rating:", "Additional Tags:", ...) and ``dd`` values, the title in an
  ``h1``, the byline, the summary in a ``blockquote.userstuff``; then ``#chapters``, where a
  ``div.meta`` holding the chapter heading (``h2``) precedes each ``div.userstuff`` of text.
- The **work page** (the live page, saved from the browser): a ``dl.work.meta`` whose ``dd``
  elements carry the kind as a class (``dd.freeform``, ``dd.rating``, ...), and inside
  ``#chapters`` one ``div.chapter`` per chapter with an ``h3.title`` and a ``div.userstuff``.

Both are parsed with an HTML5 parser (selectolax/lexbor) and turned into a
:class:`~tropeml.core.types.Work` whose ``text`` is the story text, chapter by chapter, with one
:class:`~tropeml.core.types.Region` per chapter, so chapter boundaries are passage boundaries.
EPUBs are opened with ebooklib; their documents are read in spine order as one download.

The author tags a work carries are mapped to trope ids by :mod:`tropeml.io.author_tags`
(re-exported here, where tropeml 0.1 had them).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tropeml.core.errors import TropemlError
from tropeml.core.types import Region, Work, WorkMeta
from tropeml.io.author_tags import (
    AuthorTags as AuthorTags,  # re-exported: 0.1's place
)
from tropeml.io.author_tags import (
    map_author_tags as map_author_tags,
)
from tropeml.io.author_tags import (
    resolve_tag as resolve_tag,
)

if TYPE_CHECKING:
    from selectolax.lexbor import LexborNode

EPUB_MIMETYPE = b"application/epub+zip"
SCENE_BREAK = "* * *"

_BLOCK = frozenset(
    "p div blockquote h1 h2 h3 h4 h5 h6 li ul ol dl dt dd pre section article header footer "
    "table tr center aside figure main nav details summary".split()
)
_SKIP = frozenset({"script", "style", "noscript", "template", "-comment", "head", "title"})
_SPACE = re.compile(r"\s+")
_MARKUP = re.compile(
    r"\A\ufeff?\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>]|\?xml)", re.I | re.S
)
_BODY_TAG = re.compile(r"<(?:body|div|p)[\s>]", re.I)

# dt label (normalised) -> WorkMeta field
_FIELDS = {
    "rating": "rating",
    "ratings": "rating",
    "archive warning": "warnings",
    "archive warnings": "warnings",
    "category": "categories",
    "categories": "categories",
    "fandom": "fandoms",
    "fandoms": "fandoms",
    "relationship": "relationships",
    "relationships": "relationships",
    "character": "characters",
    "characters": "characters",
    "additional tags": "freeform",
    "additional tag": "freeform",
    "freeform": "freeform",
    "freeforms": "freeform",
    "tags": "freeform",
    "warning": "warnings",
}
# the class of a work page's dd -> WorkMeta field
_PAGE_CLASSES = {
    "rating": "rating",
    "warning": "warnings",
    "category": "categories",
    "fandom": "fandoms",
    "relationship": "relationships",
    "character": "characters",
    "freeform": "freeform",
}


def looks_like_epub(data: bytes) -> bool:
    """Return whether ``data`` is a ZIP whose first entry declares the EPUB mimetype."""
    return data.startswith(b"PK\x03\x04") and EPUB_MIMETYPE in data[:200]


def looks_like_html(text: str) -> bool:
    """Return whether ``text`` starts like an HTML or XHTML document (not by extension).

    A doctype, ``<html>`` or an XML declaration at the start counts; so does a fragment that
    starts with a tag and holds a ``<body>``, ``<div>`` or ``<p>`` early on.
    """
    head = text[:4096]
    if _MARKUP.match(head):
        return True
    return head.lstrip("\ufeff \t\n").startswith("<") and bool(_BODY_TAG.search(head))


def field_name(label: str) -> str | None:
    """Map a tag-list label ("Additional Tags:", "Archive Warning") to a WorkMeta field."""
    key = _SPACE.sub(" ", label.strip().rstrip(":").strip()).casefold()
    return _FIELDS.get(key)


def meta_from_fields(fields: dict[str, list[str]], **known: Any) -> WorkMeta:
    """Build :class:`WorkMeta` from ``{field: values}`` plus known title, authors, etc."""
    values: dict[str, Any] = dict(known)
    for name, items in fields.items():
        clean = tuple(dict.fromkeys(v for v in (" ".join(i.split()) for i in items) if v))
        if name == "rating":
            values["rating"] = ", ".join(clean) or None
        else:
            values[name] = clean
    return WorkMeta(**values)


def split_tag_line(value: str) -> list[str]:
    """Split a comma-separated tag line as copied from AO3 (tags never hold a comma)."""
    return [t.strip() for t in value.split(",") if t.strip()]


# ----------------------------------------------------------------------------- text


def _text(node: LexborNode) -> str:
    """Inline text of a node, whitespace collapsed."""
    return " ".join(paragraphs(node)).strip()


def paragraphs(node: LexborNode) -> list[str]:
    """The node's text as paragraphs: block elements split it, ``<br>`` breaks a line.

    An empty paragraph (``<p>&nbsp;</p>``, a common scene break) and ``<hr>`` become an empty
    string and :data:`SCENE_BREAK`, so the passage splitter sees the break.
    """
    out: list[str] = []
    current: list[str] = []

    def flush(block: bool) -> None:
        raw = "".join(current)
        current.clear()
        lines = [" ".join(line.split()) for line in raw.split("\n")]
        text = "\n".join(line for line in lines if line)
        if text:
            out.append(text)
        elif block and raw:  # a paragraph holding only spaces: an intended blank line
            out.append("")

    def walk(parent: LexborNode) -> None:
        for child in parent.iter(include_text=True):
            tag = child.tag
            if tag == "-text":
                current.append(_SPACE.sub(" ", child.text_content or ""))
            elif tag == "br":
                current.append("\n")
            elif tag == "hr":
                flush(False)
                out.append(SCENE_BREAK)
            elif tag in _SKIP:
                continue
            elif tag in _BLOCK:
                flush(False)
                walk(child)
                flush(True)
            else:
                walk(child)

    walk(node)
    flush(False)
    return out


def _join(paras: list[str]) -> str:
    """Join paragraphs with a blank line; runs of empty ones make one scene break."""
    parts: list[str] = []
    blank = False
    for para in paras:
        if not para:
            blank = bool(parts)
            continue
        if blank:
            parts.append("")  # a third newline: a blank run, which the splitter cuts at
            blank = False
        parts.append(para)
    return "\n\n".join(parts)


def _classes(node: LexborNode) -> set[str]:
    return set((node.attributes.get("class") or "").split())


def _children(node: LexborNode) -> Iterator[LexborNode]:
    for child in node.iter(include_text=False):
        if child.tag not in _SKIP:
            yield child


# ----------------------------------------------------------------------------- layouts


def _download_meta(tree: Any, fmt: str) -> WorkMeta:
    fields: dict[str, list[str]] = {}
    for dl in tree.css("#preface dl.tags, dl.tags"):
        label: str | None = None
        for child in _children(dl):
            if child.tag == "dt":
                label = field_name(_text(child))
            elif child.tag == "dd" and label:
                links = [_text(a) for a in child.css("a")]
                fields.setdefault(label, []).extend(links or split_tag_line(_text(child)))
        if fields:
            break
    title_node = tree.css_first("#preface .meta h1") or tree.css_first("#preface h1")
    authors = [_text(a) for a in tree.css("#preface .byline a[rel=author]")]
    if not authors and (byline := tree.css_first("#preface .byline")):
        authors = [re.sub(r"^by\s+", "", _text(byline))]
    summary = None
    for p in tree.css("#preface .meta p, #preface p"):
        if _text(p).rstrip(":").casefold() == "summary":
            sibling = p.next
            while sibling is not None and sibling.tag in ("-text", "-comment"):
                sibling = sibling.next
            if sibling is not None and sibling.tag == "blockquote":
                summary = _join(paragraphs(sibling)) or None
            break
    return meta_from_fields(
        fields,
        format=fmt,
        title=_text(title_node) if title_node else None,
        authors=tuple(a for a in authors if a),
        summary=summary,
    )


def _download_chapters(tree: Any) -> list[tuple[str | None, list[str]]]:
    chapters: list[tuple[str | None, list[str]]] = []
    containers = tree.css("#chapters")
    pending: str | None = None
    for container in containers:
        parts = list(_children(container))
        has_blocks = any("userstuff" in _classes(c) or "meta" in _classes(c) for c in parts)
        if not has_blocks:  # a one-chapter download: the text sits in #chapters itself
            chapters.append((None, paragraphs(container)))
            continue
        for child in parts:
            classes = _classes(child)
            if "meta" in classes:
                heading = child.css_first("h2") or child.css_first(".heading")
                if heading is not None:
                    pending = _text(heading) or None
            elif "userstuff" in classes:
                chapters.append((pending, paragraphs(child)))
                pending = None
            elif child.tag in ("h2", "h3") and "heading" in classes:
                pending = _text(child) or None
    return chapters


def _page_meta(tree: Any) -> WorkMeta:
    fields: dict[str, list[str]] = {}
    dl = tree.css_first("dl.work.meta") or tree.css_first("dl.meta")
    if dl is not None:
        for dd in dl.css("dd"):
            kind = next((_PAGE_CLASSES[c] for c in _classes(dd) if c in _PAGE_CLASSES), None)
            if kind is not None:
                links = [_text(a) for a in dd.css("a.tag")] or [_text(a) for a in dd.css("a")]
                fields.setdefault(kind, []).extend(links or split_tag_line(_text(dd)))
    preface = tree.css_first("#workskin .preface") or tree
    title_node = preface.css_first("h2.title")
    authors = [_text(a) for a in preface.css(".byline a[rel=author]")]
    summary_node = preface.css_first(".summary blockquote.userstuff")
    return meta_from_fields(
        fields,
        format="ao3-page",
        title=_text(title_node) if title_node else None,
        authors=tuple(a for a in authors if a),
        summary=_join(paragraphs(summary_node)) or None if summary_node else None,
    )


def _page_chapters(tree: Any) -> list[tuple[str | None, list[str]]]:
    for landmark in tree.css("#chapters h3.landmark"):
        landmark.decompose()  # "Chapter Text" / "Work Text:" headings are not story text
    blocks = tree.css("#chapters div.chapter")
    blocks = [b for b in blocks if "preface" not in _classes(b) and b.css_first(".userstuff")]
    chapters: list[tuple[str | None, list[str]]] = []
    for block in blocks:
        heading = block.css_first(".chapter.preface h3.title") or block.css_first("h3.title")
        body = block.css_first("div.userstuff")
        if body is not None:
            chapters.append((_text(heading) if heading else None, paragraphs(body)))
    if not chapters:
        body = tree.css_first("#chapters .userstuff") or tree.css_first("#chapters")
        if body is not None:
            chapters.append((None, paragraphs(body)))
    return chapters


def _assemble(chapters: list[tuple[str | None, list[str]]], source: str, meta: WorkMeta) -> Work:
    """Lay chapters out as text: a heading line, then the chapter's paragraphs."""
    text = ""
    regions: list[Region] = []
    numbered = len(chapters) > 1
    for i, (title, paras) in enumerate(chapters, 1):
        body = _join(paras)
        if not body.strip():
            continue
        name = title or (f"Chapter {i}" if numbered else None)
        if text:
            text += "\n\n\n"
        if name:
            text += name + "\n\n"
        start = len(text)
        text += body
        regions.append(Region(start, len(text), name))
    if not regions:
        raise TropemlError(f"{source}: no story text found in the document")
    return Work(
        text=text + "\n", source=source, regions=tuple(regions), title=meta.title, meta=meta
    )


def parse_html(html: str | bytes, source: str = "<html>", fmt: str = "ao3-html") -> Work:
    """Parse an AO3 download, an AO3 work page, or any other HTML into a :class:`Work`.

    Args:
        html: The document.
        source: Name for messages and results.
        fmt: The format to record for a download layout (``"ao3-html"`` or ``"ao3-epub"``).

    Raises:
        TropemlError: If the document holds no story text.
    """
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    if tree.css_first("dl.work.meta") is not None or tree.css_first("#workskin") is not None:
        meta, chapters = _page_meta(tree), _page_chapters(tree)
    elif tree.css_first("#chapters") is not None or tree.css_first("#preface") is not None:
        meta, chapters = _download_meta(tree, fmt), _download_chapters(tree)
    else:
        title = tree.css_first("title")
        meta = WorkMeta(format="html", title=_text(title) or None if title else None)
        body = tree.body or tree.root
        chapters = [(None, paragraphs(body))] if body is not None else []
    return _assemble(chapters, source, meta)


def parse_epub(data: bytes, source: str = "<epub>") -> Work:
    """Parse an EPUB (an AO3 EPUB download or any other) into a :class:`Work`.

    The spine's documents are joined in reading order and parsed as one AO3 download, so the
    preface tag list and the chapter blocks are found wherever the EPUB splits them.

    Raises:
        TropemlError: If the EPUB is corrupt or holds no story text.
    """
    import ebooklib
    from ebooklib import epub
    from selectolax.lexbor import LexborHTMLParser

    try:
        book = epub.read_epub(io.BytesIO(data), options={"ignore_ncx": True})
    except (zipfile.BadZipFile, KeyError, ValueError, AttributeError, OSError) as exc:
        raise TropemlError(f"{source}: not a readable EPUB ({exc})") from None
    except Exception as exc:  # ebooklib raises its own EpubException and lxml errors
        raise TropemlError(f"{source}: not a readable EPUB ({type(exc).__name__})") from None
    bodies: list[str] = []
    for idref, _linear in book.spine:
        item = book.get_item_with_id(idref)
        if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT:
            continue
        doc = LexborHTMLParser(item.get_content())
        body = doc.body
        if body is not None:
            bodies.append(body.inner_html or "")
    work = parse_html(
        "<html><body>" + "\n".join(bodies) + "</body></html>", source=source, fmt="ao3-epub"
    )
    meta = work.meta
    if meta is not None and meta.format == "html":  # no AO3 markup: use the EPUB's metadata
        titles = book.get_metadata("DC", "title")
        creators = book.get_metadata("DC", "creator")
        meta = WorkMeta(
            format="epub",
            title=str(titles[0][0]) if titles else None,
            authors=tuple(str(c[0]) for c in creators),
        )
        work = Work(work.text, work.source, work.regions, meta.title, meta)
    return work
