from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tropeml.model.rollup import evidence_order, pool_scores, prominence

SCORES = np.array([[0.1, 0.9], [0.5, 0.2], [0.3, 0.4]])


def test_pool_scores_top_k_mean() -> None:
    assert pool_scores(SCORES, top_k=2) == pytest.approx([0.4, 0.65])
    assert pool_scores(SCORES) == pytest.approx([0.4, 0.65])  # default top_k=2


def test_pool_scores_top_1_is_max() -> None:
    assert pool_scores(SCORES, top_k=1) == pytest.approx([0.5, 0.9])
    assert pool_scores(SCORES, top_k=0) == pytest.approx([0.5, 0.9])  # at least one passage


def test_pool_scores_short_work_averages_all() -> None:
    assert pool_scores(SCORES, top_k=10) == pytest.approx(SCORES.mean(axis=0))
    assert pool_scores([[0.7, 0.1]], top_k=3) == pytest.approx([0.7, 0.1])


def test_pool_scores_one_stray_passage_is_damped() -> None:
    scores = np.array([[0.95], [0.05], [0.05], [0.05]])
    assert pool_scores(scores, top_k=2)[0] == pytest.approx(0.5)


def test_pool_scores_empty() -> None:
    out = pool_scores(np.zeros((0, 3)))
    assert out.shape == (3,)
    assert not out.any()


@settings(max_examples=100, deadline=None)
@given(
    scores=arrays(
        np.float64,
        st.tuples(st.integers(1, 12), st.integers(1, 4)),
        elements=st.floats(0, 1),
    ),
    top_k=st.integers(1, 5),
)
def test_pool_scores_between_min_and_max(scores: np.ndarray, top_k: int) -> None:
    pooled = pool_scores(scores, top_k)
    assert pooled.shape == (scores.shape[1],)
    assert np.all(pooled <= scores.max(axis=0) + 1e-12)
    assert np.all(pooled >= scores.min(axis=0) - 1e-12)
    assert np.all(pool_scores(scores, top_k + 1) <= pooled + 1e-12)  # more passages: lower


def test_prominence_weighted_by_length() -> None:
    scores = np.array([[0.9, 0.1], [0.1, 0.1], [0.8, 0.6]])
    out = prominence(scores, [0.5, 0.5], [100, 300, 100])
    assert out == pytest.approx([200 / 500, 100 / 500])


def test_prominence_long_passage_weighs_more() -> None:
    scores = np.array([[0.9], [0.1]])
    assert prominence(scores, [0.5], [900, 100])[0] == pytest.approx(0.9)
    assert prominence(scores, [0.5], [100, 900])[0] == pytest.approx(0.1)


def test_prominence_threshold_is_inclusive_and_per_tag() -> None:
    scores = np.array([[0.5, 0.5]])
    assert prominence(scores, [0.5, 0.6], [10]) == pytest.approx([1.0, 0.0])


def test_prominence_empty_or_zero_length() -> None:
    assert prominence(np.zeros((0, 2)), [0.5, 0.5], []).tolist() == [0.0, 0.0]
    assert prominence(np.ones((2, 2)), [0.5, 0.5], [0, 0]).tolist() == [0.0, 0.0]


def test_evidence_order_best_first_over_threshold() -> None:
    scores = [0.2, 0.9, 0.6, 0.9, 0.1]
    assert evidence_order(scores, 0.5) == [1, 3, 2]
    assert evidence_order(scores, 0.5, limit=2) == [1, 3]
    assert evidence_order(scores, 0.7) == [1, 3]
    assert evidence_order(scores, 0.6) == [1, 3, 2]  # threshold inclusive


def test_evidence_order_falls_back_to_best_passage() -> None:
    assert evidence_order([0.2, 0.3, 0.1], 0.9) == [1]


def test_evidence_order_empty() -> None:
    assert evidence_order([], 0.5) == []
