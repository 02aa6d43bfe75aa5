"""Tag every book of a Calibre library through Calibre's own command line, ``calibredb``.

tropeml never opens Calibre's ``metadata.db``: books are listed with ``calibredb list``, their
EPUB (else HTML, else TXT) format file is read where Calibre keeps it (read only), and the
tags go back with ``calibredb set_metadata``:

- by default merged into the book's tags: the tags tropeml added last time are replaced,
  every other tag is kept, and a tag the book already had is not added (nor later removed);
- or, with ``column="#tropes"``, into a custom column that holds tropeml's tags only.

Each tagged book gets an identifier ``tropeml:VERSION+NAME+NAME...`` (the model version and
the URL-quoted tags tropeml added), so a rerun skips the books this model version already
tagged (an interrupted run resumes) and a new model replaces exactly its predecessor's tags.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from tropeml.core.errors import TropemlError
from tropeml.io.epub_zip import refuse_drm
from tropeml.io.readers import DEFAULT_MAX_BYTES, read_work
from tropeml.serve.writeback import subjects_of, with_min_score

if TYPE_CHECKING:
    from tropeml.serve.tagger import Tagger

IDENTIFIER = "tropeml"
"""The identifier type that records which model version tagged a book."""

FORMATS = ("epub", "html", "htm", "xhtml", "txt")
"""Formats read, in order of preference."""

INSTALL_HINT = (
    "calibredb not found on the PATH: install Calibre (https://calibre-ebook.com/download, "
    "or `sudo apt install calibre` on Debian and Ubuntu), or set TROPEML_CALIBREDB to it"
)


@dataclass(frozen=True)
class Book:
    """A book as ``calibredb list`` reports it.

    Attributes:
        id: Calibre's book id.
        title: The title.
        formats: Paths of its format files.
        tags: Its tags.
        identifiers: Its identifiers (``{"isbn": "...", "tropeml": "..."}``).
        column: The custom column's values, when a column is used.
    """

    id: int
    title: str
    formats: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    identifiers: dict[str, str] = field(default_factory=dict)
    column: tuple[str, ...] = ()

    def fic(self) -> str | None:
        """The format file to read: EPUB, else HTML, else TXT (``None`` if it has none)."""
        by_ext = {Path(f).suffix.lower().lstrip("."): f for f in self.formats}
        return next((by_ext[e] for e in FORMATS if e in by_ext), None)

    def mark(self) -> tuple[str | None, tuple[str, ...]]:
        """(model version, the tags tropeml added) from the book's ``tropeml`` identifier."""
        value = self.identifiers.get(IDENTIFIER)
        if not value:
            return None, ()
        version, *names = value.split("+")
        return version, tuple(unquote(n) for n in names if n)


@dataclass(frozen=True)
class BookOutcome:
    """What happened to one book.

    Attributes:
        book: The book.
        status: ``"tagged"``, ``"unchanged"`` (its tags were already right), ``"skipped"``
            (this model version tagged it before), ``"would-tag"`` (a dry run) or ``"error"``.
        added: Tags added (to the tags, or the column).
        removed: Tags removed (tropeml's earlier ones that no longer apply).
        error: The one-line error, for ``"error"``.
    """

    book: Book
    status: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    error: str | None = None


