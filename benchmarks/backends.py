"""Does the fast (int8 ONNX) backend tag as well as torch? Per-tag average precision.

Run from the repository root with the project's virtual environment::

    .venv/bin/python benchmarks/backends.py [--out PATH]

The training set ``tropeml train`` builds from ``data/`` and ``seeds/`` is embedded with both
backends (through the embedding cache). Then, leaving one labelled seed fic out at a time
(the ``tropeml eval`` works protocol), the classifier is trained on **torch** embeddings and
the held-out passages are scored twice: embedded with torch, and embedded with the fast
backend, as when a model trained on torch embeddings (like ``models/default``) tags on the
fast backend. The same is done with the classifier trained and tested on fast embeddings
(what ``tropeml eval --backend fast`` measures). Per-tag AP is over the pooled out-of-fold
passage scores; the issue's bar is |ΔAP| ≤ 0.01 per tag. Writes
``benchmarks/results/backends.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.metrics import average_precision_score

from tropeml.classifier import UNKNOWN, TropeClassifier
from tropeml.encoders import load_encoder
from tropeml.training import SEED, prepare

ROOT = Path(__file__).resolve().parent.parent


def out_of_fold(train: Any, test: Any, clf: TropeClassifier, mask: Any, groups: Any) -> Any:
    """Scores of ``test.X`` rows by models fitted on ``train.X``, one seed fic held out."""
    Y = np.asarray(train.training_set.Y, dtype=np.int8)
    scores = np.full(Y.shape, np.nan)
    for work in dict.fromkeys(groups[mask]):
        held = groups == work
        model = clone(clf).fit(train.X[~held], Y[~held], groups=groups[~held])
        scores[mask & held] = model.predict_proba(test.X[mask & held])
    return scores


def per_tag_ap(Y: Any, scores: Any, mask: Any, tags: list[str]) -> dict[str, tuple[float, int]]:
    out = {}
    for j, tag in enumerate(tags):
        known = mask & (Y[:, j] != UNKNOWN)
        y = Y[known, j] == 1
        if y.sum() >= 1 and (~y).sum() >= 1:
            out[tag] = (float(average_precision_score(y, scores[known, j])), int(y.sum()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/backends.md")
    args = parser.parse_args()
    torch_ = prepare(ROOT / "data", ROOT, load_encoder(None, backend="torch"))
    fast = prepare(ROOT / "data", ROOT, load_encoder(None, backend="fast"))
    ts = torch_.training_set
    assert fast.training_set.chunks == ts.chunks  # same passages: same tokenizer and budget
    Y = np.asarray(ts.Y, dtype=np.int8)
    groups = np.asarray(ts.groups)
    mask = np.array([k == SEED for k in ts.kinds])
    tags = list(ts.tags)
    clf_t = TropeClassifier(tags=tags, prototypes=torch_.prototypes)
    clf_f = TropeClassifier(tags=tags, prototypes=fast.prototypes)
    pairs = {
        "torch → torch": (torch_, torch_, clf_t),
        "torch → fast": (torch_, fast, clf_t),
        "fast → fast": (fast, fast, clf_f),
    }
    runs = {
        name: per_tag_ap(Y, out_of_fold(a, b, clf, mask, groups), mask, tags)
        for name, (a, b, clf) in pairs.items()
    }
    base = runs["torch → torch"]
    lines = [
        "# Backends: per-tag average precision, torch against fast (int8 ONNX)",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `benchmarks/backends.py`: "
        f"leave one seed fic out ({len(set(groups[mask]))} folds, {int(mask.sum())} test "
        f"passages, {len(ts)} training rows). 'A → B': classifier trained on A embeddings, "
        "test passages embedded with B. AP over pooled out-of-fold passage scores, for tags "
        "with at least one positive and one negative test passage.",
        "",
        "| tag | positives | AP torch → torch | AP torch → fast | Δ | AP fast → fast | Δ |",
        "|---|---|---|---|---|---|---|",
    ]
    deltas: dict[str, list[float]] = {"torch → fast": [], "fast → fast": []}
    for tag, (ap, pos) in base.items():
        cells = [tag, str(pos), f"{ap:.4f}"]
        for run in ("torch → fast", "fast → fast"):
            other = runs[run][tag][0]
            deltas[run].append(other - ap)
            cells += [f"{other:.4f}", f"{other - ap:+.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for run, ds in deltas.items():
        worst = max(ds, key=abs)
        lines.append(
            f"- {run}: largest |ΔAP| {abs(worst):.4f}; mean ΔAP {np.mean(ds):+.4f}; "
            f"{sum(abs(d) <= 0.01 for d in ds)}/{len(ds)} tags within 0.01"
        )
    lines.append("")
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
