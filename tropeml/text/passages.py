"""Split a work into passages that fit the encoder, keeping character offsets.

A passage never crosses a scene break (runs of blank lines, ``***``, ``~~~``, ``---``, centred
symbols, ``oOo``) or a chapter heading, and packs whole paragraphs while they fit the encoder's
token budget, as counted by the encoder's own tokenizer. A paragraph that is too long on its own
is split at sentence boundaries (and a sentence that is still too long, between words), so
nothing is ever truncated silently. Every passage satisfies ``text == source[start:end]``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from tropeml.core.types import Passage, Region, Work

TokenCounter = Callable[[list[str]], list[int]]
"""Counts the tokens of each text, without the encoder's special tokens."""

# Blank means holding only spaces, tabs or other Unicode spaces (AO3 copies hold U+00A0).
_BLANK_RUN = re.compile(r"\n[^\S\n]*\n(?:[^\S\n]*\n)+")
_SEPARATOR = re.compile(
    r"^[^\S\n]*(?:[^\w\s\"'“”‘’(\[][^\w\n]*|[oO0]{3,}|[xX]{3,}|(?:[oO0][ \t]*){3,})[^\S\n]*$", re.M
)
_NUMBER = (
    r"(?:\d+|[ivxlcdm]+|(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"
    r"|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty"
    r"|fifty|sixty|seventy|eighty|ninety|hundred)(?:-[a-z]+)?)"
)
# "Chapter 3", "Part IV: Title", "Epilogue - Title"; not a story line such as "Part of him...".
_HEADING = re.compile(
    rf"^[^\S\n]*(?:(?:chapter|part|book)[^\S\n]+{_NUMBER}|prologue|epilogue|interlude)"
    r"(?:[^\S\n]*[:.\-–—|(][^\n]{0,80})?[^\S\n]*$",
    re.M | re.I,
)
_PARAGRAPH = re.compile(r"\S[^\n]*(?:\n[ \t]*\S[^\n]*)*")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*(?=\s)")
_WORD = re.compile(r"\S+")


def count_words(texts: list[str]) -> list[int]:
    """Count whitespace-separated words: a crude token counter for tests and fallbacks."""
    return [len(t.split()) for t in texts]


def split_passages(
    work: Work | str,
    count_tokens: TokenCounter = count_words,
    max_tokens: int = 254,
) -> list[Passage]:
    """Split a work into passages of at most ``max_tokens`` tokens each.

    Args:
        work: A :class:`Work` (its story regions are split) or a plain string.
        count_tokens: Token counter of the encoder (special tokens not counted).
        max_tokens: Token budget of one passage, special tokens excluded
            (all-MiniLM-L6-v2 reads 256 tokens including ``[CLS]`` and ``[SEP]``: 254).

    Returns:
        Passages in text order, each with ``text == source[start:end]``.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    if isinstance(work, str):
        work = Work(text=work)
    text = work.text
    passages: list[Passage] = []
    for region in work.story_regions():
        chapter = region.chapter
        for start, end, heading in _scenes(text, region):
            if heading is not None and region.chapter is None:
                chapter = heading
            units = _units(text, start, end, count_tokens, max_tokens)
            for s, e in _pack(units, max_tokens):
                passages.append(Passage(start=s, end=e, text=text[s:e], chapter=chapter))
    return passages


def _scenes(text: str, region: Region) -> list[tuple[int, int, str | None]]:
    """Cut a region at scene breaks; yield (start, end, heading-that-opens-it)."""
    cuts: list[tuple[int, int, str | None]] = []  # (cut start, cut end, heading text)
    for m in _BLANK_RUN.finditer(text, region.start, region.end):
        cuts.append((m.start(), m.end(), None))
    for m in _SEPARATOR.finditer(text, region.start, region.end):
        cuts.append((m.start(), m.end(), None))
    for m in _HEADING.finditer(text, region.start, region.end):
        cuts.append((m.start(), m.end(), " ".join(m.group().split())))
    cuts.sort()
    scenes: list[tuple[int, int, str | None]] = []
    pos, heading = region.start, None
    for cs, ce, head in cuts:
        if cs < pos:  # overlapping cuts (a heading inside a blank run): extend
            pos = max(pos, ce)
            heading = head or heading
            continue
        scenes.append((pos, cs, heading))
        pos, heading = ce, head
    scenes.append((pos, region.end, heading))
    return [(s, e, h) for s, e, h in scenes if text[s:e].strip()] or []


def _units(
    text: str, start: int, end: int, count_tokens: TokenCounter, budget: int
) -> list[tuple[int, int, int]]:
    """Paragraphs of a scene as (start, end, tokens); overlong ones split finer."""
    spans = [(m.start(), m.end()) for m in _PARAGRAPH.finditer(text, start, end)]
    spans = [(s, s + len(text[s:e].rstrip())) for s, e in spans]
    return _fit(text, spans, count_tokens, budget, level=0)


def _fit(
    text: str,
    spans: Sequence[tuple[int, int]],
    count_tokens: TokenCounter,
    budget: int,
    level: int,
) -> list[tuple[int, int, int]]:
    if not spans:
        return []
    counts = count_tokens([text[s:e] for s, e in spans])
    out: list[tuple[int, int, int]] = []
    for (s, e), n in zip(spans, counts, strict=True):
        if n <= budget:
            out.append((s, e, n))
        elif level == 0:
            out.extend(_fit(text, _sentences(text, s, e), count_tokens, budget, 1))
        elif level == 1:
            out.extend(_fit(text, _words(text, s, e), count_tokens, budget, 2))
        else:  # a single "word" over budget: cut by characters (a token is >= 1 character)
            for cs in range(s, e, budget):
                out.append((cs, min(cs + budget, e), min(budget, e - cs)))
    return out


def _sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans, pos = [], start
    for m in _SENTENCE_END.finditer(text, start, end):
        spans.append((pos, m.end()))
        nxt = m.end()
        while nxt < end and text[nxt].isspace():
            nxt += 1
        pos = nxt
    if pos < end:
        spans.append((pos, end))
    return [(s, e) for s, e in spans if s < e]


def _words(text: str, start: int, end: int) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _WORD.finditer(text, start, end)]


def _pack(units: list[tuple[int, int, int]], budget: int) -> list[tuple[int, int]]:
    """Greedily pack consecutive units into windows whose token sum fits the budget."""
    windows: list[tuple[int, int]] = []
    cur_start, cur_end, cur_tokens = -1, -1, 0
    for s, e, n in units:
        if cur_start >= 0 and cur_tokens + n <= budget:
            cur_end, cur_tokens = e, cur_tokens + n
            continue
        if cur_start >= 0:
            windows.append((cur_start, cur_end))
        cur_start, cur_end, cur_tokens = s, e, n
    if cur_start >= 0:
        windows.append((cur_start, cur_end))
    return windows
