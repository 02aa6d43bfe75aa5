"""Name masking: names found in the work itself, replaced by stand-ins."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from tropeml.text.masking import STAND_INS, find_names, mask, masker


def _alternation(text: str, names: dict[str, str]) -> str:
    """The reference: one regular expression of every name (how masking was first written)."""
    if not names:
        return text
    pattern = re.compile(r"(?<![\w'’])(" + "|".join(map(re.escape, names)) + r")(?![a-z])")
    return pattern.sub(lambda m: names[m.group(1)], text)


def test_names_are_capitalised_mid_sentence_and_never_lower_case() -> None:
    text = (
        "Derek ran. Then Derek stopped, and Stiles caught up with Derek. "
        "The Alpha howled; the alpha was old. Rain fell. The rain was cold."
    )
    names = find_names(text)
    assert list(names) == ["Derek", "Stiles"]
    assert names["Derek"] == STAND_INS[0]


def test_mask_replaces_names_and_possessives() -> None:
    names = {"Derek": "Alex", "Ann": "Sam"}
    text = "Derek's jacket. Ann’s hand. Anna and Annabel stayed; DEREK shouted at Derek2."
    assert mask(text, names) == (
        "Alex's jacket. Sam’s hand. Anna and Annabel stayed; DEREK shouted at Alex2."
    )


_NAMES = ["Jo", "Jo'an", "Ann", "Anna", "Derek", "Mc", "Li", "Ro’sa"]  # as find_names finds them
_PIECES = [
    *_NAMES,
    "Jo'anna",
    "Derek's",
    "Ann’s",
    "McDonald",
    "O'Brien",
    "D'arcy",
    "Annabel",
    "the",
    "alpha",
    "'",
    "’",
    "s",
    "x",
    "2",
    "_",
    " ",
    ".",
    "\n",
    "é",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(_PIECES), max_size=25).map("".join),
    st.lists(st.sampled_from(_NAMES), unique=True, max_size=6),
)
def test_masker_equals_the_alternation_of_names(text: str, chosen: list[str]) -> None:
    names = {name: STAND_INS[i] for i, name in enumerate(chosen)}
    assert masker(names)(text) == _alternation(text, names)


def test_masker_without_names_is_the_identity() -> None:
    assert masker({})("Derek ran.") == "Derek ran."
