"""How often two careful readers agree on the fresh works, and what that says of the model.

A second judge, who never saw the first judgments, read 24 fresh works of
``data/confirm`` (``data/confirm/second_judge.jsonl``) and judged five tags whose boundaries
are matters of reading: hurt_comfort, reunion, fake_death, first_kiss and fluff. 18 of the 24
are every fresh work the shipped model (6254927) tags hurt_comfort or reunion against the
first judgment; 6 are drawn at random from the rest (seed 7). The selection is known to this
script only through the file, and reported as such: agreement on these works is agreement on
the hard ones.

This reports, per tag: pairs both judged (``yes`` / ``no``), raw agreement and Cohen's kappa;
and, for the model's tags that the first judge calls false, how many the second judge calls
``yes``.

Usage::

    .venv/bin/python benchmarks/agreement.py [--out FILE]

Writes ``benchmarks/results/agreement.md`` by default.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import git

from tropeml.io.devset import load_dev_works
from tropeml.serve.deveval import score_items
from tropeml.serve.tagger import load

ROOT = Path(__file__).resolve().parents[1]
SECOND = ROOT / "data" / "confirm" / "second_judge.jsonl"
OUT = Path(__file__).resolve().parent / "results" / "agreement.md"
TAGS = ("hurt_comfort", "reunion", "fake_death", "first_kiss", "fluff")
VALUE = {"yes": 1, "no": 0, "unknown": -1}


def kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two 0/1 judgments of the same items."""
    observed = float((a == b).mean())
    chance = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
    return (observed - chance) / (1 - chance) if chance < 1 else float("nan")


def main() -> None:
    """Compare the two judges, and the model's tags against each, on the re-read works."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    second = {
        r["id"]: {t: VALUE[r["judgments"][t]] for t in TAGS}
        for r in map(json.loads, SECOND.read_text(encoding="utf-8").splitlines())
    }
    items = [it for it in load_dev_works(ROOT / "data" / "confirm") if it.id in second]
    tagger = load(None)
    fired = {}
    for s in score_items(tagger, items):
        w = tagger.work_scores(s.scores) >= tagger.work_thresholds
        fired[s.item.id] = {t: bool(w[tagger.tags.index(t)]) for t in TAGS}
    lines = [
        "# Two judges on the fresh works",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC at commit "
        f"{git('rev-parse', '--short', 'HEAD')} by `benchmarks/agreement.py`: {len(items)} "
        "fresh works re-read by a second judge who never saw the first judgments "
        "(`data/confirm/second_judge.jsonl`); 18 are every fresh work the shipped model tags "
        "hurt_comfort or reunion against the first judgment, 6 are random, so these are "
        "mostly the hard works. Pairs: works both judges call `yes` or `no`.",
        "",
        "| tag | pairs | agree | kappa | first yes / second yes | model's false tags (by the "
        "first judge) the second calls yes | model's tags both call no |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in TAGS:
        first = np.array([it.judgments[t] for it in items])
        other = np.array([second[it.id][t] for it in items])
        model = np.array([fired[it.id][t] for it in items])
        both = (first >= 0) & (other >= 0)
        a, b = first[both], other[both]
        false = model & (first == 0)
        lines.append(
            f"| `{t}` | {int(both.sum())} | {float((a == b).mean()):.2f} | {kappa(a, b):.2f} "
            f"| {int(a.sum())} / {int(b.sum())} | {int((other[false] == 1).sum())} of "
            f"{int(false.sum())} ({int((other[false] == -1).sum())} unknown) "
            f"| {int((model & (first == 0) & (other == 0)).sum())} |"
        )
    lines.append("")
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
