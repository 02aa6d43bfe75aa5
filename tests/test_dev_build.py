"""The dev-set builder's guards (``data/dev/build.py``) that need no fetched repository."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def build() -> ModuleType:
    """``data/dev/build.py`` imported as a module."""
    spec = importlib.util.spec_from_file_location("dev_build", ROOT / "data" / "dev" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["dev_build"] = module
    spec.loader.exec_module(module)
    return module


def test_builder_checks_the_tags_the_package_requires(build: ModuleType) -> None:
    """The builder runs without tropeml installed, so it keeps its own list; it must agree."""
    from tropeml.io.devset import REQUIRED_TAGS

    assert build.TAGS == REQUIRED_TAGS


def test_title_words(build: ModuleType) -> None:
    assert build.title_words("The Miller's Daughter (Anon)") == ("millers", "daughter")
    assert build.title_words("GITenberg/The-Miller-s-Daughter_1234", repo_name=True) == (
        "millers",
        "daughter",
    )
    assert build.title_words("Les Oiseaux Perdus (Nobody)") == ("les", "oiseaux", "perdus")
    assert build.title_words("Café Noir (Nobody)") == ("caf", "noir")  # non-ASCII splits


def test_reserved_titles_are_refused(build: ModuleType, tmp_path: Path) -> None:
    listing = tmp_path / "reserved.txt"
    listing.write_text(
        "# comment\nThe Miller's Daughter (Anon)\nThe Lantern of Ys (Anon)\nAda (Anon)\n",
        encoding="utf-8",
    )
    reserved = build.read_reserved(listing)
    assert len(reserved) == 3
    match = build.reserved_match
    assert match({"repo": "GITenberg/The-Miller-s-Daughter_1234"}, reserved) == "millers daughter"
    assert match({"repo": "GITenberg/The-Lantern-of-Ys--Illustrated_99"}, reserved)
    assert match({"repo": "x/y", "style": "Ada (Someone Else)"}, reserved) == "ada"
    # a subtitle, another book that merely contains the words, and unrelated books pass
    assert match({"repo": "GITenberg/The-Keeper--A-Miller-s-Daughter_5"}, reserved) is None
    assert (
        match({"repo": "GITenberg/The-Adamant_1", "book": "A Dilemma (Ada Smith)"}, reserved)
        is None
    )
    assert match({"repo": "GITenberg/Peter-Ibbetson_9817"}, reserved) is None
    with pytest.raises(build.BuildError, match="reserved title"):
        build.check_reserved({"repo": "GITenberg/Ada_158"}, reserved)
    assert build.read_reserved(tmp_path / "absent.txt") == []


def test_shipped_records_avoid_the_reserved_titles(build: ModuleType) -> None:
    """Every public-domain record in data/ names a book that is not reserved."""
    reserved = build.read_reserved(build.DEFAULT_RESERVED)
    if not reserved:
        pytest.skip("../shared/reserved-titles.txt is not beside this checkout")
    files = [ROOT / "data" / "dev" / "passages.jsonl", *sorted((ROOT / "data").glob("*/pd*.jsonl"))]
    files += sorted((ROOT / "data" / "dev" / "works").glob("*.jsonl"))
    files += [ROOT / "data" / "background" / "sources.jsonl"]
    seen = 0
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            assert build.reserved_match(record, reserved) is None, (path.name, record.get("id"))
            seen += 1
    assert seen > 500


def test_reserved_titles_are_refused_as_phrases(build: ModuleType, tmp_path: Path) -> None:
    """Text holding a reserved title, even as ordinary words, is refused."""
    listing = tmp_path / "reserved.txt"
    listing.write_text(
        "# comment\nThe Miller's Daughter (Anon)\nAda (Someone Else)\nNorth by East (X)\n",
        encoding="utf-8",
    )
    phrases = build.read_reserved_phrases(listing)
    assert [title for title, _ in phrases] == [
        "The Miller's Daughter (Anon)",
        "Ada (Someone Else)",
        "North by East (X)",
    ]
    refused = [
        "He met the miller\u2019s daughter.",  # curly apostrophe, any case
        "THE MILLER'S\nDAUGHTER",  # across a line break
        "said Ada.",  # a first name is a phrase too
        "the coast ran north by east for a mile",
    ]
    for text in refused:
        with pytest.raises(build.BuildError, match="reserved title"):
            build.check_mentions(text, phrases)
    for text in ["a miller's daughter", "Adam and Adamant", "north, then east", ""]:
        build.check_mentions(text, phrases)  # the article counts; words must be whole
    assert build.read_reserved_phrases(tmp_path / "absent.txt") == []


def test_shipped_text_holds_no_reserved_title(build: ModuleType) -> None:
    """No text in data/ (passages, works, background, exemplars, notes) holds a reserved
    title, even as ordinary words (a common noun, a first name, the points of the compass)."""
    phrases = build.read_reserved_phrases(build.DEFAULT_RESERVED)
    if not phrases:
        pytest.skip("../shared/reserved-titles.txt is not beside this checkout")
    files = [
        path
        for path in sorted((ROOT / "data").rglob("*"))
        if path.suffix in {".txt", ".jsonl", ".md", ".toml"} and path.is_file()
    ]
    assert len(files) > 100
    found = []
    for path in files:
        try:
            build.check_mentions(path.read_text(encoding="utf-8"), phrases)
        except build.BuildError as exc:
            found.append(f"{path.relative_to(ROOT)}: {exc}")
    assert not found, found
