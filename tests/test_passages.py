from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tropeml.core.types import Region, Work
from tropeml.io.readers import parse_text
from tropeml.text.passages import TokenCounter, count_words, split_passages

HEADING_WORDS = {"chapter", "part", "book", "prologue", "epilogue", "interlude"}
COMMON = [
    "rain",
    "she",
    "walked",
    "into",
    "the",
    "kitchen",
    "and",
    "said",
    "nothing",
    "café",
    "naïve",
    "Ζεύς",
    "日本語",
    "привет",
    "don't",
    "well-known",
    "3",
    "über",
    "O'Brien",
    "🙂ok",
]
SEPARATORS = ["***", "* * *", "~~~", "---", "oOo", "OoO", "xXx", "~*~*~", "◇◆◇", "❦", "- - -", "#"]
HEADINGS = [
    "Chapter 1",
    "Chapter 12: The Storm",
    "CHAPTER TWO - Rain",
    "Chapter Twenty-One",
    "Prologue",
    "Epilogue: Five Years Later",
    "Part III",
    "Book 2. Ashes",
    "Interlude",
]
HSPACE = st.text(alphabet=" \t\u00a0", max_size=3)
ASCII_SPACE = st.sampled_from(["", " ", "\t", "  "])


def _ok_word(w: str) -> bool:
    return w.lower() not in HEADING_WORDS


LETTERS = "abcdefghijklmnopqrstuvwxyzABCXYZéßøçñÅΩλжЯ日本語한국어ا٣4"
unicode_word = st.text(alphabet=LETTERS, min_size=1, max_size=8)
long_word = st.builds(lambda c, n: c * n, st.sampled_from("abé日"), st.integers(30, 120))
word = st.one_of(st.sampled_from(COMMON), st.sampled_from(COMMON), unicode_word, long_word).filter(
    _ok_word
)


@st.composite
def sentence(draw: st.DrawFn) -> str:
    words = draw(st.lists(word, min_size=1, max_size=10))
    words = [w + ("," if draw(st.integers(0, 6)) == 0 else "") for w in words]
    opener = draw(st.sampled_from(["", "", "", "“", '"']))
    end = draw(st.sampled_from([".", ".", "!", "?", "…", ".”", '?"', "!)"]))
    return opener + " ".join(words) + end


@st.composite
def paragraph(draw: st.DrawFn) -> str:
    sentences = draw(st.lists(sentence(), min_size=1, max_size=4))
    out = sentences[0]
    for s in sentences[1:]:
        out += draw(st.sampled_from([" ", " ", "  ", "\n"])) + s
    return out


@dataclass
class Doc:
    text: str
    breaks: list[tuple[int, int]]
    headings: list[tuple[int, int, str]]


@st.composite
def document(draw: st.DrawFn) -> Doc:
    text = draw(st.sampled_from(["", "", "\n", "  \n\n", "\n\n\n"]))
    breaks: list[tuple[int, int]] = []
    headings: list[tuple[int, int, str]] = []

    def add_line(line: str, heading: bool) -> None:
        nonlocal text
        text += draw(st.sampled_from(["\n", "\n\n"])) if text else ""
        start = len(text)
        text += line
        breaks.append((start, len(text)))
        if heading:
            headings.append((start, len(text), " ".join(line.split())))
        text += draw(st.sampled_from(["\n", "\n\n"]))

    if draw(st.booleans()):
        add_line(draw(st.sampled_from(HEADINGS)), heading=True)
    n_scenes = draw(st.integers(1, 4))
    for i in range(n_scenes):
        paragraphs = draw(st.lists(paragraph(), min_size=1, max_size=3))
        for j, para in enumerate(paragraphs):
            if j:
                text += "\n" + draw(ASCII_SPACE) + "\n"
            text += para
        if i == n_scenes - 1:
            break
        kind = draw(st.sampled_from(["blank", "separator", "heading"]))
        if kind == "blank":
            start = len(text)
            text += "\n"
            for _ in range(draw(st.integers(2, 4))):
                text += draw(HSPACE) + "\n"
            breaks.append((start, len(text)))
        elif kind == "separator":
            pad = draw(st.sampled_from(["", "  ", "\t"]))
            add_line(pad + draw(st.sampled_from(SEPARATORS)) + pad, heading=False)
        else:
            add_line(draw(st.sampled_from(HEADINGS)), heading=True)
    text += draw(st.sampled_from(["", "\n", "\n\n\n", "  "]))
    return Doc(text, breaks, headings)


