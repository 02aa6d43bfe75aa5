"""Replace character and place names with neutral stand-ins before embedding.

A model should learn what happens, not who it happens to: if every fake death in the
training data happens to "Derek", an unmasked model learns that "Derek" means fake death.
Names are found from the whole work's own text, with no name list: a capitalised word is a
name when it occurs capitalised in the middle of a sentence and never in lower case (so
"Alpha"/"alpha" is not a name, "Derek" is). Each distinct name gets a stand-in from a fixed
list of short, common, gender-neutral names, the most frequent name first, so the same work
always masks the same way.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable

from tropeml.core.types import Work

STAND_INS = (
    "Alex", "Sam", "Jordan", "Robin", "Casey", "Morgan", "Riley", "Quinn", "Avery", "Jamie",
    "Taylor", "Drew", "Charlie", "Rowan", "Blair", "Kai", "Reese", "Sky", "Ash", "Jules",
)  # fmt: skip
"""Stand-ins, given to names in order of frequency (the rest cycle through the list)."""

_NOT_NAMES = frozenset(
    """I I'm I'd I'll I've Mr Mrs Ms Miss Dr Sir Lady Lord Mom Mum Dad Mother Father God
    Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April
    May June July August September October November December Christmas OK Okay TV
    Alpha Alphas Beta Betas Omega Omegas Mate Mates Pack Heat Rut Sheriff Captain Doctor
    Prince Princess King Queen Emperor General Commander Detective Agent Officer Professor
    Master Lieutenant Sergeant Major Colonel Father Sister Brother Aunt Uncle Grandma""".split()
)
_WORD = re.compile(r"(?<![\w'’])[A-Z][a-z]+(?:['’][a-z]+)?(?![\w'’])")
_LOWER = re.compile(r"\b[a-z]+\b")
_SENTENCE_START = re.compile(r"(?:^|[.!?…]\s*|[\"“‘(\[—–-]\s*|\n\s*)$")


def find_names(text: str) -> dict[str, str]:
    """Find the names in a work and assign each a stand-in.

    Args:
        text: The work's text (the more text, the better the guess).

    Returns:
        Mapping from each name to its stand-in.
    """
    lower = set(_LOWER.findall(text))
    mid_sentence: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for m in _WORD.finditer(text):
        word = _base(m.group())
        total[word] += 1
        if not _starts_sentence(text[max(0, m.start() - 3) : m.start()]):
            mid_sentence[word] += 1
    names = [
        w
        for w, _ in total.most_common()
        if mid_sentence[w] and w.lower() not in lower and w not in _NOT_NAMES
    ]
    return {name: STAND_INS[i % len(STAND_INS)] for i, name in enumerate(names)}


def _base(word: str) -> str:
    return word[:-2] if word.endswith(("'s", "’s")) else word


@functools.lru_cache(maxsize=4096)
def _starts_sentence(before: str) -> bool:
    """Whether a word preceded by ``before`` (up to 3 characters) starts a sentence."""
    return _SENTENCE_START.search(before) is not None


_CANDIDATE = re.compile(r"(?<![\w'’])([A-Z][a-z]+)(['’][a-z]+)?")
"""Where a name can start: a capitalised word, with an optional apostrophe part."""


def masker(names: dict[str, str]) -> Callable[[str], str]:
    r"""Return a function that masks ``names`` in a text (build it once per work).

    It gives what one regular expression of every name would (``(?<![\w'’])(N1|N2|...)``
    followed by no lower-case letter, the earlier name winning a tie) without building
    and running that alternation over each passage: each capitalised word is looked up.
    """
    if not names:
        return lambda text: text
    rank = {name: i for i, name in enumerate(names)}

    def replace(m: re.Match[str]) -> str:
        base, tail = m.group(1), m.group(2)
        whole = base + tail if tail else None
        if whole is not None and whole in names:
            if base in names and rank[base] < rank[whole]:
                return names[base] + tail
            return names[whole]
        if base in names:
            return names[base] + (tail or "")
        return m.group(0)

    return lambda text: _CANDIDATE.sub(replace, text)


def mask(text: str, names: dict[str, str]) -> str:
    """Replace every occurrence of each name (and its possessive) by its stand-in.

    To mask many passages of one work, build :func:`masker` once instead.
    """
    return masker(names)(text)


def work_names(work: Work) -> dict[str, str]:
    """Find the names in a work's story text (headers left out); see :func:`find_names`."""
    return find_names("\n\n".join(work.text[r.start : r.end] for r in work.story_regions()))
