"""Compare work rules (how passage scores become a work's evidence) on one captured model.

The shipped rule (``tropeml.model.decision``) takes a tag's second-best passage logit and asks
how surely it beats the same rank among ``n`` independent draws from a normal null fitted on
background prose. This script asks whether another rule would find more of the tags the dev
works show at the same false-tag rates: other ranks, a weaker or no length term, a heavier
(exponential) null tail, the mean of the best passages, and a within-work contrast.

Each rule gives every (work, tag) a number, higher meaning more evidence. A tag's threshold is
chosen on the dev works by ``benchmarks/alpha.py``'s rule with a continuous grid: the lowest
threshold whose false-tag rate meets the target (5% for the AU tags, 10% for the rest). For
each rule the script reports pooled recall in-sample, held out (chosen on one half of the
works, measured on the other, 100 splits, as ``alpha.py``), the held-out false-tag rates, and
each tag's work-level ROC AUC. Last, a paired out-of-bootstrap comparison with the shipped
rule: thresholds chosen on a bootstrap sample of the works, recall measured on the works left
out, 300 resamples, the same ones for every rule.

Nothing is fitted on the dev works; the null is the captured model's background prose.

``--evidence TAG...`` adds a diagnosis of the shipped rule's misses: for each public-domain
dev work that shows the tag and is not found, the passages that contain a quotation from the
judge's recorded evidence, with their logit and rank within the work, beside the second-best
logits of the trope-free works. A missed work whose judged scene ranks among its own best
passages is lost to calibration across works, not to finding the scene.

Usage::

    .venv/bin/python benchmarks/variants.py capture data /tmp/v/base   # once, ~10 min
    .venv/bin/python benchmarks/rules.py /tmp/v/base.rows.pkl
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats
from scipy.special import gammaln
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alpha import SPLITS

from tropeml.io.devset import REQUIRED_TAGS, load_dev_works
from tropeml.model.decision import fit_null, logits
from tropeml.serve.targets import target

Rule = Callable[[NDArray[np.float64]], NDArray[np.float64]]
BOOTSTRAPS = 300


def log_tail(log_g: float, n: int, k: int) -> float:
    """``log P(at least k of n null passages exceed x)``, where ``log_g = log P(one does)``."""
    if log_g < -27.6:  # G < 1e-12: the binomial tail's leading term
        return float(gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1) + k * log_g)
    return float(stats.binom.logsf(k - 1, n, math.exp(log_g)))


def chance(log_sf: Callable[[float, int], float], k: int, gamma: float = 1.0) -> Rule:
    """``-log`` of the chance a null work of ``n**gamma`` passages shows a higher ``k``-th best."""

    def rule(z: NDArray[np.float64]) -> NDArray[np.float64]:
        kk = max(1, min(k, len(z)))
        n = max(kk, round(len(z) ** gamma))
        best = -np.sort(-z, axis=0)[kk - 1]
        return np.array([-log_tail(log_sf(float(x), j), n, kk) for j, x in enumerate(best)])

    return rule


def normal_sf(background: NDArray[np.float64]) -> Callable[[float, int], float]:
    """The shipped null: a normal with the background's median and ``1.4826 * MAD`` per tag."""
    mu, sigma = fit_null(1 / (1 + np.exp(-background)))
    return lambda x, j: float(stats.norm.logsf((x - mu[j]) / sigma[j]))


def exponential_sf(background: NDArray[np.float64], q: float) -> Callable[[float, int], float]:
    """The background's own distribution, with an exponential tail above its ``1 - q`` quantile."""
    u = np.quantile(background, 1 - q, axis=0)
    beta = np.array([np.mean(c[c > t] - t) for c, t in zip(background.T, u, strict=True)])
    ranked = np.sort(background, axis=0)

    def log_sf(x: float, j: int) -> float:
        if x > u[j]:
            return math.log(q) - (x - u[j]) / beta[j]
        above = len(ranked) - np.searchsorted(ranked[:, j], x, side="left")
        return math.log(max(int(above), 1) / len(ranked))

    return log_sf


def kth(k: int) -> Rule:
    """The ``k``-th best passage logit, with no length term."""
    return lambda z: -np.sort(-z, axis=0)[max(1, min(k, len(z))) - 1]


def top_mean(k: int) -> Rule:
    """The mean logit of the ``k`` best passages, with no length term."""
    return lambda z: (-np.sort(-z, axis=0)[: max(1, min(k, len(z)))]).mean(axis=0)


