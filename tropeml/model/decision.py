"""Work-level decisions that hold on long works: a tag's evidence must beat chance.

A work of ``n`` passages has ``n`` chances to show a high passage score by chance, so a fixed
threshold on its best passages fires more often the longer the work. Instead, each tag keeps
the distribution of its passage scores on ordinary prose (the *null*: background text in which
the trope is rare), as a location and a scale of the passage logits (median and MAD, which a
few real trope passages in the background barely move). A work's score for a tag is

    ``P(the k-th best of n null passages scores lower than the work's k-th best)``

with the null passages taken as independent draws from ``N(mu, sigma)`` in logit space: the
chance that a work of the same length without the trope shows weaker evidence. The tag fires
when that score reaches ``1 - alpha``, so on works without the trope it fires at a rate of
about ``alpha`` whatever their length (less where passages of one work are alike).

That chance is not the probability that the work shows the trope (on the dev works, pairs
scored over 0.9 showed the tag about half the time), so what a reader sees is a probability:
in current models the work calibrator of :mod:`tropeml.model.workcal`; in older ones
:func:`work_probability`, a logistic function of how many decades the chance lies beyond the
tag's alpha, calibrated on the dev works (:data:`CALIBRATION`). It is monotone in the chance
and equals the same value for every tag at its alpha, so the decisions do not change.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike, NDArray

_EPS = 1e-6

DEFAULT_ALPHA = 0.02
"""Nominal false-tag rate on trope-free works, for tags not in :data:`ALPHA`."""
ALPHA: dict[str, float] = {
    "hurt_comfort": 0.03,
    "fake_death": 0.0003,
    "reunion": 0.02,
    "soulmates": 5e-10,
    "mates": 1e-18,
    "alpha_beta_omega": 1.5e-28,
    "angst": 0.01,
    "fluff": 0.03,
    "first_kiss": 0.0001,
    "love_confession": 0.0007,
    "grief": 0.002,
    "on_the_run": 0.03,
    "apology": 0.0002,
    "protectiveness": 0.0005,
    "cuddling": 1e-08,
    "phone_call": 2e-13,
    "happy_ending": 0.01,
    "injury": 0.002,
}
"""Per-tag alpha, chosen on the dev works by ``tropeml tune`` (:mod:`tropeml.serve.tuning`;
``benchmarks/alpha.py`` adds the held-out cost): the largest of its grid
(0.5, 0.3, 0.2, 0.15, 0.1, 0.07, 0.05, ... 1.5e-60, 1e-60) whose false-tag rate there meets
the target (5% for the AU tags, 10% for the rest; counted on the kinds of work that show
the tag, so the AU tags' on the works written for the project, since public-domain prose
never shows them; pooled and on each kind with enough trope-free works), then moved a
quarter of the way (in ``-log10`` alpha) towards the weakest dev work it finds with the
tag, keeping the same works found, so that the threshold does not sit on the last trope-free
work it lets through. Real works are less independent than the null assumes, so the rates
observed are higher than alpha; ``benchmarks/alpha.py`` chooses on one half of the dev works
and measures on the other to estimate what choosing costs (benchmarks/results/alpha.md). A
model trained on other data or with another encoder gets these as defaults until ``tropeml
tune`` chooses its own. The eight tags after love_confession were chosen by the same rule
with ``tropeml tune --tag``, on the 212 dev and confirmation works judged for them (the
twentieth test, ``data/confirm/README.md``)."""
CALIBRATION: tuple[float, float] = (-0.1924, 0.8007)
"""``(intercept, slope)`` of :func:`work_probability`, chosen on the dev works by
``tropeml tune`` (checked in ``benchmarks/calibration.py``): a logistic regression of
whether a work shows a tag on :func:`beyond`, pooled over the required tags (two numbers,
so it cannot learn one work)."""
CLIP = 20.0
"""Decades beyond alpha past which :func:`beyond` stops counting."""
EVIDENCE_RANK = 2
"""Which best passage is a work's evidence: the second best (chosen on the dev set: recall
0.55 against 0.48 for the best, at median 4 tags per work, alpha 0.05)."""


def logits(probabilities: ArrayLike) -> NDArray[np.float64]:
    """Logits of passage probabilities (clipped to ``[1e-6, 1 - 1e-6]``), same shape."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), _EPS, 1 - _EPS)
    return np.asarray(np.log(p) - np.log1p(-p))


