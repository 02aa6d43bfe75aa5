"""Test a work rule found on the dev set on works nobody has looked at with it: ``data/confirm``.

The hypothesis (``benchmarks/results/rules.md``, found after the fact on the 82 dev works):
for hurt_comfort, a work's evidence should be its second-best passage logit **minus half the
work's median logit** (an adventure story shows injuries throughout; subtracting its own
level lets a real nursing scene stand out), rather than the shipped chance score.

Protocol, fixed before the confirmation works were judged (2026-12-03, 14:50 UTC):

- Both rules' hurt_comfort thresholds are chosen on the 82 dev works only, by
  ``benchmarks/rules.py``'s rule (the lowest threshold with a false-tag rate of at most 10%
  there), and applied unchanged to the confirmation works.
- Reported on the confirmation works, for each rule: works found of those that show
  hurt_comfort, false tags of those that don't, and the work-level ROC AUC. For reference,
  the shipped model's decisions (``tropeml tag``'s alphas) for every required tag.
- The contrast counts as confirmed only if it finds more of the works that show
  hurt_comfort with no more false tags, and its AUC is higher.

Usage::

    .venv/bin/python benchmarks/confirm.py [--model DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rules import chance, contrast, threshold

from tropeml.io.devset import REQUIRED_TAGS, load_dev_works
from tropeml.model.decision import chance_scores, logits
from tropeml.serve.deveval import Scored, score_items
from tropeml.serve.tagger import Tagger, load

ROOT = Path(__file__).resolve().parents[1]
TAG = "hurt_comfort"


def work_logits(tagger: Tagger, scored: list[Scored]) -> list[NDArray[np.float64]]:
    """Each work's passage logits for the required tags, shape ``(n, 10)`` per work."""
    cols = [list(tagger.tags).index(t) for t in REQUIRED_TAGS]
    return [logits(s.scores)[:, cols] for s in scored]


def main() -> None:
    """Choose both rules' thresholds on data/dev, apply them to data/confirm, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the shipped one)")
    args = parser.parse_args()
    tagger = load(args.model)
    if tagger.null is None:
        raise SystemExit("the model has no background null")
    mu, sigma = (
        np.asarray(v)[[list(tagger.tags).index(t) for t in REQUIRED_TAGS]] for v in tagger.null
    )
    from scipy import stats

    def normal(x: float, j: int) -> float:
        return float(stats.norm.logsf((x - mu[j]) / sigma[j]))

    rules = {
        "shipped (2nd best of n, normal null)": chance(normal, 2),
        "contrast": contrast(2, 0.5),
    }
    dev, fresh = load_dev_works(ROOT / "data" / "dev"), load_dev_works(ROOT / "data" / "confirm")
    scored_new = score_items(tagger, fresh)  # scored once: both rules and the reference
    z_dev, z_new = work_logits(tagger, score_items(tagger, dev)), work_logits(tagger, scored_new)
    j = REQUIRED_TAGS.index(TAG)
    y_dev = np.array([it.judgments[TAG] for it in dev])
    y_new = np.array([it.judgments[TAG] for it in fresh])
    print(
        f"{len(fresh)} confirmation works: {int((y_new == 1).sum())} show {TAG}, "
        f"{int((y_new == 0).sum())} don't, {int((y_new == -1).sum())} unknown\n"
    )
    print(
        f"| {TAG} rule | threshold (chosen on the {len(dev)} dev works) "
        "| works found | false tags | ROC AUC |"
    )
    print("|---|---:|---:|---:|---:|")
    per_work = {}
    for name, rule in rules.items():
        s_dev = np.array([rule(z)[j] for z in z_dev])
        s_new = np.array([rule(z)[j] for z in z_new])
        bar = threshold(s_dev, y_dev, TAG)
        fire = s_new > bar
        known = y_new != -1
        auc = (
            roc_auc_score(y_new[known], s_new[known])
            if len(set(y_new[known])) == 2
            else float("nan")
        )
        per_work[name] = fire
        print(
            f"| {name} | {bar:.2f} "
            f"| {int((fire & (y_new == 1)).sum())} / {int((y_new == 1).sum())} "
            f"| {int((fire & (y_new == 0)).sum())} / {int((y_new == 0).sum())} | {auc:.2f} |"
        )
    print("\n| work | words | shows | " + " | ".join(rules) + " |")
    print("|---|---:|---|" + "---|" * len(rules))
    for i, it in enumerate(fresh):
        marks = " | ".join("fires" if per_work[r][i] else "" for r in rules)
        shown = {1: "yes", 0: "no", -1: "unknown"}[int(y_new[i])]
        print(f"| {it.title} | {len(it.work.text.split())} | {shown} | {marks} |")
    # the shipped model's own decisions on every required tag, for reference
    null_mu, null_sigma = tagger.null
    W = np.array([chance_scores(s.scores, null_mu, null_sigma, tagger.k) for s in scored_new])
    thresholds = np.asarray(tagger.chance_thresholds)
    print(
        "\nThe shipped model as served (its alphas), every required tag: "
        "found / shown, false tags / not shown"
    )
    for t in REQUIRED_TAGS:
        c = list(tagger.tags).index(t)
        y = np.array([it.judgments[t] for it in fresh])
        fire = W[:, c] >= thresholds[c]
        print(
            f"- {t}: {int((fire & (y == 1)).sum())} / {int((y == 1).sum())}, "
            f"{int((fire & (y == 0)).sum())} / {int((y == 0).sum())}"
        )


if __name__ == "__main__":
    main()
