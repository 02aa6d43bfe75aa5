"""Choose the work rule's per-tag alpha on the dev works, and estimate what choosing costs.

The chance rule (``tropeml.model.decision``) fires a tag when a work's score reaches
``1 - alpha``. The shipped alphas are chosen here, on the real-prose dev works (chosen, never
fitted: the model is trained without them), by one written rule: for each required tag, the
largest alpha of :data:`GRID` whose false-tag rate on the dev works meets the target (5% for
the AU tags, 10% for the rest).

Choosing on the same works one reports on flatters the report, so the script also estimates
the cost: the works are split in random halves, alphas are chosen on one half by the same
rule and measured on the other (both ways, 100 splits), and the mean held-out recall and
false-tag rates are reported beside the in-sample ones.

Usage::

    .venv/bin/python benchmarks/alpha.py [--model DIR] [--out FILE]

Writes ``benchmarks/results/alpha.md`` and prints the ``ALPHA`` dict to paste into
``tropeml/model/decision.py`` (then retrain: the alphas go into the model's config).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import git  # the benchmarks' one way to stamp a run with its commit

from tropeml.io.devset import REQUIRED_TAGS, load_dev_works
from tropeml.model.decision import log_chance
from tropeml.serve.deveval import score_items
from tropeml.serve.tagger import load
from tropeml.serve.targets import judged
from tropeml.serve.tuning import GRID, MARGIN, choose, evidence, work_evidence

__all__ = [
    "GRID",
    "choose",
    "held_alphas",
    "held_out",
    "rates",
]  # variants.py imports these from here

SPLITS = 100
OUT = Path(__file__).resolve().parent / "results" / "alpha.md"


def rates(ev: NDArray[np.float64], y: NDArray[np.int_], alpha: float) -> tuple[int, int, int, int]:
    """(true positives, positives, false positives, negatives) at ``alpha``.

    ``ev``: work evidence in decades (``tuning.work_evidence``), shape ``(works,)``.
    """
    fire = ev >= evidence(alpha)
    return (
        int((fire & (y == 1)).sum()),
        int((y == 1).sum()),
        int((fire & (y == 0)).sum()),
        int((y == 0).sum()),
    )


Split = tuple[NDArray[np.intp], dict[str, float]]
"""One held-out half: the works measured, and each tag's alpha chosen on the other half."""


