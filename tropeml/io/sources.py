"""Training sources: what ``tropeml train --data`` and :func:`tropeml.train` accept.

- A **data folder** (it holds ``tropes.toml``): its ``labels/*.jsonl`` (span labels) and
  ``exemplars/*.jsonl`` (written passages). The first one named is the base: its taxonomy
  defines the tags.
- **Span-label files** and **answer files** (written by ``tropeml label``), told apart by
  their rows.
- **Fics with author tags** (AO3 HTML/EPUB downloads, saved work pages, Work Header text):
  work-level labels, as :class:`LabelledWork`. A fic that cannot be read is skipped and
  reported, so one bad download does not stop a train.

This module only reads and sorts; :mod:`tropeml.model.dataset` turns sources into rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tropeml.core.errors import TropemlError
from tropeml.core.taxonomy import Taxonomy
from tropeml.core.types import Work
from tropeml.io.author_tags import map_author_tags
from tropeml.io.labels import QUOTE_CHARS, _read_jsonl
from tropeml.io.readers import DEFAULT_MAX_BYTES, expand_paths, read_work

ANSWERS = ("yes", "no", "skip")


@dataclass(frozen=True)
class LabelledWork:
    """A work with work-level labels: tropes it shows somewhere (e.g. its author's tags).

    Attributes:
        work: The work.
        tags: Tag ids the work is known to show.
        unmapped: Author tags that map to no trope (reported, not used).
    """

    work: Work
    tags: tuple[str, ...]
    unmapped: tuple[str, ...] = ()


@dataclass(frozen=True)
class Answer:
    """One answer from ``tropeml label``: does the span show the tag?"""

    file: str
    start: int
    end: int
    tag: str
    answer: str
    where: str = ""

    @property
    def key(self) -> tuple[str, int, int, str]:
        """Identify the question (file, span, tag), for resuming."""
        return (self.file, self.start, self.end, self.tag)


def answer_record(file: str, text: str, start: int, end: int, tag: str, answer: str) -> str:
    """Return one answer as a JSON line (the ``tropeml label`` answers-file format)."""
    if answer not in ANSWERS:
        raise ValueError(f"answer must be one of {ANSWERS}")
    row = {
        "file": file,
        "start": start,
        "end": end,
        "quote": text[start : start + QUOTE_CHARS],
        "tag": tag,
        "answer": answer,
    }
    return json.dumps(row, ensure_ascii=False)


def is_answer_file(path: str | Path) -> bool:
    """Return whether a JSONL label file holds answers (rows with ``"answer"``)."""
    rows = _read_jsonl(Path(path), skip_torn=True)
    return bool(rows) and "answer" in rows[0][1]


def load_answers(
    path: str | Path, taxonomy: Taxonomy | None = None, check: bool = True
) -> list[Answer]:
    """Load an answers file; a later answer to the same question replaces an earlier one.

    A line torn by a crash mid-write is ignored; any other bad line is an error.

    Args:
        path: The JSONL answers file (missing: no answers).
        taxonomy: If given, tags must be its ids.
        check: Also check that each span's quote still matches its file.

    Raises:
        TropemlError: ``path:line: reason`` for bad rows.
    """
    path = Path(path)
    if not path.exists():
        return []
    rows = _read_jsonl(path, skip_torn=True)
    latest: dict[tuple[str, int, int, str], Answer] = {}
    texts: dict[str, str] = {}
    for lineno, obj in rows:
        where = f"{path}:{lineno}"
        file, start, end, tag, answer = (
            obj.get(k) for k in ("file", "start", "end", "tag", "answer")
        )
        if not isinstance(file, str) or not file:
            raise TropemlError(f"{where}: 'file' must be a path string")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
            raise TropemlError(f"{where}: 'start' and 'end' must be integers")
        assert isinstance(start, int) and isinstance(end, int)
        if not isinstance(tag, str) or (taxonomy is not None and tag not in taxonomy):
            raise TropemlError(f"{where}: unknown tag {tag!r}")
        if answer not in ANSWERS:
            raise TropemlError(f"{where}: 'answer' must be one of {', '.join(ANSWERS)}")
        if check:
            if file not in texts:
                try:
                    texts[file] = read_work(file).text
                except TropemlError as exc:
                    raise TropemlError(f"{where}: {exc}") from None
            quote = obj.get("quote")
            text = texts[file]
            if not 0 <= start < end <= len(text) or text[start : start + QUOTE_CHARS] != quote:
                raise TropemlError(f"{where}: span {start}-{end} no longer matches {file}")
        found = Answer(file, start, end, tag, str(answer), where)
        latest[found.key] = found
    return list(latest.values())


@dataclass
class Sources:
    """What a list of ``--data`` paths holds, sorted by kind."""

    data_dir: Path | None = None
    span_files: list[Path] = field(default_factory=list)
    exemplar_files: list[Path] = field(default_factory=list)
    answer_files: list[Path] = field(default_factory=list)
    works: list[LabelledWork] = field(default_factory=list)
    untagged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """One-line errors of fics that could not be read (left out of training)."""


def collect_sources(
    paths: Sequence[str | Path],
    taxonomy: Taxonomy,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Sources:
    """Sort paths into a data folder, label files and works with author tags.

    A folder with ``tropes.toml`` is a data folder: the first one is the base (``data_dir``),
    a later one adds its ``labels/*.jsonl`` and ``exemplars/*.jsonl``. A ``.jsonl`` file is an
    answers file or a span-label file (told apart by its rows). Anything else is read as fics;
    those with author tags that map to ``taxonomy`` become :class:`LabelledWork`.

    Args:
        paths: Data folders, label files, fic files and folders.
        taxonomy: Maps author tags to ids.
        max_bytes: Largest fic read.
    """
    out = Sources()
    for raw in paths:
        path = Path(raw)
        if is_data_dir(path):
            if out.data_dir is None:
                out.data_dir = path
                continue
            labels = sorted((path / "labels").glob("*.jsonl"))
            out.exemplar_files += sorted((path / "exemplars").glob("*.jsonl"))
        elif path.suffix.lower() == ".jsonl" and path.is_file():
            labels = [path]
        else:
            for source in expand_paths([path]):
                try:
                    work = read_work(source, max_bytes=max_bytes)
                except TropemlError as exc:
                    out.skipped.append(str(exc))
                    continue
                mapped = map_author_tags(work.author_tags, taxonomy)
                if mapped.ids:
                    out.works.append(LabelledWork(work, tuple(mapped.ids), mapped.unmapped))
                else:
                    out.untagged.append(source)
            continue
        for label_file in labels:
            (out.answer_files if is_answer_file(label_file) else out.span_files).append(label_file)
    return out


def is_data_dir(path: Path) -> bool:
    """Return whether ``path`` is a data folder (it holds ``tropes.toml``)."""
    return path.is_dir() and (path / "tropes.toml").is_file()
