"""Tag whole collections: stream works in batches, write JSON Lines as you go, resume.

A corpus is a folder tree of fics, a list of files, or one table file (JSON Lines, CSV or
Parquet, read with ``datasets`` in streaming mode) with a text column and an optional id
column. Works are read lazily and tagged a batch at a time, so memory stays flat however
large the corpus is. Each result is appended (and fsynced) to the output as soon as its
batch is done; a rerun skips the works whose ids the output already holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tropeml.core.errors import TropemlError
from tropeml.core.fileio import append_line
from tropeml.core.types import Work, WorkResult
from tropeml.io.readers import DEFAULT_MAX_BYTES, expand_paths, parse_text, read_work

TABLE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
"""Table files by suffix, and the ``datasets`` builder that streams each."""


@dataclass(frozen=True)
class Record:
    """One work of a corpus, not yet read.

    Attributes:
        id: The work's id (a file path, a table's id column, or ``file#row``).
        load: Returns the work; raises :class:`TropemlError` if it cannot be read.
    """

    id: str
    load: Callable[[], Work]


@dataclass(frozen=True)
class Outcome:
    """What became of one record: a result or a one-line error."""

    id: str
    result: WorkResult | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON Lines object for this work (``id`` first)."""
        if self.result is None:
            return {"id": self.id, "error": self.error}
        return {"id": self.id, **self.result.to_dict()}


def is_table(path: str | Path) -> bool:
    """Return whether ``path`` names a table file (JSON Lines, CSV or Parquet)."""
    return Path(path).suffix.lower() in TABLE_FORMATS and Path(path).is_file()