def subword_counter(texts: list[str]) -> list[int]:
    return [sum(math.ceil(len(w) / 4) for w in t.split()) for t in texts]


COUNTERS = st.sampled_from([count_words, subword_counter])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=document(), max_tokens=st.integers(1, 40), counter=COUNTERS)
def test_split_passages_properties(doc: Doc, max_tokens: int, counter: TokenCounter) -> None:
    text = doc.text
    passages = split_passages(text, counter, max_tokens)

    # offsets and order
    for p in passages:
        assert 0 <= p.start < p.end <= len(text)
        assert p.text == text[p.start : p.end]
        assert p.text == p.text.strip()
    for a, b in itertools.pairwise(passages):
        assert a.end <= b.start

    # token budget
    if passages:
        assert max(counter([p.text for p in passages])) <= max_tokens

    # no passage crosses a scene break
    for bs, be in doc.breaks:
        for p in passages:
            assert p.end <= bs or p.start >= be, (p, text[bs:be])

    # nothing lost: every word outside separator/heading lines is inside a passage
    covered = bytearray(len(text))
    for p in passages:
        covered[p.start : p.end] = b"\x01" * (p.end - p.start)
    for m in re.finditer(r"\S+", text):
        if any(m.start() < be and bs < m.end() for bs, be in doc.breaks):
            continue
        assert all(covered[m.start() : m.end()]), f"lost {m.group()!r}"

    # each passage belongs to the chapter of the last heading before it
    for p in passages:
        before = [h for s, e, h in doc.headings if e <= p.start]
        assert p.chapter == (before[-1] if before else None)


@settings(max_examples=50, deadline=None)
@given(doc=document(), max_tokens=st.integers(1, 40))
def test_ao3_header_is_skipped(doc: Doc, max_tokens: int) -> None:
    header = "Work Header\n\nSecret Title\nRating: Teen\nFandom: Zzyzx\n\nWork Text:\n"
    work = parse_text(header + doc.text)
    assert work.title == "Secret Title"
    passages = split_passages(work, count_words, max_tokens)
    for p in passages:
        assert p.start >= len(header)
        assert p.text == work.text[p.start : p.end]
        assert "Zzyzx" not in p.text


def test_scene_breaks_split() -> None:
    text = "One two three.\n\n***\n\nFour five.\n\n\n\nSix seven.\n~~~\nEight.\n\noOo\n\nNine."
    passages = split_passages(text, count_words, 100)
    assert [p.text for p in passages] == [
        "One two three.",
        "Four five.",
        "Six seven.",
        "Eight.",
        "Nine.",
    ]


def test_one_blank_line_packs_paragraphs_together() -> None:
    text = "First paragraph here.\n\nSecond paragraph here.\n \nThird."
    passages = split_passages(text, count_words, 100)
    assert len(passages) == 1
    assert passages[0].text == text


def test_paragraphs_pack_greedily_within_budget() -> None:
    text = "a b c.\n\nd e f.\n\ng h i."
    passages = split_passages(text, count_words, 6)
    assert [p.text for p in passages] == ["a b c.\n\nd e f.", "g h i."]