def contrast(k: int, weight: float) -> Rule:
    """The ``k``-th best logit minus ``weight`` times the work's median logit."""
    return lambda z: kth(k)(z) - weight * np.median(z, axis=0)


def for_tags(tags: tuple[str, ...], rule: Rule, otherwise: Rule) -> Rule:
    """``rule`` for ``tags``, ``otherwise`` for the other required tags."""
    cols = [REQUIRED_TAGS.index(t) for t in tags]

    def mixed(z: NDArray[np.float64]) -> NDArray[np.float64]:
        out = otherwise(z)
        out[cols] = rule(z)[cols]
        return out

    return mixed


def rules(background: NDArray[np.float64]) -> dict[str, Rule]:
    """The rules compared, the shipped one first."""
    normal = normal_sf(background)
    return {
        "shipped: normal null, 2nd best of n": chance(normal, 2),
        "normal null, best of n": chance(normal, 1),
        "normal null, 3rd best of n": chance(normal, 3),
        "normal null, 2nd best of sqrt(n)": chance(normal, 2, 0.5),
        "normal null, 3rd best of sqrt(n)": chance(normal, 3, 0.5),
        "exponential tail (top 10%), 2nd best of n": chance(exponential_sf(background, 0.1), 2),
        "exponential tail (top 10%), 3rd best of n": chance(exponential_sf(background, 0.1), 3),
        "2nd best logit, no length term": kth(2),
        "mean of the 3 best logits, no length term": top_mean(3),
        "2nd best minus half the work's median": contrast(2, 0.5),
        "2nd best minus the work's median": contrast(2, 1.0),
        "post hoc: hurt_comfort alone gets 2nd best minus half the median": for_tags(
            ("hurt_comfort",), contrast(2, 0.5), chance(normal, 2)
        ),
    }


def threshold(s: NDArray[np.float64], y: NDArray[np.int_], tag: str) -> float:
    """The lowest threshold (a tag fires above it) whose false-tag rate meets the target."""
    neg = np.sort(s[y == 0])[::-1]
    allowed = math.floor(target(tag) * len(neg) + 1e-9)
    return float(neg[allowed]) if allowed < len(neg) else -math.inf


def found(S: NDArray[np.float64], Y: dict[str, NDArray[np.int_]], fit: Any, on: Any) -> NDArray:
    """Per tag ``(true positives, positives, false positives, negatives)`` on works ``on``."""
    out = []
    for j, t in enumerate(REQUIRED_TAGS):
        s, y = S[:, j], Y[t]
        fire = s[on] > threshold(s[fit], y[fit], t)
        out.append(
            (
                (fire & (y[on] == 1)).sum(),
                (y[on] == 1).sum(),
                (fire & (y[on] == 0)).sum(),
                (y[on] == 0).sum(),
            )
        )
    return np.array(out)


