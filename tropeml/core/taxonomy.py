"""The trope taxonomy: ids, AO3 display tags, synonyms, definitions."""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tropeml.core.errors import TropemlError
from tropeml.core.resources import default_taxonomy_path

_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_AU_PREFIX = re.compile(r"^(alternate universe|au)\s*[-:–—]\s*")


@dataclass(frozen=True)
class Trope:
    """One trope of the taxonomy.

    Attributes:
        id: Stable snake_case id, e.g. ``"fake_death"``.
        name: AO3-style display tag, e.g. ``"Fake Character Death"``.
        synonyms: Tags authors write on AO3 that mean this trope.
        definition: What must happen in a passage for the tag to apply.
        related: Ids of related tropes.
        spoiler: Whether the tag gives the plot away.
        scenes: Short sketches of scenes that show the trope; embedded with the definition
            as the trope's prototype.
    """

    id: str
    name: str
    synonyms: tuple[str, ...]
    definition: str
    related: tuple[str, ...] = ()
    spoiler: bool = False
    scenes: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        """Return the text used as this trope's zero-shot prototype."""
        return f"{self.name}. {self.definition}"


def normalize_tag(tag: str) -> str:
    """Normalise an AO3 tag for synonym lookup.

    Case, accents, punctuation and an "Alternate Universe - " prefix are ignored, so
    ``"Alternate Universe - Soulmates"`` and ``"soulmates!"`` both give ``"soulmates"``.
    """
    text = unicodedata.normalize("NFKD", tag).casefold().strip()
    text = _AU_PREFIX.sub("", text)  # before ASCII folding, which would drop "–" and "—"
    text = text.encode("ascii", "ignore").decode()
    text = text.replace("&", " and ").replace("/", " ")
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


class Taxonomy(Mapping[str, Trope]):
    """An ordered, read-only mapping from trope id to :class:`Trope`."""

    def __init__(self, tropes: list[Trope]) -> None:
        self._tropes = {t.id: t for t in tropes}
        self._lookup: dict[str, str] = {}
        for trope in tropes:
            for alias in (trope.id.replace("_", " "), trope.name, *trope.synonyms):
                self._lookup.setdefault(normalize_tag(alias), trope.id)

    def __getitem__(self, key: str) -> Trope:
        return self._tropes[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tropes)

    def __len__(self) -> int:
        return len(self._tropes)

    @property
    def ids(self) -> list[str]:
        """Return the trope ids in taxonomy order."""
        return list(self._tropes)

    def resolve(self, tag: str) -> str | None:
        """Map an AO3 tag or a synonym to a trope id, or ``None`` if unknown."""
        if tag in self._tropes:
            return tag
        return self._lookup.get(normalize_tag(tag))

    def check_ids(self, ids: list[str], where: str) -> None:
        """Raise :class:`TropemlError` naming ``where`` if any id is not in the taxonomy."""
        unknown = [i for i in ids if i not in self._tropes]
        if unknown:
            raise TropemlError(f"{where}: unknown tag(s) {', '.join(map(repr, unknown))}")

    @classmethod
    def load(cls, path: str | Path | None = None) -> Taxonomy:
        """Load and validate a taxonomy TOML file (default: the shipped one).

        Raises:
            TropemlError: If the file is missing, not TOML, or an entry is malformed.
        """
        path = Path(path) if path is not None else default_taxonomy_path()
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TropemlError(f"{path}: taxonomy file not found") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise TropemlError(f"{path}: cannot read taxonomy: {exc}") from None
        return cls.from_dict(raw, where=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "<taxonomy>") -> Taxonomy:
        """Build a taxonomy from its parsed TOML form (``{"trope": [...]}``)."""
        entries = raw.get("trope")
        if not isinstance(entries, list) or not entries:
            raise TropemlError(f"{where}: expected a non-empty [[trope]] list")
        tropes: list[Trope] = []
        for i, entry in enumerate(entries, 1):
            tropes.append(_parse_trope(entry, f"{where}: trope #{i}"))
        ids = [t.id for t in tropes]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise TropemlError(f"{where}: duplicate trope id(s) {', '.join(dupes)}")
        for trope in tropes:
            missing = [r for r in trope.related if r not in ids]
            if missing:
                raise TropemlError(f"{where}: {trope.id}: unknown related id(s) {missing}")
        return cls(tropes)


def _parse_trope(entry: Any, where: str) -> Trope:
    if not isinstance(entry, dict):
        raise TropemlError(f"{where}: expected a table")
    tid = entry.get("id")
    if not isinstance(tid, str) or not _ID.match(tid):
        raise TropemlError(f"{where}: 'id' must be a snake_case string, got {tid!r}")
    for key in ("name", "definition"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise TropemlError(f"{where} ({tid}): '{key}' must be a non-empty string")
    for key in ("synonyms", "related", "scenes"):
        value = entry.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise TropemlError(f"{where} ({tid}): '{key}' must be a list of strings")
    spoiler = entry.get("spoiler", False)
    if not isinstance(spoiler, bool):
        raise TropemlError(f"{where} ({tid}): 'spoiler' must be true or false")
    return Trope(
        id=tid,
        name=entry["name"].strip(),
        synonyms=tuple(entry.get("synonyms", [])),
        definition=" ".join(entry["definition"].split()),
        related=tuple(entry.get("related", [])),
        spoiler=spoiler,
        scenes=tuple(" ".join(v.split()) for v in entry.get("scenes", []) if v.strip()),
    )
