from __future__ import annotations

from pathlib import Path

import pytest

from tropeml.core.errors import TropemlError
from tropeml.core.resources import default_taxonomy_path
from tropeml.core.taxonomy import Taxonomy, Trope, normalize_tag

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "data" / "tropes.toml"
REQUIRED = [
    "hurt_comfort",
    "fake_death",
    "reunion",
    "mates",
    "soulmates",
    "alpha_beta_omega",
    "angst",
    "fluff",
    "love_confession",
    "first_kiss",
]


@pytest.fixture(scope="module")
def shipped() -> Taxonomy:
    return Taxonomy.load(SHIPPED)


def test_shipped_taxonomy_has_the_required_tropes_first(shipped: Taxonomy) -> None:
    assert shipped.ids[: len(REQUIRED)] == REQUIRED
    assert len(set(shipped.ids)) == len(shipped.ids)


@pytest.mark.parametrize("tid", REQUIRED)
def test_required_tropes_are_complete(shipped: Taxonomy, tid: str) -> None:
    trope = shipped[tid]
    assert isinstance(trope, Trope)
    assert trope.id == tid
    assert trope.name.strip()
    assert len(trope.definition.split()) >= 15
    assert "\n" not in trope.definition  # whitespace is collapsed
    assert trope.synonyms
    assert all(s.strip() for s in trope.synonyms)
    assert trope.description == f"{trope.name}. {trope.definition}"
    assert len(trope.scenes) >= 3  # scene sketches for the prototype
    assert all(s.strip() and "\n" not in s for s in trope.scenes)


def test_shipped_related_ids_exist(shipped: Taxonomy) -> None:
    for trope in shipped.values():
        assert set(trope.related) <= set(shipped)
        assert trope.id not in trope.related


def test_every_name_and_synonym_resolves_to_its_own_trope(shipped: Taxonomy) -> None:
    for trope in shipped.values():
        for alias in (trope.id, trope.name, *trope.synonyms):
            assert shipped.resolve(alias) == trope.id, alias


def test_default_path_is_the_shipped_file() -> None:
    assert default_taxonomy_path().resolve() == SHIPPED.resolve()
    assert Taxonomy.load().ids == Taxonomy.load(SHIPPED).ids


def test_mapping_interface(shipped: Taxonomy) -> None:
    assert len(shipped) == len(shipped.ids)
    assert list(shipped) == shipped.ids
    assert "fluff" in shipped
    assert "nope" not in shipped
    assert shipped.get("nope") is None
    with pytest.raises(KeyError):
        shipped["nope"]


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("hurt_comfort", "hurt_comfort"),
        ("Hurt/Comfort", "hurt_comfort"),
        ("hurt/comfort", "hurt_comfort"),
        ("HURT / COMFORT", "hurt_comfort"),
        ("Hurt & Comfort", "hurt_comfort"),
        ("hurt comfort", "hurt_comfort"),
        ("  h/c  ", "hurt_comfort"),
        ("Soulmates", "soulmates"),
        ("soulmates!", "soulmates"),
        ("SOULMATES", "soulmates"),
        ("Alternate Universe - Soulmates", "soulmates"),
        ("alternate universe: soulmates", "soulmates"),
        ("Alternate Universe — Soulmates", "soulmates"),
        ("AU – Soulmates", "soulmates"),
        ("AU - Soulmates", "soulmates"),
        ("A/B/O", "alpha_beta_omega"),
        ("Omegaverse", "alpha_beta_omega"),
        ("Alpha/Beta/Omega Dynamics", "alpha_beta_omega"),
        ("first kiss", "first_kiss"),
        ("Fluff", "fluff"),
        ("Not A Real Tag", None),
        ("", None),
        ("   ", None),
        ("Alternate Universe - Coffee Shops & Cafés", None),
    ],
)
def test_resolve(shipped: Taxonomy, tag: str, expected: str | None) -> None:
    assert shipped.resolve(tag) == expected


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("Alternate Universe - Soulmates", "soulmates"),
        ("Alternate Universe — Soulmates", "soulmates"),
        ("AU: Coffee Shops & Cafés", "coffee shops and cafes"),
        ("Hurt/Comfort", "hurt comfort"),
        ("  Naïve   Tag!!  ", "naive tag"),
        ("Ｆｕｌｌｗｉｄｔｈ", "fullwidth"),
        ("Australia", "australia"),
    ],
)
def test_normalize_tag(tag: str, expected: str) -> None:
    assert normalize_tag(tag) == expected


