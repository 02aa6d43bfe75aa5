"""Models' decisions, as ``tropeml tag`` serves them, compared on fresh works round by round.

A test stated before its works were judged (``data/confirm/README.md``) names candidate
models, each a model folder with its own alphas and calibration (``tropeml tune``), and the
rounds of fresh works it is judged on. This reports each model's decisions on those works:
per tag the shown tags it finds and the false tags it fires, then pooled over the seven
tags public-domain prose can show and over the three AU tags (soulmates, mates, A/B/O,
counted on the written works only: public-domain prose cannot show them), with 95%
bootstrap CIs over works for each model minus the first.

Usage::

    .venv/bin/python benchmarks/fresh.py NAME=MODEL_DIR [NAME=MODEL_DIR ...] \\
        [--rounds "fifth round"] [--works data/confirm] [--out FILE]

Writes ``benchmarks/results/fresh.md`` by default.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import ROUNDS
from quality import git

from tropeml.io.devset import REQUIRED_TAGS, DevItem, load_dev_works
from tropeml.serve.deveval import score_items
from tropeml.serve.tagger import load
from tropeml.serve.targets import AU_TAGS

OUT = Path(__file__).resolve().parent / "results" / "fresh.md"
SEVEN = tuple(t for t in REQUIRED_TAGS if t not in AU_TAGS)
REPS = 2000


def decisions(
    folder: str, items: list[DevItem], tags: Sequence[str] = REQUIRED_TAGS
) -> NDArray[np.bool_]:
    """Which of ``tags`` the model in ``folder`` gives each work, shape ``(works, tags)``."""
    scored = score_items(load(folder), items)
    return np.array([[t in s.fired for t in tags] for s in scored])


def counts(F: NDArray[np.bool_], Y: NDArray[np.int_]) -> NDArray[np.int_]:
    """(found, shown, false, trope-free) summed over the columns of ``F`` and ``Y``."""
    return np.array([(F & (Y == 1)).sum(), (Y == 1).sum(), (F & (Y == 0)).sum(), (Y == 0).sum()])


def tag_table(
    tags: Sequence[str], F: dict[str, NDArray[np.bool_]], Y: NDArray[np.int_]
) -> list[str]:
    """Markdown rows: per tag, each model's ``found/shown | false/trope-free``.

    Args:
        tags: The tags, one per column of ``Y`` and of each model's decisions.
        F: Each model's decisions, shape ``(works, tags)``.
        Y: Judgments, shape ``(works, tags)``.
    """
    lines = [
        "| tag | " + " | ".join(f"{k} found | {k} false" for k in F) + " |",
        "|---|" + "---:|---:|" * len(F),
    ]
    for j, t in enumerate(tags):
        cells = ["{}/{} | {}/{}".format(*counts(f[:, [j]], Y[:, [j]])) for f in F.values()]
        lines.append(f"| `{t}` | " + " | ".join(cells) + " |")
    return lines


def summary(c: NDArray[np.int_]) -> tuple[float, float, float]:
    """(precision, recall, false-tag rate) of :func:`counts`."""
    fired = c[0] + c[2]
    return (
        c[0] / fired if fired else float("nan"),
        c[0] / c[1] if c[1] else float("nan"),
        c[2] / c[3] if c[3] else float("nan"),
    )


def main() -> None:
    """Score the rounds' works with every model and write the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="NAME=MODEL_DIR, the first is the baseline")
    parser.add_argument("--works", default="data/confirm", help="folder laid out like data/dev")
    parser.add_argument("--rounds", nargs="+", default=list(ROUNDS), help="round names")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    models = dict(m.split("=", 1) for m in args.models)
    prefixes = tuple(p for r in args.rounds for p in ROUNDS[r])
    items = [it for it in load_dev_works(args.works) if it.id.startswith(prefixes)]
    Y = np.array([[it.judgments[t] for t in REQUIRED_TAGS] for it in items])
    written = np.array([it.kind == "written" for it in items])
    F = {name: decisions(folder, items) for name, folder in models.items()}
    seven = [REQUIRED_TAGS.index(t) for t in SEVEN]
    au = [REQUIRED_TAGS.index(t) for t in AU_TAGS]

    def groups(f: NDArray[np.bool_], idx: NDArray[np.int_]) -> dict[str, NDArray[np.int_]]:
        w = idx[written[idx]]
        return {
            "seven tags": counts(f[idx][:, seven], Y[idx][:, seven]),
            "AU tags, written works": counts(f[w][:, au], Y[w][:, au]),
        }

    n = len(items)
    everyone = np.arange(n)
    lines = [
        "# Fresh works: each model's decisions as `tropeml tag` serves them",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC at commit "
        f"{git('rev-parse', '--short', 'HEAD')} by `benchmarks/fresh.py` on {n} works of "
        f"`{args.works}` ({', '.join(args.rounds)}: {int(written.sum())} written for the "
        f"project, {int((~written).sum())} public-domain). Models: "
        + "; ".join(f"**{k}** `{v}`" for k, v in models.items())
        + ". Found: shown tags given; false: tags given to works judged not to show them.",
        "",
        *tag_table(REQUIRED_TAGS, F, Y),
    ]
    base = next(iter(F))
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, n, n) for _ in range(REPS)]
    lines += [
        "",
        f"Pooled (95% CI over works for the difference from **{base}**, {REPS} resamples):",
        "",
        "| model | tags | found | false | precision | recall | false-tag rate |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, f in F.items():
        for group, c in groups(f, everyone).items():
            p, r, ftr = summary(c)
            cell = [f"{p:.3f}", f"{r:.3f}", f"{ftr:.3f}"]
            if name != base:
                diffs = np.array(
                    [
                        np.subtract(
                            summary(groups(f, i)[group]), summary(groups(F[base], i)[group])
                        )
                        for i in draws
                    ]
                )
                lo, hi = np.nanpercentile(diffs, [2.5, 97.5], axis=0)
                point = np.subtract((p, r, ftr), summary(groups(F[base], everyone)[group]))
                cell = [
                    f"{v} ({d:+.3f} [{a:+.3f}, {b:+.3f}])"
                    for v, d, a, b in zip(cell, point, lo, hi, strict=True)
                ]
            lines.append(
                f"| {name} | {group} | {c[0]}/{c[1]} | {c[2]}/{c[3]} | " + " | ".join(cell) + " |"
            )
    lines.append("")
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
