"""Work-level decisions against a null: length-aware, near the aimed false-tag rate."""

from __future__ import annotations

import math
from typing import overload

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from tropeml.model.decision import (
    CALIBRATION,
    _log_cdf,
    _log_tail,
    beyond,
    chance_scores,
    evidence_bars,
    fit_null,
    log_chance,
    logits,
    work_probability,
)


@overload
def _sigmoid(z: float) -> np.float64: ...
@overload
def _sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]: ...
def _sigmoid(z: float | NDArray[np.float64]) -> np.float64 | NDArray[np.float64]:
    return 1 / (1 + np.exp(-z))


def test_fit_null_is_robust_to_a_few_real_trope_passages() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(-3.0, 1.0, size=(5000, 2))
    z[:50, 0] = 6.0  # 1% of the background shows the trope
    mu, sigma = fit_null(_sigmoid(z))
    assert np.allclose(mu, [-3.0, -3.0], atol=0.1)
    assert np.allclose(sigma, [1.0, 1.0], atol=0.1)


def test_the_same_best_passage_counts_for_less_in_a_longer_work() -> None:
    mu, sigma = np.array([-3.0]), np.array([1.0])
    best = _sigmoid(np.array([0.0]))
    short = np.full((5, 1), _sigmoid(-5.0))
    long = np.full((500, 1), _sigmoid(-5.0))
    short[0], long[0] = best, best
    assert chance_scores(short, mu, sigma)[0] > chance_scores(long, mu, sigma)[0]


# derandomized: the rate scatters about 0.05 with a spread near 0.015 (seeds and lengths),
# so a random search of 20 examples a run meets a 0.10 now and then (n=79, seed=81)
@settings(max_examples=20, deadline=None, derandomize=True)
@given(n=st.integers(1, 400), seed=st.integers(0, 2**16))
def test_trope_free_works_fire_near_alpha_whatever_their_length(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    mu, sigma = np.array([-2.0]), np.array([1.5])
    works = _sigmoid(rng.normal(-2.0, 1.5, size=(400, n, 1)))
    fired = np.mean([chance_scores(w, mu, sigma)[0] >= 0.95 for w in works])
    assert fired < 0.05 + 0.05  # 400 works: well inside sampling noise of 5%


def test_second_best_evidence_ignores_one_stray_passage() -> None:
    mu, sigma = np.array([-3.0]), np.array([1.0])
    work = np.full((100, 1), _sigmoid(-3.0))
    work[7] = _sigmoid(8.0)  # one stray, very confident passage
    assert chance_scores(work, mu, sigma, k=1)[0] > 0.99
    assert chance_scores(work, mu, sigma, k=2)[0] < 0.95
    work[8] = _sigmoid(8.0)  # a second scene: now it is evidence
    assert chance_scores(work, mu, sigma, k=2)[0] > 0.99


def test_empty_work_and_logit_clipping() -> None:
    assert chance_scores(np.zeros((0, 3)), np.zeros(3), np.ones(3)).tolist() == [0, 0, 0]
    assert np.isfinite(logits(np.array([0.0, 1.0]))).all()


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 800),
    k=st.sampled_from([1, 2]),
    log10_alpha=st.floats(-40, -0.31),
    mu=st.floats(-6, 0),
    sigma=st.floats(0.1, 0.5),  # bars stay inside the logits the scores clip to
)
def test_evidence_bars_invert_the_chance_even_far_below_1e16(
    n: int, k: int, log10_alpha: float, mu: float, sigma: float
) -> None:
    alpha = 10.0**log10_alpha
    bar = evidence_bars(n, [mu], [sigma], [alpha], k)[0]
    assert np.isfinite(bar)
    z = np.full((n, 1), -40.0)

    def fires(at: float) -> bool:
        z[: min(k, n)] = at
        return bool(log_chance(_sigmoid(z), [mu], [sigma], k)[0] <= np.log(alpha))

    assert fires(bar + 1e-4)
    assert not fires(bar - 1e-2)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 400),
    k=st.integers(1, 3),
    log_q=st.floats(-60.0, 0.0, exclude_max=True),
)
def test_the_binomial_tail_is_exact_however_small(n: int, k: int, log_q: float) -> None:
    k = min(k, n)
    q = math.exp(log_q)
    exact = math.fsum(math.comb(n, j) * q**j * (1 - q) ** (n - j) for j in range(k, n + 1))
    got = _log_tail(n, k, log_q)
    if exact > 1e-300:
        assert math.exp(got) == np.float64(exact) or abs(math.exp(got) / exact - 1) < 1e-9
    else:  # beyond float's range the sum underflows; the log does not
        assert got < math.log(1e-290) and math.isfinite(got)


def test_log_cdf_is_continuous_and_finite_far_out() -> None:
    for x in (-5.0, -30.0):
        assert abs(_log_cdf(x - 1e-9) - _log_cdf(x + 1e-9)) < 1e-6
    assert math.isfinite(_log_cdf(-200.0)) and _log_cdf(-200.0) < _log_cdf(-100.0)


def test_log_chance_orders_evidence_far_beyond_float_precision() -> None:
    mu, sigma = np.array([-3.0]), np.array([0.5])
    strong, stronger = np.full((50, 1), _sigmoid(-3.0)), np.full((50, 1), _sigmoid(-3.0))
    strong[:2], stronger[:2] = _sigmoid(9.0), _sigmoid(11.0)
    assert chance_scores(strong, mu, sigma, 2)[0] == chance_scores(stronger, mu, sigma, 2)[0] == 1
    assert log_chance(stronger, mu, sigma, 2)[0] < log_chance(strong, mu, sigma, 2)[0] < -100
    assert log_chance(np.zeros((0, 1)), mu, sigma, 2).tolist() == [0.0]


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 300), k=st.sampled_from([1, 2]))
def test_the_probability_decides_as_the_chance_score_does(seed: int, n: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    mu, sigma = np.array([-3.0, -2.0, -4.0]), np.array([1.0, 0.5, 2.0])
    alpha = np.array([0.05, 1e-9, 0.2])
    work = _sigmoid(rng.normal(-2.0, 2.5, size=(n, 3)))
    fired = chance_scores(work, mu, sigma, k) >= 1 - alpha
    p = work_probability(log_chance(work, mu, sigma, k), alpha)
    at = work_probability(np.log(alpha), alpha)
    assert np.allclose(at, 1 / (1 + math.exp(-CALIBRATION[0])))  # one threshold for every tag
    close = np.abs(beyond(log_chance(work, mu, sigma, k), alpha)) < 1e-9  # on the edge: either
    assert ((p >= at) == fired)[~close].all()
    assert ((p > 0) & (p < 1)).all()


def test_work_probability_rises_with_the_evidence_and_stops_at_the_clip() -> None:
    alpha = np.array([0.01])
    lc = np.log(np.array([[0.5], [0.01], [1e-5], [1e-40], [1e-300]]))
    p = work_probability(lc, alpha, (0.0, 1.0))[:, 0]
    assert np.all(np.diff(p) >= 0) and p[1] == 0.5
    assert p[-1] == p[-2]  # both beyond the clip (20 decades)
