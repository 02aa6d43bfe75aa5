"""Read and write an EPUB's subjects (``dc:subject``): the tags reading apps and Calibre show.

Only the package document (the OPF) changes. Every other ZIP entry is copied with the same
name, bytes, order, timestamp and compression method, and the ``mimetype`` entry is written
first and stored, as the EPUB specification requires. The new file is written beside the old
one, fsynced and renamed over it, so an interrupted write leaves the old file whole.

tropeml's subjects carry an ``id`` starting with :data:`ID_PREFIX`. In an EPUB 3 package each
also gets a refinement (``<meta refines="#tropeml-1" property="tropeml:model">``); in every
package one ``<meta name="tropeml:model" content="..."/>`` names the model that wrote them. A
re-run removes exactly those entries and adds the new ones, so running twice with the same
tags changes nothing (the file is not even rewritten), and the author's and downloader's own
subjects stay as they were.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tropeml.core.errors import TropemlError
from tropeml.io.epub_zip import (
    DRM_FILES,
    FONT_OBFUSCATION,
    MAX_UNPACKED,
    MIMETYPE,
    check_drm,
    copy_atomically,
    epub_bytes,
    lxml_etree,
    read_zip,
    refuse_drm,
    refuse_read_only,
    replace_file,
    xml_parser,
)

__all__ = [
    "DRM_FILES",
    "FONT_OBFUSCATION",
    "ID_PREFIX",
    "MAX_UNPACKED",
    "META_NAME",
    "MIMETYPE",
    "PREFIX_DECL",
    "SubjectEdit",
    "check_drm",
    "check_epub",
    "edit_opf",
    "epub_bytes",
    "read_subjects",
    "refuse_drm",
    "replace_file",
    "write_subjects",
]


ID_PREFIX = "tropeml-"
"""The ``id`` prefix that marks tropeml's ``dc:subject`` entries."""

META_NAME = "tropeml:model"
"""The ``name`` (EPUB 2 style meta) and ``property`` (EPUB 3 refinement) of tropeml's marks."""

PREFIX_DECL = "tropeml: https://github.com/tropeml/tropeml/ns#"
"""The EPUB 3 ``prefix`` declaration for the ``tropeml:`` property."""

OPF_NS = "http://www.idpf.org/2007/opf"
DC_NS = "http://purl.org/dc/elements/1.1/"
CONTAINER_NS = "urn:oasis:names:tc:opendocument:xmlns:container"
_DECL = re.compile(rb"\A\s*<\?xml[^>]*\?>\s*")


@dataclass(frozen=True)
class SubjectEdit:
    """What :func:`write_subjects` did to one EPUB.

    Attributes:
        path: The EPUB.
        subjects: The subjects tropeml's entries now hold (in order).
        kept: The EPUB's own subjects, left as they were.
        changed: Whether the file was rewritten (``False``: it already held these entries).
        backup: Where the original was copied to (with ``backup=True`` and a change).
    """

    path: str
    subjects: tuple[str, ...]
    kept: tuple[str, ...]
    changed: bool
    backup: str | None = None


def _opf_name(entries: dict[str, bytes], source: str) -> str:
    raw = entries.get("META-INF/container.xml")
    if raw is None:
        raise TropemlError(f"{source}: not a readable EPUB (no META-INF/container.xml)")
    etree = lxml_etree()
    try:
        root = etree.fromstring(raw, xml_parser())
    except etree.XMLSyntaxError as exc:
        raise TropemlError(f"{source}: not a readable EPUB (container.xml: {exc})") from None
    for rootfile in root.iter(f"{{{CONTAINER_NS}}}rootfile"):
        name = rootfile.get("full-path")
        if name and name in entries:
            return str(name)
    raise TropemlError(f"{source}: not a readable EPUB (its package document is missing)")


