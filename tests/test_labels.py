from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tropeml.core.errors import TropemlError
from tropeml.core.taxonomy import Taxonomy
from tropeml.core.types import Passage
from tropeml.io.labels import SpanLabel, load_exemplars, load_span_labels, span_targets

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"

TAXONOMY = Taxonomy.from_dict(
    {
        "trope": [
            {"id": "rain", "name": "Rain", "definition": "It rains."},
            {"id": "cake", "name": "Cake", "definition": "Someone bakes."},
            {"id": "sword", "name": "Sword", "definition": "A sword fight."},
        ]
    }
)

SOURCE = "The rain fell all day.\n\nShe baked a cake in the oven.\n\nThey fought with swords."


@pytest.fixture(scope="module")
def shipped_taxonomy() -> Taxonomy:
    return Taxonomy.load(DATA / "tropes.toml")


# shipped data


def test_shipped_span_labels_load(shipped_taxonomy: Taxonomy) -> None:
    labels = load_span_labels(DATA / "labels" / "seeds.jsonl", shipped_taxonomy, root=ROOT)
    assert len(labels) > 10
    files = {label.file for label in labels}
    assert files and all((ROOT / f).is_file() for f in files)
    for label in labels:
        assert 0 <= label.start < label.end
        assert set(label.tags) <= set(shipped_taxonomy)
        assert label.where.startswith(str(DATA / "labels" / "seeds.jsonl") + ":")


def test_shipped_exemplars_load(shipped_taxonomy: Taxonomy) -> None:
    files = sorted((DATA / "exemplars").glob("*.jsonl"))
    assert files
    ids: list[str] = []
    for path in files:
        exemplars = load_exemplars(path, shipped_taxonomy)
        assert exemplars, path
        for ex in exemplars:
            assert ex.text.strip()
            assert not set(ex.tags) & set(ex.near_miss)
            ids.append(ex.id)
    assert len(ids) == len(set(ids)), "exemplar ids repeat across files"


# span label files


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "fics").mkdir()
    (tmp_path / "fics" / "a.txt").write_text(SOURCE, encoding="utf-8")
    return tmp_path


def span(start: int, end: int, tags: list[str], file: str = "fics/a.txt") -> dict[str, Any]:
    return {
        "file": file,
        "start": start,
        "end": end,
        "quote": SOURCE[start : start + 30],
        "tags": tags,
    }


def write_lines(path: Path, lines: list[Any]) -> Path:
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    path.write_text(text, encoding="utf-8")
    return path


def test_span_labels_load(root: Path) -> None:
    cake = SOURCE.index("She")
    path = write_lines(
        root / "labels.jsonl",
        [span(cake, len(SOURCE), ["cake", "sword"]), "", span(0, cake - 2, ["rain"])],
    )
    labels = load_span_labels(path, TAXONOMY, root=root)
    assert labels == [
        SpanLabel("fics/a.txt", cake, len(SOURCE), ("cake", "sword"), f"{path}:1"),
        SpanLabel("fics/a.txt", 0, cake - 2, ("rain",), f"{path}:3"),
    ]


def test_adjacent_spans_and_empty_tags_are_fine(root: Path) -> None:
    path = write_lines(root / "l.jsonl", [span(0, 10, []), span(10, 20, ["rain"])])
    assert [s.tags for s in load_span_labels(path, TAXONOMY, root=root)] == [(), ("rain",)]


def test_span_labels_with_bom(root: Path) -> None:
    path = root / "l.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(span(0, 5, ["rain"])).encode() + b"\n")
    assert len(load_span_labels(path, TAXONOMY, root=root)) == 1


