"""Judged passages and judged whole works: the real-prose dev set and its kin.

``data/dev/`` chooses models, rules and thresholds and never fits them (see
``data/dev/README.md``); ``data/confirm/`` (fresh works) only reports; ``data/judged/`` (whole
works judged the same way) is training data. All three share one format:

- ``passages.jsonl``: public-domain passages with provenance, each judged ``yes``, ``no``
  or ``unknown`` for every required tag.
- ``works/*.jsonl``: whole works (public-domain novels and long chapters, and long works
  written for the project where public-domain text has no A/B/O, mates or soulmate AUs), each
  judged for every required tag, and some also for other tags of the taxonomy (a tag a work
  does not judge is unknown for it); ``file`` points at the text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tropeml.core.errors import TropemlError
from tropeml.core.types import UNKNOWN, Work
from tropeml.io.readers import parse_text

REQUIRED_TAGS = (
    "hurt_comfort",
    "fake_death",
    "reunion",
    "soulmates",
    "mates",
    "alpha_beta_omega",
    "angst",
    "fluff",
    "first_kiss",
    "love_confession",
)
"""The tags every dev record is judged for."""
CORE_TAGS = ("hurt_comfort", "fake_death", "reunion", "soulmates", "mates")
_VALUE = {"yes": 1, "no": 0, "unknown": UNKNOWN}


@dataclass(frozen=True)
class DevItem:
    """One judged dev record: a passage or a whole work.

    Attributes:
        id: The record's id.
        kind: ``"pd"`` (public-domain text) or ``"written"`` (written for the project).
        work: The text, as a :class:`Work`.
        judgments: Per judged tag (every required tag, and any other tag the record
            judges): 1 shows it, 0 does not, -1 unknown.
        title: Book or work title.
        book: The source it was cut from (its repository; the text file when there is none).
    """

    id: str
    kind: str
    work: Work
    judgments: dict[str, int]
    title: str
    book: str = ""


def _judgments(
    obj: dict[str, object], where: str, required: tuple[str, ...] | None = REQUIRED_TAGS
) -> dict[str, int]:
    raw = obj.get("judgments")
    if not isinstance(raw, dict) or (required is not None and not set(required) <= set(raw)):
        need = "every one of " + ", ".join(required) if required else "tags"
        raise TropemlError(f"{where}: 'judgments' must judge {need}")
    try:
        return {str(t): _VALUE[str(v)] for t, v in raw.items()}
    except KeyError as exc:
        raise TropemlError(f"{where}: judgments are yes, no or unknown, not {exc}") from None


def _rows(path: Path) -> list[tuple[str, dict[str, object]]]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append((f"{path}:{n}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise TropemlError(f"{path}:{n}: not JSON ({exc.msg})") from None
    return out


def load_dev_passages(dev_dir: str | Path = "data/dev") -> list[DevItem]:
    """Load the judged dev passages (``passages.jsonl``)."""
    path = Path(dev_dir) / "passages.jsonl"
    if not path.is_file():
        raise TropemlError(f"{path}: no dev passages here")
    items = []
    for where, obj in _rows(path):
        text = str(obj.get("text", ""))
        work = parse_text(text, source=str(obj["id"]))
        items.append(
            DevItem(str(obj["id"]), "pd", work, _judgments(obj, where), str(obj.get("book", "")))
        )
    return items


def load_dev_works(
    dev_dir: str | Path = "data/dev", required: tuple[str, ...] | None = REQUIRED_TAGS
) -> list[DevItem]:
    """Load the judged whole works of ``dev_dir/works/*.jsonl`` (none without that folder).

    ``file`` paths are relative to the folder two levels above ``dev_dir``: the project root
    for ``data/dev``, ``data/confirm`` and ``data/judged``. Each work must judge every one of
    the ``required`` tags (``None``: any tags; training checks them against its taxonomy),
    and may judge other tags too.
    """
    dev_dir = Path(dev_dir)
    root = dev_dir.resolve().parent.parent
    items = []
    for path in sorted((dev_dir / "works").glob("*.jsonl")):
        for where, obj in _rows(path):
            file = root / str(obj["file"])
            if not file.is_file():
                raise TropemlError(f"{where}: {file} is missing")
            kind = "written" if obj.get("source") == "written" else "pd"
            work = parse_text(file.read_text(encoding="utf-8"), source=str(obj["file"]))
            book = str(obj.get("repo") or obj["file"])
            items.append(
                DevItem(
                    str(obj["id"]),
                    kind,
                    work,
                    _judgments(obj, where, required),
                    str(obj["title"]),
                    book,
                )
            )
    return items