def held_alphas(
    W: NDArray[np.float64],
    Y: dict[str, NDArray[np.int_]],
    col: dict[str, int],
    margin: float = MARGIN,
    kinds: NDArray[np.str_] | None = None,
) -> list[Split]:
    """The alphas chosen on one half of the works, for the other half, both ways,
    :data:`SPLITS` random splits (seed 0).

    Args:
        W: Work evidence in decades (``tuning.work_evidence``), shape ``(works, T)``.
        Y: Judgments per required tag, each shape ``(works,)``: 1, 0 or -1 (after
            ``targets.judged``).
        col: Column of ``W`` for each tag.
        margin: As for :func:`choose`.
        kinds: Each work's kind, shape ``(works,)``, to hold the target on each kind too
            (``targets.meets``); ``None`` pools them.
    """
    rng = np.random.default_rng(0)
    n = len(W)
    splits: list[Split] = []
    for _ in range(SPLITS):
        perm = rng.permutation(n)
        for a, b in ((perm[: n // 2], perm[n // 2 :]), (perm[n // 2 :], perm[: n // 2])):
            k = None if kinds is None else kinds[a]
            splits.append(
                (b, {t: choose(W[a, col[t]], Y[t][a], t, margin, k) for t in REQUIRED_TAGS})
            )
    return splits


def held_out(
    W: NDArray[np.float64],
    Y: dict[str, NDArray[np.int_]],
    col: dict[str, int],
    margin: float = MARGIN,
    kinds: NDArray[np.str_] | None = None,
    within: NDArray[np.bool_] | None = None,
    splits: list[Split] | None = None,
) -> dict[str, list[tuple[int, int, int, int]]]:
    """What choosing costs: per tag, the :func:`rates` on one half of the works at the alpha
    chosen on the other (:func:`held_alphas`).

    Args:
        W, Y, col, margin, kinds: As for :func:`held_alphas`.
        within: Measure only on these works, shape ``(works,)`` (default: all).
        splits: :func:`held_alphas`'s result, to measure the same choices again (for
            another ``within``) without choosing again.
    """
    splits = splits if splits is not None else held_alphas(W, Y, col, margin, kinds)
    held: dict[str, list[tuple[int, int, int, int]]] = {t: [] for t in REQUIRED_TAGS}
    for b, chosen in splits:
        b = b if within is None else b[within[b]]
        for t in REQUIRED_TAGS:
            held[t].append(rates(W[b, col[t]], Y[t][b], chosen[t]))
    return held


def main() -> None:
    """Score the dev works with the model, choose alphas, estimate the cost, write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the shipped one)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"table to write (default: {OUT})")
    parser.add_argument(
        "--margin", type=float, default=MARGIN, help=f"see choose() (default {MARGIN}; 0: the edge)"
    )
    parser.add_argument(
        "--works",
        type=Path,
        nargs="+",
        default=[Path("data/dev")],
        help="folders laid out like data/dev whose works choose (default: data/dev)",
    )
    parser.add_argument(
        "--pooled",
        action="store_true",
        help="the rule before 2026-12-04: hold each target pooled only, not on each kind",
    )
    args = parser.parse_args()
    tagger = load(args.model)
    if tagger.null is None:
        raise SystemExit("the model has no background null: nothing to choose")
    mu, sigma = tagger.null
    items = [item for folder in args.works for item in load_dev_works(folder)]
    scored = score_items(tagger, items)
    col = {t: j for j, t in enumerate(tagger.tags)}
    W = work_evidence(np.array([log_chance(s.scores, mu, sigma, tagger.k) for s in scored]))
    Y = judged([s.item for s in scored], REQUIRED_TAGS)
    every = np.array([s.item.kind for s in scored])
    kinds = None if args.pooled else every
    chosen = {t: choose(W[:, col[t]], Y[t], t, args.margin, kinds) for t in REQUIRED_TAGS}

    n = len(items)
    splits = held_alphas(W, Y, col, args.margin, kinds)
    held = held_out(W, Y, col, splits=splits)

    commit = git("rev-parse", "--short", "HEAD")
    lines = [
        "# Work-rule alphas chosen on the dev works",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC at commit {commit} by "
        f"`benchmarks/alpha.py` on model `{args.model or 'models/default'}` "
        f"(k = {tagger.k}; {n} works from {', '.join(map(str, args.works))}). Rule "
        f"(`tropeml tune`): the largest alpha of the grid {GRID[0]}, {GRID[1]}, {GRID[2]}, "
        f"{GRID[3]}, ... {GRID[-1]} whose false-tag rate on the works of the kinds that "
        "show the tag (`informative`: public-domain prose is left out for the AU tags) "
        "is at most 5% (mates, alpha_beta_omega, soulmates) "
        f"or 10% (the rest), then moved {args.margin} of the way (in -log10 alpha) towards the "
        "weakest work it finds with the tag, keeping the same works found (`choose`)"
        + (
            "; the target also holds on each kind of work (public-domain, written) with at "
            "least 1/target trope-free works (`targets.meets`). "
            if not args.pooled
            else " (pooled only: the rule before 2026-12-04). "
        )
        + "Held out: alphas chosen on a random half of the works and "
        f"measured on the other, both ways, {SPLITS} splits (means).",
        "",
        "| tag | alpha | recall (in-sample) | false-tag rate (in-sample) "
        "| recall (held out) | false-tag rate (held out) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    tp_in = pos_in = tp_out = pos_out = 0
    for t in REQUIRED_TAGS:
        tp, pos, fp, neg = rates(W[:, col[t]], Y[t], chosen[t])
        tp_in, pos_in = tp_in + tp, pos_in + pos
        h = np.array(held[t], dtype=float)
        tp_out, pos_out = tp_out + h[:, 0].sum(), pos_out + h[:, 1].sum()
        rec_h = h[:, 0].sum() / h[:, 1].sum() if h[:, 1].sum() else float("nan")
        ftr_h = h[:, 2].sum() / h[:, 3].sum() if h[:, 3].sum() else float("nan")
        lines.append(
            f"| `{t}` | {chosen[t]} | {tp / pos if pos else float('nan'):.2f} "
            f"| {fp / neg if neg else float('nan'):.2f} | {rec_h:.2f} | {ftr_h:.2f} |"
        )
    lines += [
        f"| **pooled recall** | | {tp_in / pos_in:.2f} | | {tp_out / pos_out:.2f} | |",
        "",
        "Pooled over the ten tags, all works and by kind of work (recall, false-tag rate):",
        "",
    ]
    for kind, m in [("all", np.ones(n, bool))] + [(k, every == k) for k in np.unique(every)]:
        c_in = np.sum([rates(W[m, col[t]], Y[t][m], chosen[t]) for t in REQUIRED_TAGS], axis=0)
        h_k = held if kind == "all" else held_out(W, Y, col, within=m, splits=splits)
        c_out = np.sum([np.sum(h_k[t], axis=0) for t in REQUIRED_TAGS], axis=0)
        lines.append(
            f"- {kind} ({int(m.sum())} works): in-sample {c_in[0] / c_in[1]:.3f}, "
            f"{c_in[2] / c_in[3]:.3f}; held out {c_out[0] / c_out[1]:.3f}, "
            f"{c_out[2] / c_out[3]:.3f}"
        )
    lines.append("")
    if args.margin:  # what the margin costs and buys, against alphas chosen at the edge
        edge = held_out(W, Y, col, 0.0, kinds)
        tp_e = sum(r[0] for t in REQUIRED_TAGS for r in edge[t])
        pos_e = sum(r[1] for t in REQUIRED_TAGS for r in edge[t])
        ftr = " ".join(
            f"{t} {sum(r[2] for r in edge[t]) / max(sum(r[3] for r in edge[t]), 1):.2f}"
            for t in REQUIRED_TAGS
        )
        lines += [
            f"At the edge (margin 0) the same split gives held-out recall {tp_e / pos_e:.2f} "
            f"and held-out false-tag rates {ftr}.",
            "",
        ]
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    print("ALPHA = " + repr({t: chosen[t] for t in REQUIRED_TAGS}))


if __name__ == "__main__":
    main()
