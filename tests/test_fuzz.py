"""Fuzzing the readers, the passage splitter, the label loader and the model-config reader.

Each target runs a few hundred generated cases by default and several thousand more in the
``slow`` run (``pytest -m slow tests/test_fuzz.py``; 12,000 in all). The invariants: a reader
gives a well-formed :class:`Work` or a :class:`TropemlError` naming the input, never another
exception; passages are ordered, disjoint, inside the story, quote the source exactly
(``text == source[start:end]``), fit the token budget and cover every non-blank character
except scene-break and chapter-heading lines; labels load with valid spans or fail with
``file:line``.
"""

from __future__ import annotations

import codecs
import itertools
import json
import re
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_TOML
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tropeml.core.errors import TropemlError
from tropeml.core.taxonomy import Taxonomy
from tropeml.core.types import Region, Work
from tropeml.io.labels import load_span_labels
from tropeml.io.readers import decode_bytes, parse_text, read_work
from tropeml.model.persistence import read_config
from tropeml.text.passages import _HEADING, _SEPARATOR, count_words, split_passages

QUICK, SLOW = 150, 3000  # examples per target: default run, slow run (4 targets)


def fuzz(strategy: st.SearchStrategy[Any], check: Callable[[Any], None], n: int) -> int:
    """Run ``check`` on ``n`` generated examples; return how many ran."""
    tried = 0

    @settings(
        max_examples=n,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(strategy)
    def run(example: Any) -> None:
        nonlocal tried
        tried += 1
        check(example)

    run()
    assert tried >= n
    return tried


SIZES = [pytest.param(QUICK, id="quick"), pytest.param(SLOW, id="slow", marks=pytest.mark.slow)]


# --------------------------------------------------------------------------- strategies

FRAGMENTS = [
    "The rain fell.",
    "She said, “Stay.”",
    "word",
    "Dr. Who?",
    "…",
    " ",
    "\u00a0",
    "\t",
    "\n",
    "\n\n",
    "\n\n\n",
    "\r\n",
    "\r",
    "\n***\n",
    "\n~~~\n",
    "\n---\n",
    "\noOo\n",
    "\n* * *\n",
    "\nChapter 3\n",
    "\nChapter Twelve: The End\n",
    "\nEpilogue\n",
    "\nPart of him knew.\n",
    "Work Header\n",
    "Work Text:\n",
    "x" * 300,
    "longword" * 40,
    "!" * 20,
]
story_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=30)), max_size=60).map(
    "".join
)
encodings = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "cp1252", "latin-1"])
encoded_story = st.tuples(story_text, encodings).map(lambda t: t[0].encode(t[1], "replace"))
boms = st.sampled_from([b"", codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE])
arbitrary_bytes = st.one_of(
    st.binary(max_size=400),
    encoded_story,
    st.tuples(boms, st.binary(max_size=200)).map(b"".join),
    st.tuples(encoded_story, st.binary(max_size=8)).map(b"".join),  # a torn or corrupt tail
)


# --------------------------------------------------------------------------- invariants


def check_passages(work: Work, max_tokens: int) -> None:
    passages = split_passages(work, count_words, max_tokens)
    text = work.text
    covered = bytearray(len(text))
    last_end = -1
    regions = work.story_regions()
    for p in passages:
        assert p.text == text[p.start : p.end]
        assert p.start < p.end and p.start >= last_end, (p, last_end)
        assert any(r.start <= p.start and p.end <= r.end for r in regions)
        assert count_words([p.text])[0] <= max_tokens
        assert p.text.strip()
        covered[p.start : p.end] = b"\x01" * (p.end - p.start)
        last_end = p.end
    for region in regions:  # what no passage covers is blank, a scene break or a heading
        for i in range(region.start, region.end):
            if not covered[i] and not text[i].isspace():
                line_start = text.rfind("\n", 0, i) + 1
                line_end = text.find("\n", i)
                line = text[line_start : len(text) if line_end < 0 else line_end]
                assert _SEPARATOR.fullmatch(line) or _HEADING.fullmatch(line), (i, line)


def check_bytes(data: bytes) -> None:
    try:
        work = parse_text(decode_bytes(data, "fuzz.txt"), source="fuzz.txt")
    except TropemlError as exc:
        assert str(exc).startswith("fuzz.txt: ") and "\n" not in str(exc)
        return
    assert "\r" not in work.text and work.text.strip()
    check_passages(work, 40)


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_reader_and_splitter_on_bytes(n: int) -> None:
    fuzz(arbitrary_bytes, check_bytes, n)


works = st.builds(
    lambda text, a, b, budget: (
        Work(text=text, regions=(Region(min(a, b) % (len(text) + 1), len(text)),)),
        budget,
    ),
    story_text,
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.integers(1, 60),
)


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_splitter_on_story_text(n: int) -> None:
    fuzz(works, lambda wb: check_passages(*wb), n)


# --------------------------------------------------------------------------- label files

