"""An EPUB as a ZIP: reading it (size limit, DRM check), rebuilding it, replacing it atomically.

:mod:`tropeml.io.epub_meta` edits the package document; this module does the rest. A rebuilt
EPUB keeps every entry's name, bytes, order, timestamp and compression method, with the
``mimetype`` entry first and stored, as the EPUB specification requires. The new file is
written beside the old one, fsynced and renamed over it, so an interrupted write leaves the
old file whole.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tropeml.core.errors import TropemlError
from tropeml.core.fileio import atomic_write_bytes, fsync_dir

ENC_NS = "http://www.w3.org/2001/04/xmlenc#"

MIMETYPE = b"application/epub+zip"
MAX_UNPACKED = 1 << 30
"""Largest total unpacked size of an EPUB that is rewritten (1 GiB; zip bombs are refused)."""

FONT_OBFUSCATION = frozenset(
    {"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"}
)
"""Encryption algorithms that only obfuscate embedded fonts: not DRM."""

DRM_FILES = ("META-INF/rights.xml", "META-INF/sinf.xml")
"""Files that DRM schemes (Adobe ADEPT, Apple FairPlay) add to an EPUB."""


def lxml_etree() -> Any:
    """``lxml.etree``, imported when first needed."""
    from lxml import etree

    return etree


def xml_parser() -> Any:
    """An XML parser that resolves no entities and reaches no network."""
    etree = lxml_etree()
    return etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False)


def read_zip(path: Path, source: str) -> tuple[list[zipfile.ZipInfo], dict[str, bytes]]:
    """Every entry's info (in order) and bytes, or a one-line error for a broken ZIP."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            size = sum(info.file_size for info in infos)
            if size > MAX_UNPACKED:
                raise TropemlError(
                    f"{source}: EPUB unpacks to {size:,} bytes, over the "
                    f"{MAX_UNPACKED:,}-byte limit for rewriting it"
                )
            data = {info.filename: zf.read(info) for info in infos}
    except FileNotFoundError:
        raise TropemlError(f"{source}: no such file") from None
    except PermissionError:
        raise TropemlError(f"{source}: permission denied") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise TropemlError(f"{source}: not a readable EPUB ({exc})") from None
    except NotImplementedError as exc:  # an unsupported compression method
        raise TropemlError(f"{source}: not a readable EPUB ({exc})") from None
    except OSError as exc:
        raise TropemlError(f"{source}: cannot read: {exc.strerror or exc}") from None
    return infos, data


def check_drm(entries: dict[str, bytes], source: str) -> None:
    """Refuse an EPUB whose content is encrypted (DRM); font obfuscation is fine.

    Raises:
        TropemlError: If ``META-INF/encryption.xml`` encrypts anything but fonts, cannot be
            read, or a DRM scheme's rights file is present.
    """
    for name in DRM_FILES:
        if name in entries:
            raise TropemlError(
                f"{source}: DRM-protected EPUB ({name}): tropeml neither reads nor changes it"
            )
    raw = entries.get("META-INF/encryption.xml")
    if raw is None:
        return
    etree = lxml_etree()
    try:
        root = etree.fromstring(raw, xml_parser())
    except etree.XMLSyntaxError:
        raise TropemlError(
            f"{source}: DRM-protected EPUB (unreadable META-INF/encryption.xml): "
            "tropeml neither reads nor changes it"
        ) from None
    for method in root.iter(f"{{{ENC_NS}}}EncryptionMethod"):
        if method.get("Algorithm") not in FONT_OBFUSCATION:
            raise TropemlError(
                f"{source}: DRM-protected EPUB (encrypted content in META-INF/encryption.xml): "
                "tropeml neither reads nor changes it"
            )


def refuse_drm(path: str | Path) -> None:
    """Refuse, with one line, an EPUB that is DRM-protected (or not a readable ZIP).

    Raises:
        TropemlError: If the file is not a readable ZIP or its content is encrypted.
    """
    _, entries = read_zip(Path(path), str(path))
    check_drm(entries, str(path))


def refuse_read_only(p: Path, source: str) -> None:
    """Refuse, with one line, a file that is missing, unreadable or read-only."""
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise TropemlError(f"{source}: no such file") from None
    except OSError as exc:
        raise TropemlError(f"{source}: cannot read: {exc.strerror or exc}") from None
    if not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise TropemlError(f"{source}: file is read-only; not changed (chmod u+w to allow it)")


def epub_bytes(infos: Sequence[zipfile.ZipInfo], entries: dict[str, bytes]) -> bytes:
    """Build an EPUB's bytes: ``mimetype`` first and stored, then the other entries in order.

    Each entry keeps its name, bytes, timestamp, permissions and compression method, so the
    same input gives the same output, byte for byte.
    """
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        mime = zipfile.ZipInfo("mimetype", _date_of(infos, "mimetype"))
        mime.compress_type = zipfile.ZIP_STORED
        zf.writestr(mime, entries.get("mimetype", MIMETYPE))
        for info in infos:
            if info.filename == "mimetype":
                continue
            copy = zipfile.ZipInfo(info.filename, info.date_time)
            copy.compress_type = info.compress_type
            copy.external_attr = info.external_attr
            copy.create_system = info.create_system
            copy.comment = info.comment
            zf.writestr(copy, entries[info.filename])
    return buf.getvalue()


def _date_of(infos: Sequence[zipfile.ZipInfo], name: str) -> tuple[int, int, int, int, int, int]:
    for info in infos:
        if info.filename == name:
            return info.date_time
    return (1980, 1, 1, 0, 0, 0)


def replace_file(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``, keeping its permission bits.

    A temporary file in the same folder is written, fsynced, given the old file's mode and
    renamed over it; a kill at any moment leaves either the old or the new file.
    """
    atomic_write_bytes(path, data, mode=stat.S_IMODE(path.stat().st_mode), suffix=".tmp")


def copy_atomically(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` through a fsynced temporary file renamed into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        shutil.copy2(src, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(dst.parent)
