"""The rule that chooses the shipped alphas (benchmarks/alpha.py's ``choose``)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def alpha() -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module("alpha")
    finally:
        sys.path.remove(str(BENCHMARKS))


def ev(scores: list[float] | np.ndarray) -> np.ndarray:
    """Work scores (one minus the chance) as decades of evidence, what ``choose`` reads."""
    return np.asarray(-np.log10(np.clip(1 - np.asarray(scores), 1e-300, 1.0)))


def found(alpha_mod: ModuleType, s: np.ndarray, y: np.ndarray, a: float) -> tuple[int, int]:
    tp, _, fp, _ = alpha_mod.rates(s, y, a)
    return tp, fp


def test_margin_zero_is_the_edge(alpha: ModuleType) -> None:
    # 20 trope-free works: one at 1 - 0.04 may fire (5%), the next at 1 - 0.2 may not
    s = ev([1 - 0.04, 1 - 0.2] + [0.1] * 18 + [1 - 1e-6, 1 - 0.01])
    y = np.array([0] * 20 + [1, 1])
    edge = alpha.choose(s, y, "mates", margin=0.0)
    assert edge == 0.15  # the loosest grid alpha that lets through one negative, not two
    assert found(alpha, s, y, edge) == (2, 1)


def test_the_margin_moves_into_the_gap_and_keeps_what_the_edge_finds(alpha: ModuleType) -> None:
    s = ev([1 - 0.04, 1 - 0.2] + [0.1] * 18 + [1 - 1e-6, 1 - 1e-5])
    y = np.array([0] * 20 + [1, 1])
    edge = alpha.choose(s, y, "mates", margin=0.0)
    chosen = alpha.choose(s, y, "mates", margin=0.25)
    assert chosen < edge
    # a quarter of the way from 0.15 (-log10 0.82) to 1e-5 (5): about 10**-1.9
    assert chosen == 0.015
    tp, fp = found(alpha, s, y, chosen)
    assert tp == 2 and fp == 0  # the negative at 1 - 0.04 no longer fires


def test_no_gap_means_the_edge(alpha: ModuleType) -> None:
    s = ev([1 - 0.2] * 10 + [1 - 0.3])
    y = np.array([0] * 10 + [1])
    assert alpha.choose(s, y, "angst", margin=0.25) == alpha.choose(s, y, "angst", margin=0.0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0), min_size=2, max_size=40),
    st.lists(st.integers(-1, 1), min_size=2, max_size=40),
    st.floats(0.0, 0.9),
)
def test_the_margin_never_loses_a_work_or_adds_a_false_tag(
    alpha: ModuleType, scores: list[float], labels: list[int], margin: float
) -> None:
    n = min(len(scores), len(labels))
    s, y = ev(scores[:n]), np.array(labels[:n])
    edge = alpha.choose(s, y, "hurt_comfort", margin=0.0)
    chosen = alpha.choose(s, y, "hurt_comfort", margin=margin)
    assert chosen <= edge and chosen in alpha.GRID
    tp_edge, fp_edge = found(alpha, s, y, edge)
    tp, fp = found(alpha, s, y, chosen)
    assert tp == tp_edge
    assert fp <= fp_edge