FIC = "The rain fell on the roof.\n\nShe baked a cake, then a duel with swords began.\n" * 3
TAXONOMY = Taxonomy.from_dict(tomllib.loads(TINY_TOML))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
spans = st.tuples(st.integers(-5, len(FIC) + 5), st.integers(-5, len(FIC) + 5))
good_rows = st.builds(
    lambda se, tags, quote_len: {
        "file": "fic.txt",
        "start": se[0],
        "end": se[1],
        "quote": FIC[se[0] : se[0] + quote_len] if se[0] >= 0 else "x",
        "tags": tags,
    },
    spans,
    st.lists(st.sampled_from(["rain", "cake", "sword", "hail"]), max_size=3),
    st.integers(0, 40),
)
mutated_rows = st.tuples(good_rows, st.sampled_from(["file", "start", "end", "quote", "tags"]))
mutated_rows = mutated_rows.flatmap(
    lambda rk: json_values.map(lambda v: json.dumps({**rk[0], rk[1]: v}))
)
random_lines = st.lists(
    st.one_of(
        good_rows.map(json.dumps),
        mutated_rows,
        json_values.map(json.dumps),
        st.text(max_size=40).filter(lambda s: "\n" not in s and "\r" not in s),
        st.just(""),
    ),
    max_size=6,
)
tags = st.lists(st.sampled_from(["rain", "cake", "sword"]), max_size=3, unique=True)
valid_lines = st.lists(st.integers(0, len(FIC)), min_size=2, max_size=8, unique=True).flatmap(
    lambda cuts: st.permutations(
        [
            {"file": "fic.txt", "start": a, "end": b, "quote": FIC[a : a + 30]}
            for a, b in itertools.pairwise(sorted(cuts))
        ]
    ).flatmap(
        lambda rows: st.lists(tags, min_size=len(rows), max_size=len(rows)).map(
            lambda ts: [json.dumps({**r, "tags": t}) for r, t in zip(rows, ts, strict=True)]
        )
    )
)
label_lines = st.one_of(
    valid_lines,  # disjoint spans with true quotes, in any order: these must load
    st.tuples(valid_lines, st.integers(0, 7), mutated_rows | json_values.map(json.dumps)).map(
        lambda t: [*t[0][: t[1]], t[2], *t[0][t[1] + 1 :]]
    ),
    random_lines,
)


def check_labels(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "fic.txt").write_text(FIC, encoding="utf-8")
        path = root / "labels.jsonl"
        path.write_text("\n".join(lines), encoding="utf-8")
        try:
            labels = load_span_labels(path, TAXONOMY, root)
        except TropemlError as exc:
            message = str(exc)
            assert "\n" not in message
            assert re.match(re.escape(str(path)) + r":\d+: ", message), message
            return
    text = FIC
    assert len(labels) == sum(1 for line in lines if line.strip())
    ordered = sorted(labels, key=lambda s: s.start)
    for label in ordered:
        assert 0 <= label.start < label.end <= len(text)
        assert set(label.tags) <= set(TAXONOMY.ids)
    for a, b in itertools.pairwise(ordered):
        assert a.end <= b.start


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_label_loader(n: int) -> None:
    fuzz(label_lines, check_labels, n)


# --------------------------------------------------------------------------- model config

VALID_CONFIG: dict[str, Any] = {
    "format": "tropeml-model",
    "format_version": 1,
    "tropeml_version": "0.1.0",
    "name": "m",
    "tags": ["rain", "cake"],
    "thresholds": {"rain": 0.5, "cake": 0.5},
    "encoder": {"name": "hashing-64", "dimension": 64},
    "rollup": {"top_k": 2, "max_evidence": 3},
    "head": {"file": "head.skops", "sha256": "0" * 64},
}
configs = st.one_of(
    json_values,
    st.tuples(st.sampled_from(sorted(VALID_CONFIG)), json_values).map(
        lambda kv: {**VALID_CONFIG, kv[0]: kv[1]}
    ),
    st.tuples(st.sampled_from(["encoder", "rollup", "head", "thresholds"]), st.text(max_size=8))
    .flatmap(lambda kt: json_values.map(lambda v: (kt, v)))
    .map(lambda ktv: {**VALID_CONFIG, ktv[0][0]: {**VALID_CONFIG[ktv[0][0]], ktv[0][1]: ktv[1]}}),
)


def check_config(config: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(config), encoding="utf-8")
        try:
            read_config(tmp)
        except TropemlError as exc:
            assert str(exc).startswith(str(Path(tmp) / "config.json")) and "\n" not in str(exc)


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_config_reader(n: int) -> None:
    fuzz(configs, check_config, n)


def test_valid_config_passes() -> None:
    """The config fuzzing starts from a config that is valid (so mutations are near misses)."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(VALID_CONFIG), encoding="utf-8")
        assert read_config(tmp)["tags"] == ["rain", "cake"]


def test_files_on_disk_match_decode_bytes(tmp_path: Path) -> None:
    """read_work (which sniffs the first 8 KiB) agrees with decode_bytes on whole files."""

    def check(data: bytes) -> None:
        path = tmp_path / "f.txt"
        path.write_bytes(data)
        try:
            expected: str | Exception = decode_bytes(data, str(path))
        except TropemlError as exc:
            expected = exc
        try:
            got: str | Exception = read_work(path).text
        except TropemlError as exc:
            got = exc
        assert type(got) is type(expected)
        if isinstance(got, str):
            assert got == expected

    fuzz(
        st.tuples(arbitrary_bytes, st.integers(0, 9000)).map(lambda t: b"a" * t[1] + t[0]),
        check,
        QUICK,
    )


@pytest.mark.parametrize("text", [')\n"', '***\n"\nShe left.', "~~~\n...\n"])
def test_scene_break_does_not_swallow_the_next_line(text: str) -> None:
    """Found by the fuzzer: a separator line ate a following line of punctuation."""
    check_passages(Work(text=text), 40)
