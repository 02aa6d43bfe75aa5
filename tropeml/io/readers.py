"""Read fics from disk or stdin into :class:`~tropeml.core.types.Work` objects.

The format is picked by content, not by extension (see :func:`parse_bytes`):

- an EPUB (a ZIP declaring ``application/epub+zip``): an AO3 EPUB download or any EPUB;
- HTML: an AO3 HTML download, an AO3 work page saved from the browser, or other HTML
  (see :mod:`tropeml.io.ao3`);
- plain text (UTF-8, UTF-16 with a BOM, or Windows-1252), including text copied from an AO3
  work page with its "Work Header" / "Work Text:" lines, which are not story text (the tags
  listed there are read).
"""

from __future__ import annotations

import codecs
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from tropeml.core.errors import TropemlError
from tropeml.core.types import Region, Work, WorkMeta
from tropeml.io.ao3 import (
    field_name,
    looks_like_epub,
    looks_like_html,
    meta_from_fields,
    parse_epub,
    parse_html,
    split_tag_line,
)

FIC_SUFFIXES = (".txt", ".html", ".htm", ".xhtml", ".epub")
"""File name endings that folder expansion picks up (case-insensitive)."""

DEFAULT_MAX_BYTES = 50_000_000
"""Largest file read by default (50 MB, a few novels). Override with ``max_bytes``."""

_AO3_HEADER = re.compile(r"\A\s*Work Header\s*\n(?P<head>.*?)^\s*Work Text:\s*$\n?", re.M | re.S)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_SNIFF = 8192  # bytes looked at to tell text from binary
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _binary_start(data: bytes) -> bool:
    """Whether a file's first bytes hold a NUL without a Unicode BOM: a binary file."""
    return b"\x00" in data[:_SNIFF] and not data.startswith((*_UTF16_BOMS, codecs.BOM_UTF8))


def decode_bytes(data: bytes, where: str) -> str:
    r"""Decode a text file's bytes, refusing binary data.

    Newlines are normalised to ``\\n``; offsets elsewhere point into the returned string.

    Raises:
        TropemlError: If the data is empty, binary or in no supported encoding.
    """
    if not data:
        raise TropemlError(f"{where}: file is empty")
    if _binary_start(data):
        raise TropemlError(f"{where}: looks like a binary file, not text")
    if data.startswith(_UTF16_BOMS):
        text = _decode(data, "utf-16", where)
    elif data.startswith(codecs.BOM_UTF8):
        text = _decode(data, "utf-8-sig", where)
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = _decode(data, "cp1252", where)
    sample = text[:8192]
    if sample and len(_CONTROL.findall(sample)) > 0.01 * len(sample):
        raise TropemlError(f"{where}: looks like a binary file, not text")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise TropemlError(f"{where}: file holds only whitespace")
    return text


