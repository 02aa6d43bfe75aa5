"""AO3 author tags mapped to the taxonomy: the tags a work's author wrote, as trope ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tropeml.core.taxonomy import Taxonomy, normalize_tag


@dataclass(frozen=True)
class AuthorTags:
    """A work's author tags mapped to taxonomy ids.

    Attributes:
        ids: Tag id -> the author tags that map to it, in taxonomy order.
        unmapped: Author tags that match no trope of the taxonomy (kept, listed).
    """

    ids: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unmapped: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "mapped": {k: list(v) for k, v in self.ids.items()},
            "unmapped": list(self.unmapped),
        }


def resolve_tag(tag: str, taxonomy: Taxonomy) -> str | None:
    """Map one AO3 tag to a trope id through the taxonomy's synonyms, or ``None``.

    Case, accents and punctuation are ignored, and so are "Alternate Universe - " / "AU: "
    prefixes, an " AU" suffix and a plural ``s`` ("Soulmate AU" finds "Soulmates").
    """
    found = taxonomy.resolve(tag)
    if found is not None:
        return found
    base = normalize_tag(tag)
    for prefix in ("au ", "alternate universe "):
        base = base.removeprefix(prefix)
    base = base.removesuffix(" au")
    for variant in (base, base + "s", base.removesuffix("s")):
        if variant and (found := taxonomy.resolve(variant)) is not None:
            return found
    return None


def map_author_tags(tags: Sequence[str], taxonomy: Taxonomy) -> AuthorTags:
    """Map a work's author tags (e.g. ``work.author_tags``) to taxonomy ids."""
    ids: dict[str, list[str]] = {}
    unmapped: list[str] = []
    for tag in tags:
        tid = resolve_tag(tag, taxonomy)
        if tid is None:
            unmapped.append(tag)
        else:
            ids.setdefault(tid, []).append(tag)
    ordered = {t: tuple(ids[t]) for t in taxonomy.ids if t in ids}
    return AuthorTags(ordered, tuple(unmapped))