def _parse_opf(raw: bytes, name: str, source: str) -> tuple[Any, Any]:
    """The OPF tree and its ``metadata`` element."""
    etree = lxml_etree()
    try:
        tree = etree.ElementTree(etree.fromstring(raw, xml_parser()))
    except etree.XMLSyntaxError as exc:
        raise TropemlError(f"{source}: not a readable EPUB ({name}: {exc})") from None
    metadata = tree.getroot().find(f"{{{OPF_NS}}}metadata")
    if metadata is None:
        raise TropemlError(f"{source}: not a readable EPUB ({name} has no <metadata>)")
    return tree, metadata


def _ours(el: Any) -> bool:
    """Whether a metadata child is one of tropeml's entries."""
    if not isinstance(el.tag, str):
        return False
    if el.tag == f"{{{DC_NS}}}subject":
        return str(el.get("id", "")).startswith(ID_PREFIX)
    if el.tag == f"{{{OPF_NS}}}meta":
        return (
            el.get("name") == META_NAME
            or el.get("property") == META_NAME
            or str(el.get("refines", "")).startswith(f"#{ID_PREFIX}")
        )
    return False


def _subjects(metadata: Any) -> tuple[list[str], list[str]]:
    """(the EPUB's own subjects, tropeml's subjects), in document order."""
    own: list[str] = []
    ours: list[str] = []
    for el in metadata.iterchildren(f"{{{DC_NS}}}subject"):
        text = "".join(el.itertext()).strip()
        if text:
            (ours if _ours(el) else own).append(text)
    return own, ours


def _remove(el: Any) -> None:
    """Remove an element, keeping the whitespace that followed it in its place."""
    parent, prev = el.getparent(), el.getprevious()
    if prev is not None:
        prev.tail = el.tail
    else:
        parent.text = el.tail
    parent.remove(el)


def _indent(metadata: Any) -> tuple[str, str]:
    """(whitespace before each child, whitespace before ``</metadata>``)."""
    children = list(metadata)
    inner = metadata.text if metadata.text and not metadata.text.strip() else "\n    "
    closing = children[-1].tail if children else metadata.text
    return inner, closing if closing and not closing.strip() else "\n  "


def read_subjects(path: str | Path) -> tuple[list[str], list[str]]:
    """Return an EPUB's (own subjects, tropeml's subjects).

    Raises:
        TropemlError: If the file is not a readable EPUB.
    """
    source = str(path)
    _, entries = read_zip(Path(path), source)
    name = _opf_name(entries, source)
    _, metadata = _parse_opf(entries[name], name, source)
    return _subjects(metadata)


def check_epub(path: str | Path) -> None:
    """Refuse, with one line, an EPUB that :func:`write_subjects` cannot change.

    Cheap checks first, so a bad file is refused before it is tagged.

    Raises:
        TropemlError: If the file is read-only, not a readable EPUB, or DRM-protected.
    """
    source = str(path)
    p = Path(path)
    refuse_read_only(p, source)
    _, entries = read_zip(p, source)
    check_drm(entries, source)
    name = _opf_name(entries, source)
    _parse_opf(entries[name], name, source)