def _decode(data: bytes, encoding: str, where: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise TropemlError(
            f"{where}: not readable as text (tried UTF-8 and {encoding}: {exc.reason} "
            f"at byte {exc.start})"
        ) from None


def parse_text(text: str, source: str = "<text>") -> Work:
    """Build a :class:`Work` from plain text, skipping an AO3 "Work Header" block if present."""
    match = _AO3_HEADER.match(text)
    if not match:
        return Work(text=text, source=source, regions=(Region(0, len(text)),))
    head_lines = [ln.strip() for ln in match.group("head").splitlines() if ln.strip()]
    title = head_lines[0] if head_lines else None
    return Work(
        text=text,
        source=source,
        regions=(Region(match.end(), len(text)),),
        title=title,
        meta=_header_meta(head_lines[1:], title),
    )


def _header_meta(lines: list[str], title: str | None) -> WorkMeta | None:
    """Read "Label: value" (or "Label:" then value lines) tag lists from a Work Header."""
    fields: dict[str, list[str]] = {}
    current: str | None = None
    for line in lines:
        label, colon, value = line.partition(":")
        name = field_name(label) if colon else None
        if name is not None or (colon and not value.strip() and len(label) < 30):
            current = name  # a known label, or another one ("Summary:") that ends the list
            if name is not None and value.strip():
                fields.setdefault(name, []).extend(split_tag_line(value))
        elif current is not None:
            fields.setdefault(current, []).extend(split_tag_line(line))
    if not fields:
        return None
    return meta_from_fields(fields, format="text", title=title)


def parse_bytes(data: bytes, source: str = "<bytes>") -> Work:
    """Read a fic from its bytes, picking the format by content (EPUB, HTML or text).

    Raises:
        TropemlError: If the data is empty, binary (and not an EPUB), undecodable, or a
            document without story text.
    """
    if looks_like_epub(data):
        return parse_epub(data, source)
    text = decode_bytes(data, source)
    if looks_like_html(text):
        return parse_html(text, source)
    return parse_text(text, source=source)


def read_work(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Work:
    """Read one fic from a file path, or from stdin when ``path`` is ``"-"``.

    Args:
        path: A file path, or ``"-"`` for standard input.
        max_bytes: Refuse files larger than this many bytes.

    Raises:
        TropemlError: If the file is missing, unreadable, too large, empty or binary.
    """
    source = str(path)
    if source == "-":
        data = sys.stdin.buffer.read(max_bytes + 1)
    else:
        p = Path(path)
        if "\x00" in source:  # the OS cannot name such a file; os.stat raises ValueError
            raise TropemlError(f"{source!r}: a path cannot contain a NUL byte")
        try:
            size = p.stat().st_size
            if p.is_dir():
                raise TropemlError(
                    f"{source}: is a directory (use tropeml.io.readers.expand_paths)"
                )
            if size > max_bytes:
                raise TropemlError(
                    f"{source}: file is {size:,} bytes, over the {max_bytes:,}-byte limit "
                    "(raise it with --max-bytes)"
                )
            with p.open("rb") as fh:
                head = fh.read(min(_SNIFF, max_bytes + 1))
                if _binary_start(head) and not head.startswith(b"PK"):  # not a ZIP/EPUB
                    raise TropemlError(f"{source}: looks like a binary file, not text")
                data = head + fh.read(max_bytes + 1 - len(head))
        except FileNotFoundError:
            if p.is_symlink():
                raise TropemlError(
                    f"{source}: broken symbolic link (to {os.readlink(p)})"
                ) from None
            raise TropemlError(f"{source}: no such file") from None
        except PermissionError:
            raise TropemlError(f"{source}: permission denied") from None
        except OSError as exc:
            raise TropemlError(f"{source}: cannot read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise TropemlError(f"{source}: input is over the {max_bytes:,}-byte limit")
    return parse_bytes(data, source)


def expand_paths(paths: Iterable[str | Path]) -> list[str]:
    """Expand directories into the fics inside them (recursively, sorted).

    A folder's ``.txt``, ``.html``, ``.htm``, ``.xhtml`` and ``.epub`` files are picked up
    (see :data:`FIC_SUFFIXES`); a file named explicitly is read whatever its name.

    ``"-"`` (stdin) and plain files pass through unchanged, in the order given.

    Raises:
        TropemlError: If a path does not exist or a directory holds no fic.
    """
    out: list[str] = []
    for raw in paths:
        item = str(raw)
        if item == "-":
            out.append(item)
            continue
        p = Path(item)
        if p.is_dir():
            found = sorted(
                str(f)
                for f in p.rglob("*")
                if f.suffix.lower() in FIC_SUFFIXES
                and f.is_file()
                and not _hidden(f.relative_to(p))
            )
            if not found:
                raise TropemlError(
                    f"{item}: directory holds no {', '.join(FIC_SUFFIXES[:-1])} or .epub files"
                )
            out.extend(found)
        elif p.exists() or p.is_symlink():
            out.append(item)
        else:
            raise TropemlError(f"{item}: no such file or directory")
    return out


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts) or rel.name.startswith(os.extsep)