def _changed(row: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Apply ``changes`` to ``row``; a value of None deletes the key."""
    for key, value in changes.items():
        if value is None:
            del row[key]
        else:
            row[key] = value
    return row


def _bad(**changes: Any) -> dict[str, Any]:
    return _changed(span(0, 10, ["rain"]), changes)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ('{"file": "fics/a.txt", "start": 0,', "bad JSON"),
        ("[1, 2, 3]", "expected a JSON object"),
        ('"just a string"', "expected a JSON object"),
        (_bad(file=None), "'file' must be a path string"),
        (_bad(file=""), "'file' must be a path string"),
        (_bad(start=None), "'start' and 'end' must be integers"),
        (_bad(end=None), "'start' and 'end' must be integers"),
        (_bad(start="0"), "'start' and 'end' must be integers"),
        (_bad(start=0.0), "'start' and 'end' must be integers"),
        (_bad(end=10.5), "'start' and 'end' must be integers"),
        (_bad(start=False), "'start' and 'end' must be integers"),
        (_bad(end=True), "'start' and 'end' must be integers"),
        (_bad(quote=None), "'quote' must be a string"),
        (_bad(quote=""), "quote does not match"),
        (_bad(quote="Nothing like the text"), "quote does not match"),
        (_bad(tags="rain"), "'tags' must be a list of tag ids"),
        (_bad(tags=[1]), "'tags' must be a list of tag ids"),
        (_bad(tags=["rain", "snow"]), "unknown tag\\(s\\) 'snow'"),
        (_bad(tags=["rain", "rain"]), "repeats a tag"),
        (_bad(end=len(SOURCE) + 1), "out of range"),
        (_bad(start=-1), "out of range"),
        (_bad(start=10, end=10, quote=SOURCE[10:20]), "out of range"),
        (_bad(start=12, end=10, quote=SOURCE[12:20]), "out of range"),
        (_bad(file="fics/missing.txt"), "no such file"),
    ],
)
def test_bad_label_line_names_file_and_line(root: Path, bad: Any, message: str) -> None:
    good = span(40, 50, ["cake"])
    path = write_lines(root / "labels.jsonl", [good, "", bad, span(60, 70, ["cake"])])
    with pytest.raises(TropemlError, match=message) as info:
        load_span_labels(path, TAXONOMY, root=root)
    assert str(info.value).startswith(f"{path}:3: ")


def test_span_labels_missing_tags_means_none(root: Path) -> None:
    path = write_lines(root / "l.jsonl", [_bad(tags=None)])
    assert load_span_labels(path, TAXONOMY, root=root)[0].tags == ()


def test_overlapping_spans(root: Path) -> None:
    path = write_lines(root / "l.jsonl", [span(20, 40, ["cake"]), span(0, 21, ["rain"])])
    with pytest.raises(TropemlError, match=r"span overlaps the span at .*:2") as info:
        load_span_labels(path, TAXONOMY, root=root)
    assert str(info.value).startswith(f"{path}:1: ")


def test_identical_spans_overlap(root: Path) -> None:
    path = write_lines(root / "l.jsonl", [span(0, 10, ["rain"]), span(0, 10, ["cake"])])
    with pytest.raises(TropemlError, match="overlaps"):
        load_span_labels(path, TAXONOMY, root=root)


def test_spans_in_different_files_may_overlap(root: Path) -> None:
    (root / "fics" / "b.txt").write_text(SOURCE, encoding="utf-8")
    path = write_lines(
        root / "l.jsonl", [span(0, 10, ["rain"]), span(0, 10, ["cake"], file="fics/b.txt")]
    )
    assert len(load_span_labels(path, TAXONOMY, root=root)) == 2


def test_missing_label_file(tmp_path: Path) -> None:
    with pytest.raises(TropemlError, match="no such label file"):
        load_span_labels(tmp_path / "nope.jsonl", TAXONOMY, root=tmp_path)


def test_label_file_not_utf8(root: Path) -> None:
    path = root / "l.jsonl"
    path.write_bytes(b'{"file": "caf\xe9"}\n')
    with pytest.raises(TropemlError, match=r"not UTF-8") as info:
        load_span_labels(path, TAXONOMY, root=root)
    assert str(path) in str(info.value)


def test_label_source_that_is_binary(root: Path) -> None:
    (root / "fics" / "bin.txt").write_bytes(b"\x00\x01\x02")
    path = write_lines(root / "l.jsonl", [span(0, 2, [], file="fics/bin.txt")])
    with pytest.raises(TropemlError, match=r":1: .*binary"):
        load_span_labels(path, TAXONOMY, root=root)


# exemplars


def exemplar(eid: str = "x-1", **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"id": eid, "text": "Rain and cake.", "tags": ["rain"], "near_miss": []}
    return _changed(row, changes)


def test_exemplars_load(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "ex.jsonl",
        [
            exemplar("x-1", source="written", style="first person"),
            "",
            exemplar("x-2", tags=[], near_miss=["cake", "sword"]),
        ],
    )
    first, second = load_exemplars(path, TAXONOMY)
    assert first.id == "x-1"
    assert first.tags == ("rain",)
    assert first.style == "first person"
    assert first.group == "exemplar:x-1"
    assert second.tags == ()
    assert second.near_miss == ("cake", "sword")
    assert second.source == "written"
    assert second.style == ""


def test_passages_of_one_book_share_a_group(tmp_path: Path) -> None:
    """Public-domain passages group by book, so no book sits on both sides of a fold."""
    book = {"source": "public-domain", "repo": "GITenberg/Some-Book_1"}
    path = write_lines(
        tmp_path / "ex.jsonl",
        [
            exemplar("pd-1", **book),
            exemplar("pd-2", **book),
            exemplar("pd-3", source="public-domain", repo="GITenberg/Other_2"),
            exemplar("w-1", source="written"),
        ],
    )
    groups = [e.group for e in load_exemplars(path, TAXONOMY)]
    assert groups == [
        "book:GITenberg/Some-Book_1",
        "book:GITenberg/Some-Book_1",
        "book:GITenberg/Other_2",
        "exemplar:w-1",
    ]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (exemplar("x-1"), "id 'x-1' already used at .*:1"),
        (exemplar("x-2", tags=["rain"], near_miss=["rain"]), "in both lists"),
        (exemplar("x-2", text=""), "'text' must be a non-empty string"),
        (exemplar("x-2", text="   \n "), "'text' must be a non-empty string"),
        (exemplar("x-2", text=None), "'text' must be a non-empty string"),
        (exemplar("x-2", text=["list"]), "'text' must be a non-empty string"),
        (exemplar("x-2", id=None), "'id' must be a non-empty string"),
        (exemplar("", text="t"), "'id' must be a non-empty string"),
        (exemplar("x-2", tags=["snow"]), "unknown tag"),
        (exemplar("x-2", near_miss=["snow"]), "unknown tag"),
        (exemplar("x-2", near_miss="cake"), "'near_miss' must be a list"),
        ("{not json}", "bad JSON"),
    ],
)
def test_bad_exemplar_names_file_and_line(tmp_path: Path, bad: Any, message: str) -> None:
    path = write_lines(tmp_path / "ex.jsonl", [exemplar("x-1"), bad])
    with pytest.raises(TropemlError, match=message) as info:
        load_exemplars(path, TAXONOMY)
    assert str(info.value).startswith(f"{path}:2: ")


# span_targets

TAGS = ["rain", "cake"]


def label(start: int, end: int, *tags: str) -> SpanLabel:
    return SpanLabel("f", start, end, tuple(tags))


def passage(start: int, end: int) -> Passage:
    return Passage(start, end, "x" * (end - start))


def test_targets_labelled_passage() -> None:
    Y = span_targets([passage(0, 100)], [label(0, 60, "rain")], TAGS)
    assert Y.dtype == np.int8
    assert Y.tolist() == [[1, 0]]


def test_targets_low_coverage_is_unknown() -> None:
    Y = span_targets([passage(0, 100)], [label(0, 40, "rain")], TAGS)
    assert Y.tolist() == [[-1, -1]]


def test_targets_coverage_threshold_is_configurable() -> None:
    Y = span_targets([passage(0, 100)], [label(0, 40, "rain")], TAGS, min_labelled=0.4)
    assert Y.tolist() == [[1, 0]]


def test_targets_unlabelled_passage_is_unknown() -> None:
    Y = span_targets([passage(0, 100), passage(200, 300)], [label(0, 100, "rain")], TAGS)
    assert Y.tolist() == [[1, 0], [-1, -1]]


def test_targets_positive_threshold() -> None:
    spans = [label(0, 75), label(75, 400, "rain")]
    # rain covers 25 of 100 characters (25%), and 25 of its 325 lie in the passage
    assert span_targets([passage(0, 100)], spans, TAGS).tolist() == [[1, 0]]
    spans = [label(0, 80), label(80, 400, "rain")]  # 20%: not enough
    assert span_targets([passage(0, 100)], spans, TAGS).tolist() == [[0, 0]]
    assert span_targets([passage(0, 100)], spans, TAGS, min_positive=0.2).tolist() == [[1, 0]]


def test_targets_short_span_mostly_inside_counts() -> None:
    spans = [label(0, 40), label(40, 50, "cake"), label(50, 100)]
    assert span_targets([passage(0, 100)], spans, TAGS).tolist() == [[0, 1]]
    # only a third of a short span inside: no
    spans = [label(0, 90), label(90, 105, "cake")]
    assert span_targets([passage(0, 95)], spans, TAGS).tolist() == [[0, 0]]
    # exactly half of it inside: yes
    spans = [label(0, 90), label(90, 100, "cake")]
    assert span_targets([passage(0, 95)], spans, TAGS).tolist() == [[0, 1]]


def test_targets_tags_add_up_over_spans() -> None:
    spans = [label(0, 20, "rain"), label(20, 100, "cake"), label(100, 1000, "rain")]
    Y = span_targets([passage(0, 120)], spans, TAGS)
    # rain: 20 + 20 = 40 of 120 >= 25%
    assert Y.tolist() == [[1, 1]]


def test_targets_ignore_tags_not_in_columns() -> None:
    Y = span_targets([passage(0, 10)], [label(0, 10, "sword", "rain")], TAGS)
    assert Y.tolist() == [[1, 0]]


def test_targets_empty() -> None:
    assert span_targets([], [label(0, 10, "rain")], TAGS).shape == (0, 2)
    assert span_targets([passage(0, 10)], [], TAGS).tolist() == [[-1, -1]]
