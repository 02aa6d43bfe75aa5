"""Labels: character spans into source files, and hand-written exemplar passages.

Span labels (``data/labels/*.jsonl``), one JSON object per line::

    {"file": "seeds/000_77fbc02fa2239641.txt", "start": 0, "end": 812,
     "quote": "<the first 30 characters of the span>", "tags": ["phone_call", "angst"]}

``tags`` lists every tag that applies in the span (``[]``: none does). The quote detects a
changed source file. Spans are characters, not passage numbers, so changing the splitter
never invalidates a label.

Exemplars (``data/exemplars/*.jsonl``) are whole passages written for the project::

    {"id": "hc-0001", "text": "...", "tags": ["hurt_comfort"], "near_miss": [],
     "source": "written", "style": "first-person present, space opera"}

Every error names the file and line.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tropeml.core.errors import TropemlError
from tropeml.core.taxonomy import Taxonomy
from tropeml.core.types import UNKNOWN, Passage

QUOTE_CHARS = 30


@dataclass(frozen=True)
class SpanLabel:
    """Tags that apply to a character span of a source file."""

    file: str
    start: int
    end: int
    tags: tuple[str, ...]
    where: str = ""


@dataclass(frozen=True)
class Exemplar:
    """A labelled passage with its complete tag set.

    ``group`` keeps related passages on one side of every cross-validation split: the
    source book (``book:<repo>``) for a passage taken from a public-domain book with its
    provenance, otherwise the exemplar itself (``exemplar:<id>``).
    """

    id: str
    text: str
    tags: tuple[str, ...]
    near_miss: tuple[str, ...]
    source: str
    style: str
    group: str


def _read_jsonl(path: Path, skip_torn: bool = False) -> list[tuple[int, dict[str, Any]]]:
    """Parse a JSONL file into (line number, object) pairs.

    With ``skip_torn``, a line cut short by a crash (an unfinished ``{...`` object, which
    :func:`tropeml.core.fileio.append_line` leaves on a line of its own) is skipped, not an error.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TropemlError(f"{path}: no such label file") from None
    except OSError as exc:
        raise TropemlError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TropemlError(f"{path}: not UTF-8 (byte {exc.start})") from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            stripped = line.strip()
            if skip_torn and stripped.startswith("{") and not stripped.endswith("}"):
                continue
            raise TropemlError(f"{path}:{lineno}: bad JSON: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise TropemlError(f"{path}:{lineno}: expected a JSON object")
        rows.append((lineno, obj))
    return rows


def _tag_list(obj: dict[str, Any], key: str, where: str, taxonomy: Taxonomy) -> tuple[str, ...]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TropemlError(f"{where}: '{key}' must be a list of tag ids")
    taxonomy.check_ids(value, where)
    if len(set(value)) != len(value):
        raise TropemlError(f"{where}: '{key}' repeats a tag")
    return tuple(value)


def load_span_labels(
    path: str | Path, taxonomy: Taxonomy, root: str | Path = "."
) -> list[SpanLabel]:
    """Load and validate span labels.

    Args:
        path: The JSONL label file.
        taxonomy: Tags must be ids of this taxonomy.
        root: Folder the ``file`` fields are relative to.

    Raises:
        TropemlError: ``path:line: reason`` for bad JSON, missing fields, unknown tags,
            spans out of range, a quote that does not match, or overlapping spans.
    """
    path, root = Path(path), Path(root)
    texts: dict[str, str] = {}
    labels: list[SpanLabel] = []
    for lineno, obj in _read_jsonl(path):
        where = f"{path}:{lineno}"
        if "answer" in obj:
            raise TropemlError(
                f"{where}: a `tropeml label` answer, not a span label; keep answers files out "
                "of labels/ and name them with `tropeml train --data FILE`"
            )
        file, start, end, quote = (obj.get(k) for k in ("file", "start", "end", "quote"))
        if not isinstance(file, str) or not file:
            raise TropemlError(f"{where}: 'file' must be a path string")
        if (
            not (isinstance(start, int) and isinstance(end, int))
            or isinstance(start, bool)
            or isinstance(end, bool)
        ):
            raise TropemlError(f"{where}: 'start' and 'end' must be integers")
        if not isinstance(quote, str):
            raise TropemlError(f"{where}: 'quote' must be a string")
        tags = _tag_list(obj, "tags", where, taxonomy)
        if file not in texts:
            from tropeml.io.readers import read_work

            try:
                texts[file] = read_work(root / file).text
            except TropemlError as exc:
                raise TropemlError(f"{where}: {exc}") from None
        text = texts[file]
        if not 0 <= start < end <= len(text):
            raise TropemlError(
                f"{where}: span {start}-{end} out of range for {file} ({len(text)} characters)"
            )
        if text[start : start + len(quote)] != quote or not quote:
            raise TropemlError(
                f"{where}: quote does not match {file} at {start} "
                f"(expected {text[start : start + QUOTE_CHARS]!r}); has the file changed?"
            )
        labels.append(SpanLabel(file=file, start=start, end=end, tags=tags, where=where))
    by_file: dict[str, list[SpanLabel]] = {}
    for label in labels:
        by_file.setdefault(label.file, []).append(label)
    for spans in by_file.values():
        spans.sort(key=lambda s: s.start)
        for a, b in itertools.pairwise(spans):
            if b.start < a.end:
                raise TropemlError(f"{b.where}: span overlaps the span at {a.where}")
    return labels


def load_exemplars(path: str | Path, taxonomy: Taxonomy) -> list[Exemplar]:
    """Load and validate hand-written exemplar passages.

    Raises:
        TropemlError: ``path:line: reason`` for bad JSON, missing text, unknown tags, a tag
            in both ``tags`` and ``near_miss``, or a repeated id.
    """
    path = Path(path)
    out: list[Exemplar] = []
    seen: dict[str, str] = {}
    for lineno, obj in _read_jsonl(path):
        where = f"{path}:{lineno}"
        eid, text = obj.get("id"), obj.get("text")
        if not isinstance(eid, str) or not eid:
            raise TropemlError(f"{where}: 'id' must be a non-empty string")
        if eid in seen:
            raise TropemlError(f"{where}: id {eid!r} already used at {seen[eid]}")
        seen[eid] = where
        if not isinstance(text, str) or not text.strip():
            raise TropemlError(f"{where}: 'text' must be a non-empty string")
        tags = _tag_list(obj, "tags", where, taxonomy)
        near = _tag_list(obj, "near_miss", where, taxonomy)
        if set(tags) & set(near):
            raise TropemlError(f"{where}: tag(s) {sorted(set(tags) & set(near))} in both lists")
        out.append(
            Exemplar(
                id=eid,
                text=text,
                tags=tags,
                near_miss=near,
                source=str(obj.get("source", "written")),
                style=str(obj.get("style", "")),
                group=_exemplar_group(obj, eid),
            )
        )
    return out


def _exemplar_group(obj: dict[str, Any], eid: str) -> str:
    """The cross-validation group of an exemplar: its source book if it names one."""
    repo = obj.get("repo")
    return f"book:{repo}" if isinstance(repo, str) and repo else f"exemplar:{eid}"


def span_targets(
    passages: Sequence[Passage],
    spans: Sequence[SpanLabel],
    tags: Sequence[str],
    min_labelled: float = 0.5,
    min_positive: float = 0.25,
) -> NDArray[np.int8]:
    """Turn span labels into a passage label matrix.

    A passage is labelled if spans cover at least ``min_labelled`` of its characters
    (otherwise its row is all ``-1``, unknown). It is positive for a tag when spans carrying
    that tag cover at least ``min_positive`` of it, or hold at least half of such a span
    (so a short, clear moment inside a long passage still counts).

    Args:
        passages: Passages of one file.
        spans: Span labels of the same file.
        tags: Column order.
        min_labelled: Coverage needed to count a passage as labelled.
        min_positive: Coverage by a tag's spans needed to make it positive.

    Returns:
        Shape ``(n_passages, len(tags))``, values 1, 0 or -1.
    """
    col = {t: j for j, t in enumerate(tags)}
    Y = np.zeros((len(passages), len(tags)), dtype=np.int8)
    for i, p in enumerate(passages):
        size = max(p.end - p.start, 1)
        covered = 0
        tag_overlap = np.zeros(len(tags))
        mostly_inside = np.zeros(len(tags), dtype=bool)
        for s in spans:
            overlap = min(p.end, s.end) - max(p.start, s.start)
            if overlap <= 0:
                continue
            covered += overlap
            for t in s.tags:
                if t in col:
                    tag_overlap[col[t]] += overlap
                    mostly_inside[col[t]] |= overlap >= 0.5 * (s.end - s.start)
        positive = (tag_overlap >= min_positive * size) | mostly_inside
        Y[i] = positive if covered >= min_labelled * size else UNKNOWN
    return Y