def test_check_ids(shipped: Taxonomy) -> None:
    shipped.check_ids(["fluff", "angst"], "here")
    with pytest.raises(TropemlError, match=r"^labels\.jsonl:3: unknown tag\(s\) 'fluf'"):
        shipped.check_ids(["fluff", "fluf"], "labels.jsonl:3")


# malformed taxonomies

GOOD = """
[[trope]]
id = "rain"
name = "Rain"
synonyms = ["Rainy Day"]
definition = "It rains."
related = ["cake"]

[[trope]]
id = "cake"
name = "Cake"
synonyms = []
definition = "Someone bakes."
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tropes.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_taxonomy_loads(tmp_path: Path) -> None:
    tax = Taxonomy.load(write(tmp_path, GOOD))
    assert tax.ids == ["rain", "cake"]
    assert tax["rain"].related == ("cake",)
    assert tax["cake"].spoiler is False
    assert tax.resolve("rainy day") == "rain"
    assert tax["rain"].scenes == ()


def test_scenes_are_parsed(tmp_path: Path) -> None:
    tax = Taxonomy.load(write(tmp_path, GOOD + 'scenes = ["It  pours\\n all day.", " "]\n'))
    assert tax["cake"].scenes == ("It pours all day.",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace('id = "rain"\n', ""), "'id' must be a snake_case string"),
        (GOOD.replace('id = "rain"', 'id = "Rain Day"'), "'id' must be a snake_case string"),
        (GOOD.replace('id = "cake"', 'id = "rain"'), "duplicate trope id"),
        (GOOD.replace('related = ["cake"]', 'related = ["pie"]'), "unknown related id"),
        (GOOD.replace('name = "Rain"\n', ""), "'name' must be a non-empty string"),
        (GOOD.replace('name = "Rain"', 'name = "  "'), "'name' must be a non-empty string"),
        (GOOD.replace('definition = "It rains."\n', ""), "'definition' must be"),
        (GOOD.replace('synonyms = ["Rainy Day"]', 'synonyms = "Rainy Day"'), "'synonyms' must"),
        (GOOD.replace('synonyms = ["Rainy Day"]', "synonyms = [1, 2]"), "'synonyms' must"),
        (GOOD + "spoiler = 'yes'\n", "'spoiler' must be true or false"),
        (GOOD + "scenes = 'It pours.'\n", "'scenes' must be a list of strings"),
        ("schema_version = 1\n", "expected a non-empty \\[\\[trope\\]\\] list"),
        ("trope = []\n", "expected a non-empty"),
        ("trope = [1, 2]\n", "expected a table"),
        ("[[trope]\nid = 'x'\n", "cannot read taxonomy"),
        ("this is = = not toml", "cannot read taxonomy"),
    ],
)
def test_malformed_taxonomy_names_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TropemlError, match=message) as info:
        Taxonomy.load(path)
    assert str(info.value).startswith(str(path))


def test_missing_taxonomy_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(TropemlError, match="taxonomy file not found") as info:
        Taxonomy.load(path)
    assert str(path) in str(info.value)


def test_non_utf8_taxonomy(tmp_path: Path) -> None:
    path = tmp_path / "tropes.toml"
    path.write_bytes(b'[[trope]]\nid = "caf\xe9"\n')
    with pytest.raises(TropemlError, match="cannot read taxonomy"):
        Taxonomy.load(path)


def test_from_dict_default_where() -> None:
    with pytest.raises(TropemlError, match=r"^<taxonomy>: "):
        Taxonomy.from_dict({})


FROZEN = {"1": "f8a1600acdb9d96b5a7284d2ba2212beb741d8c908f3b7b0c5dc8737647d4592"}
"""sha256 of data/tropes.toml per taxonomy version: a changed definition needs a new version."""


def test_the_shipped_taxonomy_is_frozen_at_its_version() -> None:
    import hashlib
    import tomllib

    path = ROOT / "data" / "tropes.toml"
    version = tomllib.loads(path.read_text(encoding="utf-8"))["version"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == FROZEN[version], (
        "data/tropes.toml changed: bump its version and pin the new hash here"
    )