def iter_records(
    paths: Iterable[str | Path],
    text_column: str = "text",
    id_column: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Iterator[Record | TropemlError]:
    """Stream the works under ``paths``, lazily.

    Folders give every ``.txt`` inside (recursively, sorted); table files give a work per row;
    other files are read as fics. A path that cannot be listed yields its error and the rest
    go on.

    Args:
        paths: Files, folders, table files or ``"-"``.
        text_column: The text column of table files.
        id_column: The id column of table files (default ``"id"`` if present, else the row).
        max_bytes: Refuse fic files larger than this.
    """
    for path in paths:
        try:
            if is_table(path):
                yield from _table_records(Path(path), text_column, id_column)
                continue
            for source in expand_paths([path]):
                yield Record(source, _reader(source, max_bytes))
        except TropemlError as exc:
            yield exc


def _reader(source: str, max_bytes: int) -> Callable[[], Work]:
    return lambda: read_work(source, max_bytes=max_bytes)


def text_work(text: Any, source: str) -> Work:
    """Build a work from a table cell's text (newlines normalised).

    Raises:
        TropemlError: If the cell holds no text.
    """
    if not isinstance(text, str) or not text.strip():
        raise TropemlError(f"{source}: no text")
    return parse_text(text.replace("\r\n", "\n").replace("\r", "\n"), source=source)


def _text_work(text: Any, source: str) -> Callable[[], Work]:
    return lambda: text_work(text, source)


def _table_records(
    path: Path, text_column: str, id_column: str | None
) -> Iterator[Record | TropemlError]:
    from datasets import load_dataset

    builder = TABLE_FORMATS[path.suffix.lower()]
    try:
        stream = load_dataset(builder, data_files=str(path), split="train", streaming=True)
    except Exception as exc:
        raise TropemlError(f"{path}: cannot read as {builder} ({type(exc).__name__})") from None
    try:
        for i, row in enumerate(stream):
            if text_column not in row:
                raise TropemlError(
                    f"{path}: no column {text_column!r} (columns: {', '.join(row)}); "
                    "choose one with --text-column"
                )
            if id_column is not None and id_column not in row:
                raise TropemlError(f"{path}: no id column {id_column!r}")
            key = id_column or ("id" if "id" in row else None)
            rid = str(row[key]) if key is not None else f"{path}#{i}"
            yield Record(rid, _text_work(row[text_column], rid))
    except TropemlError:
        raise
    except Exception as exc:
        raise TropemlError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None


def dataset_records(
    dataset: Any, text_column: str = "text", id_column: str | None = None
) -> Iterator[Record]:
    """Stream the rows of a ``datasets.Dataset`` (or ``IterableDataset``) as records.

    Ids come from ``id_column`` (default ``"id"`` if the dataset has it, else the row number).
    """
    columns = list(getattr(dataset, "column_names", None) or [])
    if columns and text_column not in columns:
        raise TropemlError(f"dataset has no column {text_column!r} (columns: {columns})")
    key = id_column or ("id" if "id" in columns else None)
    for i, row in enumerate(dataset):
        rid = str(row[key]) if key is not None else str(i)
        yield Record(rid, _text_work(row[text_column], rid))


def done_ids(out: str | Path) -> set[str]:
    """Return the ids of the works an earlier run already wrote to ``out`` (JSON Lines).

    A torn last line (a run killed mid-write) is ignored, so that work is redone; lines
    holding an ``error`` are not counted as done.
    """
    done: set[str] = set()
    path = Path(out)
    if not path.exists():
        return done
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:  # streamed: output can be big
            for line in fh:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and "id" in row and "error" not in row:
                    done.add(str(row["id"]))
    except OSError as exc:
        raise TropemlError(f"{out}: cannot read ({exc.strerror or exc})") from None
    return done


def _batches(
    records: Iterable[Record | TropemlError], size: int
) -> Iterator[list[Record | TropemlError]]:
    batch: list[Record | TropemlError] = []
    for rec in records:
        batch.append(rec)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def tag_records(
    tagger: Any,
    records: Iterable[Record | TropemlError],
    out: str | Path | None = None,
    batch_size: int = 16,
    progress: bool = False,
    total: int | None = None,
) -> Iterator[Outcome]:
    """Tag a stream of records a batch at a time; optionally append each result to ``out``.

    Works whose ids ``out`` already holds are skipped (resume). Results come back in input
    order; a work that cannot be read gives an :class:`Outcome` with an ``error`` (and is
    not written, so a rerun tries it again).

    Args:
        tagger: A :class:`~tropeml.serve.tagger.Tagger`.
        records: From :func:`iter_records` or :func:`dataset_records`.
        out: JSON Lines file to append to (created if missing).
        batch_size: Works per encoder call.
        progress: Show a progress bar on stderr.
        total: The number of records, if known (for the progress bar).
    """
    done = done_ids(out) if out is not None else set()
    pending = (r for r in records if isinstance(r, TropemlError) or r.id not in done)
    with _Progress(progress, total, len(done)) as advance:
        for batch in _batches(pending, batch_size):
            outcomes: list[Outcome | None] = [None] * len(batch)
            works: list[Work] = []
            at: list[int] = []
            for i, rec in enumerate(batch):
                if isinstance(rec, TropemlError):
                    outcomes[i] = Outcome("", error=str(rec))
                    continue
                try:
                    works.append(rec.load())
                    at.append(i)
                except TropemlError as exc:
                    outcomes[i] = Outcome(rec.id, error=str(exc))
            ids = [batch[i].id for i in at]  # type: ignore[union-attr]
            results = tagger.tag_many(works, ids) if works else []
            for i, rid, result in zip(at, ids, results, strict=True):
                outcomes[i] = Outcome(rid, result=result)
            for outcome in outcomes:
                assert outcome is not None
                if out is not None and outcome.result is not None:
                    append_line(out, json.dumps(outcome.to_dict(), ensure_ascii=False))
                yield outcome
            advance(len(batch))


class _Progress:
    """A rich progress bar on stderr (or nothing), as a context giving ``advance(n)``."""

    def __init__(self, show: bool, total: int | None, skipped: int) -> None:
        self.show = show
        self.total = total
        self.skipped = skipped
        self._bar: Any = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.show:
            return lambda n: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._bar = Progress(
            TextColumn("tagging"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("works"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._bar.start()
        task = self._bar.add_task("tag", total=self.total, completed=self.skipped)
        return lambda n: self._bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def tag_dataset(
    tagger: Any,
    dataset: Any,
    text_column: str = "text",
    id_column: str | None = None,
    out: str | Path | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> Iterator[Outcome]:
    """Tag the rows of a ``datasets.Dataset`` (or ``IterableDataset``), streaming.

    See :func:`tag_records` for ``out`` (resume) and ``batch_size``.
    """
    total = len(dataset) if hasattr(dataset, "__len__") else None
    return tag_records(
        tagger,
        dataset_records(dataset, text_column, id_column),
        out=out,
        batch_size=batch_size,
        progress=progress,
        total=total,
    )
