"""Where the dev-set numbers are stuck: the head's settings, the encoder, the work rule.

Three diagnostics on the real-prose dev set (``data/dev``), all from one run:

1. **Head settings.** ``TropeClassifier`` fitted on the training rows with other settings (C,
   view weights, the public-domain rows repeated): core and all-8 passage AP, and the
   work-level *oracle recall* (below).
2. **An in-domain probe.** Logistic regression on the dev passages' own embeddings, one book
   held out at a time: what ~200 in-domain labels buy with these vectors.
3. **Work rules.** For the shipped model's passage scores, the oracle recall of several work
   scores: the chance rule with the 1st, 2nd or 3rd best passage, and the raw k-th best logit.

*Oracle recall*: per required tag, the best recall any single threshold on the work score
reaches while the tag's false-tag rate on the dev works stays within the issue's target
(5% for the AU tags, 10% for the rest), pooled over tags. It is chosen on the works it is
measured on, so it is an upper bound for a rule, not a result.

Usage::

    .venv/bin/python benchmarks/ceiling.py

Writes ``benchmarks/results/ceiling.md`` (about 10 minutes on 2 cores, embeddings cached).
"""

from __future__ import annotations

import datetime as dt
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # the shared data loading of the quality benchmark

from tropeml.io.devset import REQUIRED_TAGS
from tropeml.model.classifier import TropeClassifier
from tropeml.model.decision import chance_scores, fit_null, logits
from tropeml.serve.targets import target

OUT = Path(__file__).resolve().parent / "results" / "ceiling.md"
CORE = ("hurt_comfort", "fake_death", "reunion", "soulmates")
PD_TAGS = tuple(t for t in REQUIRED_TAGS if t not in ("mates", "alpha_beta_omega"))
SETTINGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("shipped (C=1, view weights learned per tag)", {}),
    ("fixed view weights 0.5/1/1 (the previous default)", {"stack_C": None}),
    ("C=0.3", {"C": 0.3}),
    ("C=3", {"C": 3.0}),
    ("fixed weights, embedding 1", {"stack_C": None, "embedding_weight": 1.0}),
    ("fixed weights, embedding 1.5", {"stack_C": None, "embedding_weight": 1.5}),
    ("fixed weights, lexical 0.5", {"stack_C": None, "lexical_weight": 0.5}),
    ("fixed weights, prototype 0.5", {"stack_C": None, "prototype_weight": 0.5}),
    ("fixed weights, prototype 2", {"stack_C": None, "prototype_weight": 2.0}),
    ("public-domain rows x3", {"repeat_pd": 3}),
    ("public-domain rows x6", {"repeat_pd": 6}),
)

Array = NDArray[np.float64]


def oracle_recall(W: Array, J: dict[str, NDArray[np.int_]], col: dict[str, int]) -> float:
    """Pooled best recall at the false-tag targets, one threshold per tag (``W``: works x T)."""
    found = shown = 0
    for tag in REQUIRED_TAGS:
        y, s = J[tag], W[:, col[tag]]
        ok = y != -1
        y, s = y[ok], s[ok]
        best = 0
        for th in np.unique(s):
            fire = s >= th
            if (fire & (y == 0)).sum() <= target(tag) * max(1, (y == 0).sum()):
                best = max(best, int((fire & (y == 1)).sum()))
        found, shown = found + best, shown + int((y == 1).sum())
    return found / shown


def passage_aps(best: Array, items: list[Any], col: dict[str, int]) -> dict[str, float]:
    """AP per public-domain tag of each passage's best chunk score."""
    out = {}
    for tag in PD_TAGS:
        y = np.array([it.judgments[tag] for it in items])
        ok = y != -1
        out[tag] = float(average_precision_score(y[ok], best[ok, col[tag]]))
    return out


def work_scores(
    P: Array, owner: NDArray[np.intp], n: int, score: Callable[[Array], Array]
) -> Array:
    """One work score vector per dev work from its passages' probabilities."""
    return np.array([score(P[owner == i]) for i in range(n)])


