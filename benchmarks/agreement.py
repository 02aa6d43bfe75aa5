"""How often two careful readers agree, on fresh works and dev passages, and what it says.

**Fresh works.**
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

**Dev passages.** Three more judges, who never saw the first judgments, read the 228 dev
passages alone (the first judge read them with their books) and judged the eight passage
tags ``yes``, ``no`` or ``context`` (only the rest of the book could settle it;
``data/dev/second_judge_passages.jsonl``). Per tag: agreement and kappa where both said yes
or no, how many of the first judge's positives the passage alone shows, and the model's AP
against each judge and on the passages where they agree: how much of the distance to a
perfect AP is the labels' and the passage's, not the ranking's.

A later second judge read every work of the twenty-sixth and twenty-seventh rounds for the
three tags those rounds' tests decided on (fake_death, reunion, happy_ending;
``data/confirm/second_judge_b.jsonl``); ``--second`` and ``--tags`` report such a file the
same way (the passage section only with the default file).

Usage::

    .venv/bin/python benchmarks/agreement.py [--out FILE]
    .venv/bin/python benchmarks/agreement.py --second data/confirm/second_judge_b.jsonl \
        --tags fake_death reunion happy_ending --out benchmarks/results/agreement_b.md

Writes ``benchmarks/results/agreement.md`` by default (the passage section once its file is in).
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

from tropeml.io.devset import load_dev_passages, load_dev_works
from tropeml.serve.deveval import score_items
from tropeml.serve.tagger import Tagger, load

ROOT = Path(__file__).resolve().parents[1]
SECOND = ROOT / "data" / "confirm" / "second_judge.jsonl"
SECOND_PASSAGES = ROOT / "data" / "dev" / "second_judge_passages.jsonl"
PASSAGE_TAGS = (
    "hurt_comfort",
    "fake_death",
    "reunion",
    "soulmates",
    "angst",
    "fluff",
    "first_kiss",
    "love_confession",
)
CORE = ("hurt_comfort", "fake_death", "reunion", "soulmates")
OUT = Path(__file__).resolve().parent / "results" / "agreement.md"
TAGS = ("hurt_comfort", "reunion", "fake_death", "first_kiss", "fluff")
VALUE = {"yes": 1, "no": 0, "unknown": -1, "context": -1}


def kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two 0/1 judgments of the same items."""
    observed = float((a == b).mean())
    chance = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
    return (observed - chance) / (1 - chance) if chance < 1 else float("nan")


def _ap(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision of scores ``s`` for 0/1 labels ``y`` (nan without both classes)."""
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, s)) if 0 < y.sum() < len(y) else float("nan")


def passage_lines(tagger: Tagger) -> list[str]:
    """The dev-passage section: two judges, and the model's AP against each."""
    second = {
        r["id"]: {t: VALUE[r["judgments"][t]] for t in PASSAGE_TAGS}
        for r in map(json.loads, SECOND_PASSAGES.read_text(encoding="utf-8").splitlines())
    }
    items = [it for it in load_dev_passages(ROOT / "data" / "dev") if it.id in second]
    col = {t: j for j, t in enumerate(tagger.tags)}
    best = {s.item.id: s.scores.max(axis=0) for s in score_items(tagger, items)}
    lines = [
        "## Dev passages: a second reading, of the passage alone",
        "",
        f"{len(items)} dev passages re-read by judges who saw neither the first judgments nor "
        "the books (`data/dev/second_judge_passages.jsonl`): `context` where only the rest "
        "of the book could settle a tag. AP: the shipped model's best-window score, against "
        "the first judge (every passage judged yes/no), the second (yes/no only) and on the "
        "passages where both judged and agree.",
        "",
        "| tag | both judged | agree | kappa | first's positives: second yes / context / no "
        "| AP vs first | AP vs second | AP where they agree |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    core = {"first": [], "second": [], "agree": []}
    for t in PASSAGE_TAGS:
        first = np.array([it.judgments[t] for it in items])
        other = np.array([second[it.id][t] for it in items])
        score = np.array([best[it.id][col[t]] for it in items])
        both = (first >= 0) & (other >= 0)
        agree = both & (first == other)
        pos = first == 1
        aps = {
            "first": _ap(first[first >= 0], score[first >= 0]),
            "second": _ap(other[other >= 0], score[other >= 0]),
            "agree": _ap(first[agree], score[agree]),
        }
        if t in CORE:
            for k, v in aps.items():
                core[k].append(v)
        a, b = first[both], other[both]
        lines.append(
            f"| `{t}` | {int(both.sum())} | {float((a == b).mean()):.2f} | {kappa(a, b):.2f} "
            f"| {int((other[pos] == 1).sum())} / {int((other[pos] == -1).sum())} / "
            f"{int((other[pos] == 0).sum())} of {int(pos.sum())} "
            f"| {aps['first']:.2f} | {aps['second']:.2f} | {aps['agree']:.2f} |"
        )
    lines += [
        f"| **core mean** | | | | | {np.mean(core['first']):.3f} | {np.mean(core['second']):.3f} "
        f"| {np.mean(core['agree']):.3f} |",
        "",
    ]
    return lines


def main() -> None:
    """Compare the two judges, and the model's tags against each, on the re-read works."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--second", type=Path, default=SECOND, help="a second judge's file")
    parser.add_argument("--tags", nargs="+", default=list(TAGS), help="the tags it judged")
    parser.add_argument("--which", help="how the re-read works were chosen (for the report)")
    args = parser.parse_args()
    tags = tuple(args.tags)
    second = {
        r["id"]: {t: VALUE[r["judgments"][t]] for t in tags}
        for r in map(json.loads, args.second.read_text(encoding="utf-8").splitlines())
    }
    confirm = load_dev_works(ROOT / "data" / "confirm", required=None)
    items = [it for it in confirm if it.id in second]
    tagger = load(None)
    fired = {s.item.id: {t: t in s.fired for t in tags} for s in score_items(tagger, items)}
    default = args.second.resolve() == SECOND.resolve()
    which = args.which or (
        "18 are every fresh work the shipped model (6254927) tags hurt_comfort or reunion "
        "against the first judgment, 6 are random, so these are mostly the hard works"
        if default
        else "every work of the rounds it covers"
    )
    lines = [
        "# Two judges, on the fresh works" + (" and on the dev passages" if default else ""),
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC at commit "
        f"{git('rev-parse', '--short', 'HEAD')} by `benchmarks/agreement.py`: {len(items)} "
        "fresh works re-read by a second judge who never saw the first judgments "
        f"(`{args.second.resolve().relative_to(ROOT)}`); {which}. Pairs: works both judges "
        "call `yes` or `no`. The model: the shipped one at this commit.",
        "",
        "| tag | pairs | agree | kappa | first yes / second yes | model's false tags (by the "
        "first judge) the second calls yes | model's tags both call no |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in tags:
        first = np.array([it.judgments.get(t, -1) for it in items])
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
    if default and SECOND_PASSAGES.is_file():
        lines += passage_lines(tagger)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