def measure(S: NDArray[np.float64], Y: dict[str, NDArray[np.int_]]) -> str:
    """One table row: recall in-sample and held out, works found, held-out FTR, work AUC."""
    every = np.arange(len(S))
    inside = found(S, Y, every, every)
    rng = np.random.default_rng(0)
    held = np.zeros_like(inside)
    for _ in range(SPLITS):
        p = rng.permutation(len(S))
        a, b = p[: len(S) // 2], p[len(S) // 2 :]
        held += found(S, Y, a, b) + found(S, Y, b, a)
    aucs = []
    for j, t in enumerate(REQUIRED_TAGS):
        known = Y[t] != -1
        aucs.append(roc_auc_score(Y[t][known], S[known, j]))
    rec_in, rec_out = inside[:, 0].sum() / inside[:, 1].sum(), held[:, 0].sum() / held[:, 1].sum()
    return (
        f"{rec_in:.2f} | {rec_out:.2f} "
        f"| {' '.join(f'{tp}/{pos}' for tp, pos, _, _ in inside)} "
        f"| {' '.join(f'{fp / max(neg, 1):.2f}' for _, _, fp, neg in held)} "
        f"| {' '.join(f'{x:.2f}' for x in aucs)} |"
    )


def bootstrap(all_scores: list[NDArray[np.float64]], Y: dict[str, NDArray[np.int_]]) -> NDArray:
    """Out-of-bootstrap pooled recall, shape ``(rules, BOOTSTRAPS)``, the same resamples."""
    rng = np.random.default_rng(1)
    n = len(all_scores[0])
    out = np.zeros((len(all_scores), BOOTSTRAPS))
    for b in range(BOOTSTRAPS):
        fit = rng.integers(0, n, n)
        on = np.setdiff1d(np.arange(n), fit)
        for r, S in enumerate(all_scores):
            f = found(S, Y, fit, on)
            out[r, b] = f[:, 0].sum() / f[:, 1].sum()
    return out


def evidence(
    tag: str,
    works: list[NDArray[np.float64]],
    texts: list[list[str]],
    S: NDArray[np.float64],
    Y: dict[str, NDArray[np.int_]],
    ids: list[str],
) -> None:
    """Print where the judged scene of each missed public-domain work ranks (see the header)."""
    root = Path(__file__).resolve().parents[1] / "data" / "dev" / "works"
    quoted = {}
    for path in sorted(root.glob("pd*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            quoted[record["id"]] = re.findall(
                r'["“]([^"”]{15,})["”]', record["evidence"].get(tag, "")
            )
    j = REQUIRED_TAGS.index(tag)
    y, bar = Y[tag], threshold(S[:, j], Y[tag], tag)
    second = [np.sort(z[:, j])[-2] for z, label in zip(works, y, strict=True) if label == 0]
    print(
        f"\n{tag}: second-best logit of the trope-free works: median {np.median(second):.2f}, "
        f"90th percentile {np.quantile(second, 0.9):.2f}"
    )
    near = located = 0
    for i, wid in enumerate(ids):
        if y[i] != 1 or wid not in quoted or S[i, j] > bar:
            continue
        z = works[i][:, j]
        flat = [" ".join(t.split()) for t in texts[i]]
        keys = [" ".join(q.split())[:25] for q in quoted[wid]]
        hits = sorted(
            {k for k, t in enumerate(flat) if any(key in t for key in keys)}, key=lambda k: -z[k]
        )
        ranks = [int((z > z[k]).sum()) + 1 for k in hits]
        located += bool(hits)
        near += bool(hits) and min(ranks) <= 3
        found = ", ".join(f"logit {z[k]:.2f} rank {r}" for k, r in zip(hits, ranks, strict=True))
        print(f"  missed {wid} ({len(z)} passages): {found or 'no quotation located'}")
    print(f"  {near} of {located} located misses have the judged scene among their 3 best passages")


def main() -> None:
    """Score the captured model's dev works with every rule and print the tables."""
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture", help="a benchmarks/variants.py capture (*.rows.pkl)")
    parser.add_argument("--evidence", nargs="*", default=[], help="tags to diagnose misses for")
    args = parser.parse_args()
    import tropeml

    with open(args.capture, "rb") as fh:
        rows = pickle.load(fh)
    model = tropeml.load(args.capture.removesuffix(".rows.pkl")).classifier
    cols = [list(rows["tags"]).index(t) for t in REQUIRED_TAGS]
    background = logits(model.predict_proba(rows["BX"], rows["Btexts"]))[:, cols]
    works = [logits(model.predict_proba(X, texts))[:, cols] for X, texts in rows["dev_w"]]
    Y = {t: np.asarray(rows["dev_w_J"][t]) for t in REQUIRED_TAGS}
    print(f"{len(works)} dev works, {len(background)} background passages; tags in order:")
    print(" ".join(REQUIRED_TAGS), "\n")
    print(
        "| rule | recall in-sample | held out | works found | held-out false-tag rate "
        "| work ROC AUC |"
    )
    print("|---|---:|---:|---|---|---|")
    scored = {}
    for name, rule in rules(background).items():
        scored[name] = np.array([rule(z) for z in works])
        print(f"| {name} | {measure(scored[name], Y)}", flush=True)
    ids = [item.id for item in load_dev_works()]
    first = next(iter(scored.values()))
    for tag in args.evidence:
        evidence(tag, works, [list(t) for _, t in rows["dev_w"]], first, Y, ids)
    boot = bootstrap(list(scored.values()), Y)
    print(f"\n| rule | out-of-bootstrap recall | minus shipped [95% CI], {BOOTSTRAPS} resamples |")
    print("|---|---:|---|")
    for name, r in zip(scored, boot, strict=True):
        d = r - boot[0]
        print(
            f"| {name} | {r.mean():.3f} | {d.mean():+.3f} "
            f"[{np.quantile(d, 0.025):+.3f}, {np.quantile(d, 0.975):+.3f}] |"
        )


if __name__ == "__main__":
    main()
