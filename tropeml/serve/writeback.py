"""Tag a fic and write the tags where readers see them: EPUB metadata, or an HTML copy.

- An EPUB gets tropeml's ``dc:subject`` entries in place (see :mod:`tropeml.io.epub_meta`).
- An HTML download gets a tagged copy, ``NAME.tropeml.html``; the original is not changed
  (see :mod:`tropeml.io.html_meta`).
- Plain text has no metadata: it is refused with a one-line error.

Subjects are the tags' AO3 display names (``TagResult.name``), with an optional prefix
(``"trope: "`` gives ``trope: Hurt/Comfort``); spoiler tags only when asked for.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tropeml.core.errors import TropemlError
from tropeml.core.resources import default_model_dir
from tropeml.core.types import WorkResult
from tropeml.io.ao3 import looks_like_epub, looks_like_html
from tropeml.io.epub_meta import check_epub, write_subjects
from tropeml.io.html_meta import is_copy, write_html_copy
from tropeml.io.readers import DEFAULT_MAX_BYTES, decode_bytes, read_work

if TYPE_CHECKING:
    from tropeml.serve.tagger import Tagger

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Written:
    """Where one work's tags were written.

    Attributes:
        source: The fic as given.
        target: The file that holds the tags (the EPUB itself, or the HTML copy).
        subjects: tropeml's subjects now in that file.
        changed: Whether the file was (re)written; ``False`` when it already held them.
        backup: The original's backup copy, if one was made.
    """

    source: str
    target: str
    subjects: tuple[str, ...]
    changed: bool
    backup: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "target": self.target,
            "subjects": list(self.subjects),
            "changed": self.changed,
            "backup": self.backup,
        }


def model_version(tagger: Tagger, folder: str | Path | None = None) -> str:
    """A short id for the model that made the tags: its name and a hash of its config.

    The hash covers the model folder's ``config.json`` (which records the hashes of its
    classifier files and its thresholds), so a retrained or re-thresholded model gets a new
    version. Without a folder, the tagger's name, tags and thresholds are hashed.

    Args:
        tagger: The loaded tagger.
        folder: Its model folder (``None``: the shipped default, if that is what was loaded).
    """
    name = _UNSAFE.sub("-", tagger.name).strip("-") or "model"
    config = Path(folder if folder is not None else default_model_dir()) / "config.json"
    try:
        digest = hashlib.sha256(config.read_bytes()).hexdigest()
    except OSError:
        state = [tagger.name, tagger.tags, [round(float(t), 6) for t in tagger.thresholds]]
        digest = hashlib.sha256(json.dumps(state).encode()).hexdigest()
    return f"{name}-{digest[:12]}"


def with_min_score(version: str, min_score: float) -> str:
    """The version to mark tags with when only tags scoring ``min_score`` or more are kept.

    A different bar writes a different set of tags, so it is part of the version: a rerun
    with another ``--min-score`` retags instead of skipping (``tiny-0123abcd-min0.7``).
    """
    return f"{version}-min{min_score:g}" if min_score > 0 else version


def subjects_of(result: WorkResult, prefix: str = "", spoilers: bool = False) -> list[str]:
    """The subjects to write for a result: its tags' display names, best first.

    Args:
        result: The work's tags.
        prefix: Put before each name, e.g. ``"trope: "``.
        spoilers: Include spoiler tags.
    """
    kept = result if spoilers else result.without_spoilers()
    return [f"{prefix}{t.name}" for t in kept.tags]


def check_writable(path: str | Path) -> str:
    """Return the kind of file ``path`` is (``"epub"`` or ``"html"``), refusing the others.

    EPUBs are checked before tagging (read-only, corrupt, DRM), so a bad one costs nothing.

    Raises:
        TropemlError: If the file is not an EPUB or HTML, or is an EPUB that cannot be changed.
    """
    source = str(path)
    try:
        with Path(path).open("rb") as fh:
            head = fh.read(8192)
    except FileNotFoundError:
        raise TropemlError(f"{source}: no such file") from None
    except PermissionError:
        raise TropemlError(f"{source}: permission denied") from None
    except OSError as exc:
        raise TropemlError(f"{source}: cannot read: {exc.strerror or exc}") from None
    if head.startswith(b"PK\x03\x04"):
        if not looks_like_epub(head):
            raise TropemlError(f"{source}: not a readable EPUB (a ZIP without its mimetype)")
        check_epub(path)
        return "epub"
    if is_copy(path):
        raise TropemlError(f"{source}: is a tagged copy tropeml wrote; tag the original")
    if looks_like_html(head.decode("utf-8", errors="replace")):  # a sniff: 8 KiB may split a char
        return "html"
    raise TropemlError(
        f"{source}: plain text has no metadata to write tags into (EPUB and HTML only)"
    )


def write_tags(
    tagger: Tagger,
    path: str | Path,
    *,
    prefix: str = "",
    spoilers: bool = False,
    backup: bool = False,
    version: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    min_score: float = 0.0,
) -> tuple[WorkResult, Written]:
    """Tag one EPUB or HTML fic and write its tags (see the module docstring).

    Args:
        tagger: The loaded tagger.
        path: The fic.
        prefix: Put before each tag name.
        spoilers: Write spoiler tags too.
        backup: Keep the original EPUB as ``NAME.epub.bak`` (HTML originals never change).
        version: The model's id for the marks (default: :func:`model_version`); a
            ``min_score`` is added to it (:func:`with_min_score`).
        max_bytes: Refuse larger files.
        min_score: Keep only tags scoring at least this (:meth:`WorkResult.at_least`).

    Returns:
        The work's result (spoilers hidden unless ``spoilers``, tags under ``min_score``
        left out) and where its tags went.

    Raises:
        TropemlError: If the file cannot be read, tagged or written.
    """
    source = str(path)
    kind = check_writable(path)
    work = read_work(path, max_bytes=max_bytes)
    result = tagger.tag(work, source=source)
    result = result if spoilers else result.without_spoilers()
    result = result.at_least(min_score)
    subjects = subjects_of(result, prefix, spoilers=True)
    version = with_min_score(version or model_version(tagger), min_score)
    if kind == "epub":
        edit = write_subjects(path, subjects, version, backup=backup)
        written = Written(source, source, edit.subjects, edit.changed, edit.backup)
    else:
        text = decode_bytes(Path(path).read_bytes(), source)
        target, changed = write_html_copy(path, text, subjects, version)
        written = Written(source, str(target), tuple(subjects), changed)
    return result, written


def write_many(
    tagger: Tagger, paths: Sequence[str | Path], **options: Any
) -> list[tuple[WorkResult, Written]]:
    """:func:`write_tags` for each path, in order (the first bad one raises)."""
    return [write_tags(tagger, p, **options) for p in paths]