def fit_null(probabilities: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Location and scale of each tag's passage logits on null text.

    Args:
        probabilities: Passage probabilities on background prose, shape ``(N, T)``.

    Returns:
        ``(mu, sigma)``, each shape ``(T,)``: the median and ``1.4826 * MAD`` of the logits
        (at least 0.05).
    """
    z = logits(probabilities)
    mu = np.median(z, axis=0)
    sigma = 1.4826 * np.median(np.abs(z - mu), axis=0)
    return np.asarray(mu), np.asarray(np.maximum(sigma, 0.05))


def _log_cdf(x: float) -> float:
    """``log Phi(x)`` for the standard normal, accurate in both tails."""
    if x < -30:  # erfc underflows further out: the asymptotic series of the Mills ratio
        t = 1 / (x * x)
        return -x * x / 2 - math.log(-x) - 0.5 * math.log(2 * math.pi) + math.log1p(-t + 3 * t * t)
    if x < -5:
        return math.log(0.5 * math.erfc(-x / math.sqrt(2)))
    return math.log1p(-0.5 * math.erfc(x / math.sqrt(2)))


def _log_pmf(n: int, j: int, log_q: float, log_p: float) -> float:
    """``log P(Binomial(n, q) = j)`` given ``log q`` and ``log(1 - q)``."""
    comb = math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1)
    return comb + j * log_q + (n - j) * log_p


def _log_tail(n: int, k: int, log_q: float) -> float:
    """``log P(Binomial(n, q) >= k)``, accurate however small it is.

    Args:
        n: Trials (passages), at least ``k``.
        k: The least count, at least 1.
        log_q: ``log q``, the chance one trial succeeds (a null passage beats the evidence).
    """
    q = math.exp(log_q)
    if q >= 1.0:
        return 0.0
    log_p = math.log1p(-q)
    if n * q >= k:  # the tail is not small: one minus the head
        head = math.fsum(math.exp(_log_pmf(n, j, log_q, log_p)) for j in range(k))
        return math.log1p(-min(head, 1.0)) if head < 1.0 else -math.inf
    # mean below k: the terms fall at least geometrically from the first; sum them in logs
    terms = [_log_pmf(n, k, log_q, log_p)]
    for j in range(k + 1, n + 1):
        terms.append(terms[-1] + math.log((n - j + 1) / j) + log_q - log_p)
        if terms[-1] < terms[0] - 40:
            break
    top = max(terms)
    return top + math.log(math.fsum(math.exp(t - top) for t in terms))


def log_chance(
    probabilities: ArrayLike,
    mu: ArrayLike,
    sigma: ArrayLike,
    k: int = 1,
) -> NDArray[np.float64]:
    """How likely a trope-free work of the same length shows evidence at least this strong.

    The ``k``-th best of ``n`` null passages beats the work's ``k``-th best when at least
    ``k`` of them do, each with chance ``q``: a binomial tail, kept in logs so that strong
    evidence (chances far below ``1e-16``) stays ordered and exact.

    Args:
        probabilities: The work's passage probabilities, shape ``(n, T)``.
        mu: Null location per tag, shape ``(T,)``.
        sigma: Null scale per tag, shape ``(T,)``.
        k: Which best passage is the evidence (works of fewer passages use their worst).

    Returns:
        Natural logs of the chances, shape ``(T,)``, each ``<= 0``; zeros if ``n == 0``.
    """
    z = logits(probabilities)
    n, T = z.shape if z.ndim == 2 else (0, len(np.atleast_1d(mu)))
    if n == 0:
        return np.zeros(T)
    k = max(1, min(k, n))
    best = -np.sort(-z, axis=0)[k - 1]
    m, s = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    return np.array([_log_tail(n, k, _log_cdf(-float((best[j] - m[j]) / s[j]))) for j in range(T)])


def chance_scores(
    probabilities: ArrayLike,
    mu: ArrayLike,
    sigma: ArrayLike,
    k: int = 1,
) -> NDArray[np.float64]:
    """Work scores: how surely each tag's evidence beats a trope-free work of the same length.

    One minus :func:`log_chance`'s chance: ``P(the k-th best of n null passages scores lower
    than the work's k-th best)``.

    Args:
        probabilities: The work's passage probabilities, shape ``(n, T)``.
        mu: Null location per tag, shape ``(T,)``.
        sigma: Null scale per tag, shape ``(T,)``.
        k: Which best passage is the evidence: 1 (the best) or 2 (the second best, so one
            stray passage never tags a work; works of one passage use their only one).

    Returns:
        Shape ``(T,)`` in ``[0, 1]``; zeros if ``n == 0``.
    """
    if not len(np.asarray(probabilities)):
        return np.zeros(len(np.atleast_1d(mu)))
    return np.asarray(np.clip(-np.expm1(log_chance(probabilities, mu, sigma, k)), 0.0, 1.0))


def fires(
    probabilities: ArrayLike, mu: ArrayLike, sigma: ArrayLike, alpha: ArrayLike, k: int = 1
) -> NDArray[np.bool_]:
    """Which tags a work gets: its evidence beats chance at each tag's alpha.

    Args:
        probabilities: The work's passage probabilities, shape ``(n, T)``.
        mu: Null location per tag, shape ``(T,)``.
        sigma: Null scale per tag, shape ``(T,)``.
        alpha: Per-tag alpha, shape ``(T,)``.
        k: Evidence rank, as for :func:`log_chance`.

    Returns:
        Shape ``(T,)``; all false for an empty work.
    """
    if not len(np.asarray(probabilities)):
        return np.zeros(len(np.atleast_1d(mu)), dtype=bool)
    return np.asarray(log_chance(probabilities, mu, sigma, k) <= np.log(alpha))


def beyond(log_chances: ArrayLike, alpha: ArrayLike) -> NDArray[np.float64]:
    """Decades by which each chance lies beyond its tag's alpha: ``log10(alpha / chance)``.

    Positive where the tag fires. Clipped to ``[-CLIP, CLIP]`` (the probability is flat
    there). Shapes broadcast: ``(T,)`` or ``(N, T)``.
    """
    d = (np.log(np.asarray(alpha, dtype=np.float64)) - np.asarray(log_chances)) / math.log(10)
    return np.asarray(np.clip(d, -CLIP, CLIP))


def work_probability(
    log_chances: ArrayLike, alpha: ArrayLike, calibration: tuple[float, float] | None = None
) -> NDArray[np.float64]:
    """The reported work score: how likely the work shows each tag, given its evidence.

    ``1 / (1 + exp(-(a + b * d)))`` with ``d`` from :func:`beyond` and ``(a, b)`` the
    calibration (default :data:`CALIBRATION`). At a tag's alpha (``d = 0``) every tag has the
    same probability, ``1 / (1 + exp(-a))``: the work threshold.

    Args:
        log_chances: From :func:`log_chance`, shape ``(T,)`` or ``(N, T)``.
        alpha: Per-tag alpha, broadcast against ``log_chances``.
        calibration: ``(intercept, slope)``; the slope must be positive.
    """
    a, b = CALIBRATION if calibration is None else calibration
    return np.asarray(1.0 / (1.0 + np.exp(-(a + b * beyond(log_chances, alpha)))))


def evidence_bars(
    n: int,
    mu: ArrayLike,
    sigma: ArrayLike,
    alpha: ArrayLike,
    k: int = 1,
) -> NDArray[np.float64]:
    """The logit a work's evidence must reach for each tag to fire.

    The inverse of :func:`log_chance` in the evidence passage's logit, found in logs so
    that alphas far below ``1e-16`` (the AU tags') keep finite bars.

    Args:
        n: Passages in the work.
        mu: Null location per tag, shape ``(T,)``.
        sigma: Null scale per tag, shape ``(T,)``.
        alpha: The chance each tag fires at, shape ``(T,)``.
        k: Evidence rank, as for :func:`log_chance`.

    Returns:
        Shape ``(T,)``: the ``k``-th best passage logit at which the work's chance falls
        to the tag's alpha (``inf`` where no logit does, ``-inf`` for an empty work).
    """
    m, s = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    log_alpha = np.log(np.asarray(alpha, dtype=np.float64))
    if n <= 0:
        return np.full(len(m), -np.inf)
    k = max(1, min(k, n))
    out = np.empty(len(m))
    for j, target in enumerate(log_alpha):
        if target >= 0.0:
            out[j] = -np.inf
            continue
        lo, hi = -745.0, 0.0  # log q, the chance one null passage beats the bar
        if _log_tail(n, k, lo) > target:
            out[j] = np.inf
            continue
        for _ in range(80):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if _log_tail(n, k, mid) <= target else (lo, mid)
        out[j] = m[j] - s[j] * NormalDist().inv_cdf(max(math.exp(lo), 1e-300))
    return out