def edit_opf(
    raw: bytes, name: str, source: str, subjects: Sequence[str], model: str
) -> tuple[bytes, tuple[str, ...], tuple[str, ...]]:
    """Replace tropeml's entries in an OPF document.

    Args:
        raw: The OPF's bytes.
        name: Its name inside the EPUB (for messages).
        source: The EPUB's path (for messages).
        subjects: The subjects to write (any that repeat the EPUB's own are left out).
        model: The model that made them (recorded in the marks).

    Returns:
        The new OPF bytes (``raw`` itself when nothing changes), tropeml's subjects as
        written, and the EPUB's own subjects.
    """
    etree = lxml_etree()
    tree, metadata = _parse_opf(raw, name, source)
    for el in [el for el in metadata if _ours(el)]:
        _remove(el)
    own, _ = _subjects(metadata)
    taken = {s.casefold() for s in own}
    fresh: list[str] = []
    for subject in subjects:
        if subject.strip() and subject.casefold() not in taken:
            taken.add(subject.casefold())
            fresh.append(subject.strip())
    package = tree.getroot()
    epub3 = str(package.get("version", "2.0")).startswith("3")
    new: list[Any] = []
    for i, subject in enumerate(fresh, 1):
        el = etree.Element(f"{{{DC_NS}}}subject", nsmap={"dc": DC_NS})
        el.set("id", f"{ID_PREFIX}{i}")
        el.text = subject
        new.append(el)
        if epub3:
            ref = etree.Element(f"{{{OPF_NS}}}meta")
            ref.set("refines", f"#{ID_PREFIX}{i}")
            ref.set("property", META_NAME)
            ref.text = model
            new.append(ref)
    if fresh:
        mark = etree.Element(f"{{{OPF_NS}}}meta")
        mark.set("name", META_NAME)
        mark.set("content", model)
        new.append(mark)
    _declare_prefix(package, epub3 and bool(fresh))
    inner, closing = _indent(metadata)
    last = metadata[-1] if len(metadata) else None
    for el in new:
        if last is None:
            metadata.text = inner
        else:
            last.tail = inner
        metadata.append(el)
        last = el
    if last is not None:
        last.tail = closing
    out: bytes = etree.tostring(tree, xml_declaration=True, encoding="utf-8")
    if _same_document(out, raw):
        out = raw
    return out, tuple(fresh), tuple(own)


def _declare_prefix(package: Any, wanted: bool) -> None:
    """Add (or, with nothing of tropeml's left, remove) the ``tropeml:`` prefix declaration."""
    declared = str(package.get("prefix", ""))
    has = PREFIX_DECL in declared
    if wanted and not has:
        package.set("prefix", f"{declared.strip()} {PREFIX_DECL}".strip())
    elif not wanted and has:
        rest = " ".join(declared.replace(PREFIX_DECL, " ").split())
        if rest:
            package.set("prefix", rest)
        else:
            del package.attrib["prefix"]


def _same_document(a: bytes, b: bytes) -> bool:
    """Whether two serialisations differ at most in their XML declaration."""
    return a == b or _DECL.sub(b"", a, count=1).rstrip() == _DECL.sub(b"", b, count=1).rstrip()


def write_subjects(
    path: str | Path,
    subjects: Sequence[str],
    model: str,
    backup: bool = False,
) -> SubjectEdit:
    """Write ``subjects`` as tropeml's ``dc:subject`` entries of an EPUB, in place.

    tropeml's earlier entries are replaced, the EPUB's own subjects are kept (a subject that
    repeats one of them is not added again), and nothing is written when the result would be
    the same file.

    Args:
        path: The EPUB.
        subjects: Display names to write, e.g. ``["Hurt/Comfort", "Angst"]``.
        model: The model that made them, recorded in the marks (e.g. ``"default-3f2a9c"``).
        backup: Copy the original to ``NAME.epub.bak`` (once; an existing backup is kept)
            before changing it.

    Raises:
        TropemlError: If the file is read-only, not a readable EPUB, DRM-protected, or
            cannot be written.
    """
    source = str(path)
    p = Path(os.path.realpath(path))  # a symbolic link: change the file it points to
    refuse_read_only(p, source)
    infos, entries = read_zip(p, source)
    check_drm(entries, source)
    name = _opf_name(entries, source)
    new_opf, written, own = edit_opf(entries[name], name, source, subjects, model)
    mime_first = bool(infos) and infos[0].filename == "mimetype"
    mime_stored = mime_first and infos[0].compress_type == zipfile.ZIP_STORED
    if new_opf == entries[name] and mime_first and mime_stored:
        return SubjectEdit(source, written, own, changed=False)
    entries[name] = new_opf
    data = epub_bytes(infos, entries)
    kept: str | None = None
    try:
        if backup:
            bak = p.with_name(p.name + ".bak")
            if not bak.exists():
                copy_atomically(p, bak)
            kept = str(bak)
        replace_file(p, data)
    except PermissionError:
        raise TropemlError(f"{source}: permission denied (cannot write its folder)") from None
    except OSError as exc:
        raise TropemlError(f"{source}: cannot write: {exc.strerror or exc}") from None
    return SubjectEdit(source, written, own, changed=True, backup=kept)