class Calibre:
    """A Calibre library driven through ``calibredb`` (never its database file).

    Args:
        library: The library folder (the one holding ``metadata.db``).
        calibredb: The ``calibredb`` program (default: ``$TROPEML_CALIBREDB``, else the PATH).

    Raises:
        TropemlError: If ``calibredb`` is missing or the folder is not a Calibre library.
    """

    def __init__(self, library: str | Path, calibredb: str | None = None) -> None:
        self.library = Path(library)
        program = calibredb or os.environ.get("TROPEML_CALIBREDB") or "calibredb"
        found = shutil.which(program)
        if found is None:
            raise TropemlError(INSTALL_HINT)
        self.program = found
        if not (self.library / "metadata.db").is_file():
            raise TropemlError(f"{library}: not a Calibre library (no metadata.db in it)")

    def run(self, *args: str) -> str:
        """Run one ``calibredb`` command on the library; return its stdout.

        Raises:
            TropemlError: If it fails (its last error line is quoted).
        """
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "CALIBRE_NO_NATIVE_FILEDIALOGS": "1"}
        cmd = [self.program, args[0], "--with-library", str(self.library), *args[1:]]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, env=env, timeout=600, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TropemlError(f"{self.library}: calibredb {args[0]} failed: {exc}") from None
        if proc.returncode != 0:
            lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
            why = lines[-1] if lines else f"exit status {proc.returncode}"
            raise TropemlError(f"{self.library}: calibredb {args[0]} failed: {why}")
        return proc.stdout

    def columns(self) -> set[str]:
        """The custom columns' lookup names, without ``#``."""
        out = self.run("custom_columns")
        return {ln.rsplit(" (", 1)[0].strip() for ln in out.splitlines() if ln.strip()}

    def books(self, column: str | None = None) -> list[Book]:
        """Every book, by id."""
        fields = "id,title,formats,tags,identifiers" + (f",*{column}" if column else "")
        raw = self.run("list", "--for-machine", "--fields", fields)
        try:
            rows = json.loads(raw) if raw.strip() else []
        except json.JSONDecodeError:
            raise TropemlError(f"{self.library}: calibredb list gave no JSON") from None
        books = [
            Book(
                id=int(row["id"]),
                title=str(row.get("title") or ""),
                formats=tuple(row.get("formats") or ()),
                tags=tuple(row.get("tags") or ()),
                identifiers=dict(row.get("identifiers") or {}),
                column=_values(row.get(f"*{column}")) if column else (),
            )
            for row in rows
        ]
        return sorted(books, key=lambda b: b.id)

    def set_fields(self, book_id: int, fields: dict[str, str]) -> None:
        """``calibredb set_metadata --field NAME:VALUE ... ID``."""
        args: list[str] = []
        for name, value in fields.items():
            args += ["--field", f"{name}:{value}"]
        self.run("set_metadata", *args, str(book_id))


def _values(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, list):
        return tuple(str(v) for v in raw)
    return tuple(v.strip() for v in str(raw).split(",") if v.strip())


def _clean(name: str) -> str:
    """A tag as Calibre can hold it (commas separate tags)."""
    return name.replace(",", ";").strip()


def plan(
    book: Book, subjects: Sequence[str], version: str, column: str | None
) -> tuple[dict[str, str], tuple[str, ...], tuple[str, ...]]:
    """Work out one book's new fields: ``(fields to set, tags added, tags removed)``.

    An empty ``fields`` means the book already holds exactly these tags and this mark.
    """
    names = list(dict.fromkeys(_clean(s) for s in subjects if _clean(s)))
    mine: tuple[str, ...] = ()
    if column:  # the column holds tropeml's tags only
        current, new = list(book.column), names
    else:  # tags: replace what tropeml added last time, keep the rest
        _, owned = book.mark()
        current = list(book.tags)
        base = [t for t in current if t not in owned]
        base_cf = {t.casefold() for t in base}
        mine = tuple(n for n in names if n.casefold() not in base_cf)
        new = base + list(mine)
    added = tuple(t for t in new if t not in current)
    removed = tuple(t for t in current if t not in new)
    mark = "+".join([version, *(quote(n, safe="") for n in mine)])
    fields: dict[str, str] = {}
    if added or removed:
        fields[f"#{column}" if column else "tags"] = ",".join(new)
    if book.identifiers.get(IDENTIFIER) != mark:
        ids = {k: v for k, v in book.identifiers.items() if k != IDENTIFIER}
        ids[IDENTIFIER] = mark
        fields["identifiers"] = ",".join(f"{k}:{v}" for k, v in ids.items())
    return fields, added, removed