def main() -> None:
    """Run the three diagnostics and write the table."""
    warnings.filterwarnings("ignore")
    data = quality.load_data(False)
    quality.load_works(data, False)
    col = {t: j for j, t in enumerate(data.tags)}
    items, works = data.passages.items, data.works.items
    J = {t: np.array([w.judgments[t] for w in works]) for t in REQUIRED_TAGS}
    groups = np.asarray(data.groups)
    pd_rows = np.array([str(g).startswith(("exemplar:pd", "exemplar:pdt")) for g in groups])
    lines = [
        "# Where the dev-set numbers are stuck",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC at commit "
        + quality.git("rev-parse", "--short", "HEAD")
        + f" by `benchmarks/ceiling.py` ({len(groups)} training rows, {int(pd_rows.sum())} of "
        f"them public-domain; {len(items)} dev passages, {len(works)} dev works). Oracle "
        "recall: per tag, the best recall one threshold reaches within the false-tag target "
        "on the dev works, pooled (an upper bound, chosen where it is measured).",
        "",
        "## 1. Head settings (the same rows; chance rule, second-best passage)",
        "",
        "| setting | core AP | all-8 AP | oracle recall |",
        "|---|---:|---:|---:|",
    ]
    shipped_P: Array | None = None
    for name, kw in SETTINGS:
        kw = dict(kw)
        repeat = int(kw.pop("repeat_pd", 1))
        idx = np.concatenate([np.arange(len(groups))] + [np.flatnonzero(pd_rows)] * (repeat - 1))
        clf = TropeClassifier(tags=data.tags, prototypes=data.prototypes, **kw).fit(
            data.train.X[idx], data.Y[idx], groups=groups[idx],
            texts=[data.train.texts[i] for i in idx],
        )  # fmt: skip
        P = np.asarray(clf.predict_proba(data.passages.rows.X, data.passages.rows.texts))
        aps = passage_aps(quality.best_per_item(P, data.passages.owner, len(items)), items, col)
        Pw = np.asarray(clf.predict_proba(data.works.rows.X, data.works.rows.texts))
        Pb = np.asarray(clf.predict_proba(data.background.X, data.background.texts))
        mu, sigma = fit_null(Pb)
        W = work_scores(
            Pw,
            data.works.owner,
            len(works),
            lambda S, mu=mu, sigma=sigma: chance_scores(S, mu, sigma, 2),
        )
        core, all8 = np.mean([aps[t] for t in CORE]), np.mean(list(aps.values()))
        lines.append(f"| {name} | {core:.3f} | {all8:.3f} | {oracle_recall(W, J, col):.2f} |")
        print(lines[-1], flush=True)
        if shipped_P is None:
            shipped_P, null = Pw, (mu, sigma)

    lines += [
        "",
        "## 2. In-domain probe: logistic regression on the dev passages' embeddings",
        "",
        "Mean embedding of each passage's windows; balanced logistic regression; one book held "
        "out at a time (leave-one-book-out), AP over the pooled held-out scores.",
        "",
        "| C | " + " | ".join(PD_TAGS) + " | core mean |",
        "|---|" + "---:|" * (len(PD_TAGS) + 1),
    ]
    owner = data.passages.owner
    X = np.array([data.passages.rows.X[owner == i].mean(0) for i in range(len(items))])
    books = np.array([it.title for it in items])
    for C in (0.1, 1.0):
        aps = {}
        for tag in PD_TAGS:
            y = np.array([it.judgments[tag] for it in items])
            ok = y != -1
            s = np.zeros(len(y))
            for book in set(books[ok]):
                test, train = ok & (books == book), ok & (books != book)
                if y[train].sum() == 0:
                    continue
                lr = LogisticRegression(C=C, class_weight="balanced", max_iter=2000)
                s[test] = lr.fit(X[train], y[train]).decision_function(X[test])
            aps[tag] = float(average_precision_score(y[ok], s[ok]))
        core = np.mean([aps[t] for t in CORE])
        lines.append(
            f"| {C} | " + " | ".join(f"{aps[t]:.2f}" for t in PD_TAGS) + f" | {core:.3f} |"
        )
        print(lines[-1], flush=True)

    assert shipped_P is not None
    mu, sigma = null
    lines += [
        "",
        "## 3. Work rules on the shipped settings' passage scores",
        "",
        "| work score | oracle recall |",
        "|---|---:|",
    ]
    for k in (1, 2, 3):
        for name, fn in (
            (f"chance rule, passage {k}", lambda S, k=k: chance_scores(S, mu, sigma, k)),
            (
                f"raw logit of passage {k}",
                lambda S, k=k: -np.sort(-logits(S), 0)[min(k, len(S)) - 1],
            ),
        ):
            W = work_scores(shipped_P, data.works.owner, len(works), fn)
            lines.append(f"| {name} | {oracle_recall(W, J, col):.2f} |")
            print(lines[-1], flush=True)
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
