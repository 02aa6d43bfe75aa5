"""The reported work score: how the work calibrator was chosen, and its test on fresh works.

``tropeml.model.workcal`` reports a tag's score as a logistic regression on the work's
evidence. This script scores every judged work of ``data/dev`` and ``data/confirm`` with a
model, builds each judged (work, required tag) pair's evidence features with the product's
own ``evidence_features``, and reports:

1. **Forms, chosen by leaving one confirmation round out at a time**: each form is fitted on
   the dev works and the other confirmation rounds (every round but the one held out, the
   tested one included where ``--through`` says so) and scored on the held-out round; log
   loss and Brier over all held-out pairs, and in how many rounds each beats the score it
   replaced (one intercept and slope on ``d2``, ``decision.CALIBRATION``, chosen on the dev
   works).
2. **The test** (``data/confirm/README.md``, the fifteenth test) and after: on each round
   named by ``--test`` (read after the calibrator was committed) and on them together, the
   shipped calibrator (``workcal.WORK_CALIBRATOR``) against the score it replaced, with a
   paired bootstrap over works, per tag the mean score of the shown tags beside how many
   were right, and what ``--min-score`` keeps.

Usage::

    .venv/bin/python benchmarks/workscore.py [--model DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import ROUNDS
from quality import git

from tropeml.io.devset import REQUIRED_TAGS, load_dev_works
from tropeml.model.decision import CALIBRATION
from tropeml.model.shipped import WORK_CALIBRATOR
from tropeml.model.workcal import C, evidence_features, fit_work_calibrator
from tropeml.serve.deveval import score_items
from tropeml.serve.tagger import load

OUT = Path(__file__).resolve().parent / "results" / "workscore.md"
TEST = ("fifteenth round", "sixteenth round", "seventeenth round")
"""Rounds read after the calibrator was committed: the fifteenth was its test; the sixteenth
(the floor's test) and the seventeenth (a refit's test, failed) were read after it too."""
BOOT = 1000


def pairs(model: str | None) -> dict[str, Any]:
    """Every judged (work, required tag) pair of the dev and confirmation works.

    Returns:
        ``F`` (pairs, 10) evidence features, ``y``, ``tag``, ``work``, ``round`` (``"dev"``
        for dev works) and ``shown`` (the chance rule fired), each of length ``pairs``.
    """
    tagger = load(model)
    assert tagger.null is not None, "the model has no background null"
    mu, sigma = tagger.null
    col = {t: j for j, t in enumerate(tagger.tags)}
    out: dict[str, list[Any]] = {k: [] for k in ("F", "y", "tag", "work", "round", "shown")}
    for folder in ("data/dev", "data/confirm"):
        for s in score_items(tagger, load_dev_works(folder)):
            features = evidence_features(s.scores, mu, sigma, tagger.alpha)
            fired = tagger.fired(s.scores)
            name = "dev"
            if folder != "data/dev":
                name = next(r for r, pre in ROUNDS.items() if s.item.id.startswith(pre))
            for t in REQUIRED_TAGS:
                if s.item.judgments[t] >= 0:
                    j = col[t]
                    for key, value in zip(
                        out,
                        (features[j], s.item.judgments[t], t, s.item.id, name, fired[j]),
                        strict=True,
                    ):
                        out[key].append(value)
    return {k: np.array(v) for k, v in out.items()}


def design(F: NDArray[np.float64], tags: NDArray[np.str_], form: str) -> NDArray[np.float64]:
    """The columns a form regresses on (tag indicators in ``REQUIRED_TAGS`` order)."""
    onehot = (tags[:, None] == np.array(REQUIRED_TAGS)[None]).astype(float)
    return {
        "d2": F[:, 1:2],
        "d2 + tag": np.c_[F[:, 1:2], onehot],
        "d1..d4 + log length + tag": np.c_[F[:, :5], onehot],
        "all (shipped): d1..d4 + log length + z1..z5 + tag": np.c_[F, onehot],
    }[form]


FORMS = (
    "d2",
    "d2 + tag",
    "d1..d4 + log length + tag",
    "all (shipped): d1..d4 + log length + z1..z5 + tag",
)


def old_score(F: NDArray[np.float64]) -> NDArray[np.float64]:
    """The score the calibrator replaced: ``decision.CALIBRATION`` on ``d2``."""
    a, b = CALIBRATION
    return np.asarray(1.0 / (1.0 + np.exp(-(a + b * F[:, 1]))))


def losses(p: NDArray[np.float64], y: NDArray[np.int_]) -> tuple[float, float]:
    """Log loss and Brier score."""
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))), float(np.mean((p - y) ** 2))


def paired(a: NDArray[np.float64], b: NDArray[np.float64], works: NDArray[np.str_]) -> str:
    """Mean of ``a - b`` with a 95% bootstrap CI over works."""
    ids = np.unique(works)
    idx = [np.flatnonzero(works == w) for w in ids]
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(BOOT):
        s = np.concatenate([idx[i] for i in rng.integers(0, len(ids), len(ids))])
        diffs.append(a[s].mean() - b[s].mean())
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return f"{a.mean() - b.mean():+.4f} [{lo:+.4f}, {hi:+.4f}]"


def pointwise(p: NDArray[np.float64], y: NDArray[np.int_]) -> tuple[NDArray[Any], NDArray[Any]]:
    """Per-pair log loss and squared error."""
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return -(y * np.log(q) + (1 - y) * np.log(1 - q)), (p - y) ** 2


def main() -> None:
    """Score the works, compare the forms held out by round, report the test."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the shipped one)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"table to write (default: {OUT})")
    parser.add_argument(
        "--test", nargs="+", default=list(TEST), help=f"rounds read after it (default: {TEST})"
    )
    args = parser.parse_args()
    start = dt.datetime.now(dt.UTC)
    d = pairs(args.model)
    F, y, tag, work, rnd, shown = d["F"], d["y"], d["tag"], d["work"], d["round"], d["shown"]
    before = [r for r in ROUNDS if r not in args.test]
    lines = [
        "# The reported work score: a work-level calibrator (`tropeml.model.workcal`)",
        "",
        f"Run {start:%Y-%m-%d %H:%M} UTC at commit `{git('rev-parse', 'HEAD')}` by "
        f"`benchmarks/workscore.py`: {len(y)} judged (work, required tag) pairs of "
        f"{len(set(work))} works ({int((rnd == 'dev').sum())} dev pairs), base rate "
        f"{y.mean():.3f}. Evidence features as `tropeml.model.workcal.evidence_features` "
        "builds them from the model's passage scores; every form is a scikit-learn "
        f"`LogisticRegression(C={C})` on raw features. The score it replaced: "
        f"`1 / (1 + exp(-({CALIBRATION[0]} + {CALIBRATION[1]} d2)))`, chosen on the dev works.",
        "",
        "## 1. Forms, each confirmation round held out in turn (the tested rounds left out)",
        "",
        f"Fitted on the dev works and the other {len(before) - 1} rounds read before the "
        f"test; scored on the held-out round. {len(before)} rounds, "
        f"{int(np.isin(rnd, before).sum())} held-out pairs.",
        "",
        "| form | log loss | Brier | rounds with lower log loss than the old score |",
        "|---|---:|---:|---:|",
    ]
    held = np.isin(rnd, before)
    ll_old, br_old = losses(old_score(F[held]), y[held])
    lines.append(f"| old score (one intercept and slope on d2) | {ll_old:.4f} | {br_old:.4f} | |")
    for form in FORMS:
        p = np.zeros(len(y))
        for r in before:
            test = rnd == r
            train = ~test & ~np.isin(rnd, args.test)
            model = LogisticRegression(C=C, max_iter=5000)
            model.fit(design(F[train], tag[train], form), y[train])
            p[test] = model.predict_proba(design(F[test], tag[test], form))[:, 1]
        ll, br = losses(p[held], y[held])
        wins = sum(
            losses(p[rnd == r], y[rnd == r])[0] < losses(old_score(F[rnd == r]), y[rnd == r])[0]
            for r in before
        )
        lines.append(f"| {form} | {ll:.4f} | {br:.4f} | {wins} of {len(before)} |")

    fit = ~np.isin(rnd, args.test)
    refit = fit_work_calibrator(F[fit], list(tag[fit]), y[fit])
    gap = max(
        abs(refit.intercept - WORK_CALIBRATOR.intercept),
        *(abs(a - b) for a, b in zip(refit.weights, WORK_CALIBRATOR.weights, strict=True)),
        *(abs(v - WORK_CALIBRATOR.tags[t]) for t, v in refit.tags.items()),
    )
    lines += [
        "",
        f"Fitted on every pair but the tested rounds' ({int(fit.sum())} pairs), "
        "`fit_work_calibrator` gives the shipped `WORK_CALIBRATOR` back: largest difference "
        f"of a coefficient {gap:.1e} (it is stored to 6 decimals).",
    ]
    lines += ["", "## 2. Rounds read after the calibrator was committed", ""]
    for label in [*args.test, " and ".join(args.test)]:
        t = np.isin(rnd, label.split(" and "))
        lines += test_lines(label, t, F, y, tag, work, shown, rule=label == args.test[0])
    lines += ["", f"Runtime {(dt.datetime.now(dt.UTC) - start).total_seconds() / 60:.1f} min."]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def test_lines(
    label: str,
    t: NDArray[np.bool_],
    F: NDArray[np.float64],
    y: NDArray[np.int_],
    tag: NDArray[np.str_],
    work: NDArray[np.str_],
    shown: NDArray[np.bool_],
    rule: bool,
) -> list[str]:
    """The shipped calibrator against the old score on the pairs ``t`` (the ``label`` rounds)."""
    lines = [f"### The {label}", ""]
    if not t.any():
        return [*lines, f"No work of the {label} in `data/confirm`.", ""]
    new = WORK_CALIBRATOR.predict(F[t], list(tag[t]))  # one tag per pair (row)
    old = old_score(F[t])
    yt = y[t]
    (ll_n, br_n), (ll_o, br_o) = losses(new, yt), losses(old, yt)
    (lw_n, bw_n), (lw_o, bw_o) = pointwise(new, yt), pointwise(old, yt)
    verdict = "passed" if ll_n < ll_o and br_n <= br_o else "failed"
    lines += [
        f"{int(t.sum())} pairs of {len(set(work[t]))} works, base rate {yt.mean():.3f}.",
        "",
        "| score | log loss | Brier |",
        "|---|---:|---:|",
        f"| old (one intercept and slope on d2) | {ll_o:.4f} | {br_o:.4f} |",
        f"| calibrator (shipped) | {ll_n:.4f} | {br_n:.4f} |",
        "",
        f"Calibrator minus old, 95% CI over works ({BOOT} resamples): log loss "
        f"{paired(lw_n, lw_o, work[t])}, Brier {paired(bw_n, bw_o, work[t])}."
        + (
            " The test's rule: the calibrator ships if its log loss is lower and its Brier "
            f"not higher: **{verdict}**."
            if rule
            else ""
        ),
        "",
        "Tags the chance rule shows (the same for both; the shipped floor of "
        f"{WORK_CALIBRATOR.floor:g} then hides those the calibrator scores under it): the "
        "mean score each gives them, beside how many were right.",
        "",
        "| tag | shown | right | old score | calibrator |",
        "|---|---:|---:|---:|---:|",
    ]
    st, tt = shown[t], tag[t]
    for name in REQUIRED_TAGS:
        m = st & (tt == name)
        if m.any():
            means = f"{old[m].mean():.2f} | {new[m].mean():.2f}"
            lines.append(f"| {name} | {m.sum()} | {yt[m].sum()} | {means} |")
    lines += ["", "| `--min-score` | old: shown / right / false | calibrator |", "|---|---|---|"]
    for bar in (0.5, 0.7):
        cells = []
        for p in (old, new):
            m = st & (p >= bar)
            cells.append(f"{m.sum()} / {yt[m].sum()} / {(m & (yt == 0)).sum()}")
        lines.append(f"| {bar} | {cells[0]} | {cells[1]} |")
    return [*lines, ""]


if __name__ == "__main__":
    main()
