"""The tags beyond the ten required ones, on works judged for them: each model's decisions.

The taxonomy's other eight tags (grief, on_the_run, apology, protectiveness, cuddling,
phone_call, happy_ending, injury) are judged on some dev and confirmation works
(``data/confirm/README.md``, the eighteenth test). This scores those works with each model
as ``tropeml tag`` serves it and reports, per tag and pooled over the tags, the shown tags
found, the false tags fired (on works judged not to show the tag), precision, recall and
false-tag rate, by kind of work and all together, with 95% bootstrap CIs over works for
each model minus the first.

Usage::

    .venv/bin/python benchmarks/other_tags.py shipped=models/default O=/tmp/o \\
        [--works data/confirm] [--judgments FILE.jsonl ...] [--out FILE]

``--judgments`` reads the other tags' judgments from JSON lines (``{"id": ...,
"judgments": {...}}``) instead of the works' records, and keeps only the works they judge
(for a round waiting in ``data/confirm_next``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fresh import counts, decisions, summary, tag_table
from quality import git

from tropeml.io.devset import REQUIRED_TAGS, DevItem, load_dev_works

OUT = Path(__file__).resolve().parent / "results" / "other_tags.md"
REPS = 2000
VALUE = {"yes": 1, "no": 0, "unknown": -1}


def judged_items(works: str, files: list[Path]) -> list[DevItem]:
    """The works of ``works`` judged for some tag beyond the required ones."""
    items = load_dev_works(works)
    if files:
        extra = {}
        for path in files:
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    extra[row["id"]] = {t: VALUE[v] for t, v in row["judgments"].items()}
        items = [
            DevItem(it.id, it.kind, it.work, it.judgments | extra[it.id], it.title, it.book)
            for it in items
            if it.id in extra
        ]
    return [it for it in items if set(it.judgments) - set(REQUIRED_TAGS)]


def main() -> None:
    """Score the judged works with every model and write the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="NAME=MODEL_DIR, the first is the baseline")
    parser.add_argument("--works", default="data/confirm", help="folder laid out like data/dev")
    parser.add_argument("--judgments", type=Path, nargs="*", default=[])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    models = dict(m.split("=", 1) for m in args.models)
    items = judged_items(args.works, args.judgments)
    tags = list(dict.fromkeys(t for it in items for t in it.judgments if t not in REQUIRED_TAGS))
    Y = np.array([[it.judgments.get(t, -1) for t in tags] for it in items])
    F = {name: decisions(folder, items, tags) for name, folder in models.items()}
    kinds = np.array([it.kind for it in items])
    n, base = len(items), next(iter(F))
    lines = [
        "# Tags beyond the required ten: each model's decisions as `tropeml tag` serves them",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC at commit "
        f"{git('rev-parse', '--short', 'HEAD')} by `benchmarks/other_tags.py` on {n} works of "
        f"`{args.works}` judged for {', '.join(tags)} ({int((kinds == 'written').sum())} "
        f"written for the project, {int((kinds == 'pd').sum())} public-domain)"
        + (
            f", judgments from {', '.join(str(p) for p in args.judgments)}"
            if args.judgments
            else ""
        )
        + ". Models: "
        + "; ".join(f"**{k}** `{v}`" for k, v in models.items())
        + ". Found: shown tags given; false: tags given to works judged not to show them.",
        "",
        *tag_table(tags, F, Y),
    ]
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, n, n) for _ in range(REPS)]
    lines += [
        "",
        f"Pooled over the {len(tags)} tags (95% CI over works for the difference from "
        f"**{base}**, {REPS} resamples):",
        "",
        "| model | works | found | false | precision | recall | false-tag rate |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, f in F.items():
        for group, keep in (
            ("all", kinds != ""),
            ("public-domain", kinds == "pd"),
            ("written", kinds == "written"),
        ):
            idx = np.flatnonzero(keep)
            c = counts(f[idx], Y[idx])
            cell = [f"{v:.3f}" for v in summary(c)]
            if name != base and group == "all":
                diffs = np.array(
                    [
                        np.subtract(summary(counts(f[i], Y[i])), summary(counts(F[base][i], Y[i])))
                        for i in draws
                    ]
                )
                lo, hi = np.nanpercentile(diffs, [2.5, 97.5], axis=0)
                point = np.subtract(summary(c), summary(counts(F[base], Y)))
                cell = [
                    f"{v} ({d:+.3f} [{a:+.3f}, {b:+.3f}])"
                    for v, d, a, b in zip(cell, point, lo, hi, strict=True)
                ]
            lines.append(
                f"| {name} | {group} ({len(idx)}) | {c[0]}/{c[1]} | {c[2]}/{c[3]} | "
                + " | ".join(cell)
                + " |"
            )
    lines.append("")
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
