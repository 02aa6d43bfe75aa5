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