def tag_library(
    tagger: Tagger,
    calibre: Calibre,
    version: str,
    *,
    column: str | None = None,
    prefix: str = "",
    spoilers: bool = False,
    dry_run: bool = False,
    force: bool = False,
    progress: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    min_score: float = 0.0,
) -> Iterator[BookOutcome]:
    """Tag every book of a Calibre library and write the tags with ``calibredb``.

    Args:
        tagger: The loaded tagger.
        calibre: The library.
        version: The model's version (see :func:`tropeml.serve.writeback.model_version`);
            books whose mark names it (with ``min_score``, see
            :func:`tropeml.serve.writeback.with_min_score`) are skipped unless ``force``.
        column: A custom column's lookup name (with or without ``#``) to write into instead
            of the tags; it must exist.
        prefix: Put before each tag name, e.g. ``"trope: "``.
        spoilers: Write spoiler tags too.
        dry_run: Work out and report the changes, write nothing.
        force: Tag books this model version tagged before too.
        progress: Show a progress bar on stderr.
        max_bytes: Refuse larger format files.
        min_score: Write only tags scoring at least this (:meth:`WorkResult.at_least`).

    Yields:
        One :class:`BookOutcome` per book, in id order; a book that cannot be read yields an
        ``"error"`` outcome and the others go on.

    Raises:
        TropemlError: If the column does not exist or ``calibredb`` fails.
    """
    col = column.lstrip("#") if column else None
    if col and col not in calibre.columns():
        raise TropemlError(
            f"{calibre.library}: no custom column #{col} (create it in Calibre's preferences "
            f"or with: calibredb add_custom_column --is-multiple {col} Tropes text)"
        )
    books = calibre.books(col)
    version = with_min_score(version, min_score)
    with _bar(progress, len(books)) as advance:
        for book in books:
            yield _one(
                tagger,
                calibre,
                book,
                version,
                col,
                prefix,
                spoilers,
                dry_run,
                force,
                max_bytes,
                min_score,
            )
            advance()


def _one(
    tagger: Tagger,
    calibre: Calibre,
    book: Book,
    version: str,
    column: str | None,
    prefix: str,
    spoilers: bool,
    dry_run: bool,
    force: bool,
    max_bytes: int,
    min_score: float,
) -> BookOutcome:
    if book.mark()[0] == version and not force:
        return BookOutcome(book, "skipped")
    path = book.fic()
    if path is None:
        where = f"book {book.id} ({book.title})"
        return BookOutcome(book, "error", error=f"{where}: no EPUB, HTML or TXT format to read")
    try:
        if path.lower().endswith(".epub"):
            refuse_drm(path)
        work = read_work(path, max_bytes=max_bytes)
        result = tagger.tag(work, source=path)
    except TropemlError as exc:
        return BookOutcome(book, "error", error=str(exc))
    result = result.at_least(min_score)
    subjects = subjects_of(result, prefix, spoilers)
    fields, added, removed = plan(book, subjects, version, column)
    if dry_run:
        return BookOutcome(book, "would-tag" if added or removed else "unchanged", added, removed)
    if fields:
        calibre.set_fields(book.id, fields)
    return BookOutcome(book, "tagged" if added or removed else "unchanged", added, removed)


class _bar:  # noqa: N801 - used like a function
    """A rich progress bar on stderr (or nothing), as a context giving ``advance()``."""

    def __init__(self, show: bool, total: int) -> None:
        self.show, self.total = show, total
        self._bar: Any = None

    def __enter__(self) -> Any:
        if not self.show:
            return lambda: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._bar = Progress(
            TextColumn("tagging"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("books"),
            console=Console(stderr=True),
        )
        self._bar.start()
        task = self._bar.add_task("books", total=self.total)
        return lambda: self._bar.advance(task, 1)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