def test_overlong_paragraph_split_at_sentence_boundaries() -> None:
    sentences = [
        "The rain came down hard.",
        "She ran for the door!",
        "Was anyone home?",
        "Nobody answered her at all…",
        "“Hello,” she called.",
    ]
    text = " ".join(sentences)
    passages = split_passages(text, count_words, 6)
    for p in passages:
        assert count_words([p.text])[0] <= 6
        assert p.text[-1] in ".!?…”"
    assert " ".join(p.text for p in passages) == text
    assert [p.text for p in passages][:2] == ["The rain came down hard.", "She ran for the door!"]


def test_overlong_sentence_split_between_words() -> None:
    text = "one two three four five six seven eight nine ten."
    passages = split_passages(text, count_words, 4)
    assert [p.text for p in passages] == [
        "one two three four",
        "five six seven eight",
        "nine ten.",
    ]


def test_overlong_word_split_by_characters() -> None:
    word = "x" * 25 + "y"
    passages = split_passages(f"Short. {word}", lambda ts: [len(t) for t in ts], 10)
    assert "".join(p.text for p in passages if p.text != "Short.") == word
    assert all(len(p.text) <= 10 for p in passages)


def test_chapter_headings_set_chapter() -> None:
    text = (
        "Before any heading.\n\n"
        "Chapter 1: The  Rain\n\nIt rained.\n\n***\n\nStill raining.\n\n"
        "Chapter Two\n\nSunshine.\n\nEpilogue\n\nThe end."
    )
    passages = split_passages(text, count_words, 100)
    assert [(p.text, p.chapter) for p in passages] == [
        ("Before any heading.", None),
        ("It rained.", "Chapter 1: The Rain"),
        ("Still raining.", "Chapter 1: The Rain"),
        ("Sunshine.", "Chapter Two"),
        ("The end.", "Epilogue"),
    ]


@pytest.mark.parametrize(
    "line",
    [
        "Part of him wanted to stay.",
        "Book in hand, she left.",
        "Chapter and verse, he could quote it all.",
        "Prologue or not, the story had started.",
    ],
)
def test_story_lines_starting_with_heading_words_are_kept(line: str) -> None:
    text = f"{line}\nHe left anyway."
    passages = split_passages(text, count_words, 100)
    assert [p.text for p in passages] == [text]
    assert passages[0].chapter is None


def test_blank_lines_holding_unicode_spaces_are_a_scene_break() -> None:
    text = "One.\n\u00a0\n\u00a0\nTwo."
    assert [p.text for p in split_passages(text, count_words, 100)] == ["One.", "Two."]


def test_region_chapter_is_used() -> None:
    text = "Intro words.\n\nChapter 3\n\nBody text here."
    work = Work(text=text, regions=(Region(0, 12, "First"), Region(14, len(text), "Second")))
    passages = split_passages(work, count_words, 100)
    assert [(p.text, p.chapter) for p in passages] == [
        ("Intro words.", "First"),
        ("Body text here.", "Second"),
    ]


def test_work_with_ao3_header_skips_header() -> None:
    text = (
        "Work Header\n\nThe Long Night\nRating: General Audiences\nWords: 9\n\n"
        "Work Text:\nThe storm broke at midnight.\n\nShe slept."
    )
    work = parse_text(text)
    assert work.title == "The Long Night"
    passages = split_passages(work, count_words, 100)
    assert [p.text for p in passages] == ["The storm broke at midnight.\n\nShe slept."]
    assert passages[0].start == text.index("The storm")


@pytest.mark.parametrize("text", ["", "   ", "\n\n\n", "***\n\n~~~"])
def test_no_story_text_gives_no_passages(text: str) -> None:
    assert split_passages(text) == []


def test_max_tokens_must_be_positive() -> None:
    with pytest.raises(ValueError):
        split_passages("text", count_words, 0)


def test_default_counter_and_budget() -> None:
    text = " ".join(["word"] * 600) + "."
    passages = split_passages(text)
    assert all(len(p.text.split()) <= 254 for p in passages)
    assert sum(len(p.text.split()) for p in passages) == 600
