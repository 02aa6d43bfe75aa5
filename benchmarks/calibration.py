"""Choose the work-score calibration on the dev works, and check it where it was not chosen.

(The release before's score. The shipped model now reports a work calibrator,
``tropeml.model.workcal``, compared with this one in ``benchmarks/workscore.py``; this script
stays to measure the pooled form, and its ``ROUNDS`` name the confirmation rounds.)

The chance rule (``tropeml.model.decision``) decides well but its score does not mean what a
reader takes it to mean: it is one minus the chance that a trope-free work of the same
length shows evidence as strong, not the probability that the work shows the trope. The
reported score is therefore ``work_probability``: a logistic function of ``d``, the decades
by which that chance lies beyond the tag's alpha (``decision.beyond``), with one intercept
and one slope pooled over the required tags. They are chosen here, on the dev works (the
model is trained without them), by maximum likelihood, and checked three ways:

- in-sample, on the dev works they were chosen on;
- held out: chosen on a random half of the dev works, measured on the other, both ways,
  100 splits (predictions pooled);
- on the fresh works of ``data/confirm``, which chose nothing (and apart, on its second
  round, judged after the calibration was committed).

Each is reported as Brier score and log loss beside two baselines (the raw chance score,
and the base rate of the works it was chosen on), with a reliability table: in each band of
predicted probability, how often the work really shows the tag. Last, the forms the shipped
one was chosen among (:data:`FORMS`) are compared by log loss on the same splits.

Usage::

    .venv/bin/python benchmarks/calibration.py [--model DIR] [--out FILE]

Writes ``benchmarks/results/calibration.md`` and prints the ``CALIBRATION`` tuple to paste
into ``tropeml/model/decision.py`` (then retrain: it goes into the model's config).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import sys
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import git  # the benchmarks' one way to stamp a run with its commit

from tropeml.io.devset import REQUIRED_TAGS, load_dev_works
from tropeml.model.decision import beyond, log_chance
from tropeml.serve.deveval import BANDS, score_items
from tropeml.serve.tagger import Tagger, load
from tropeml.serve.tuning import fit_calibration as fit

SPLITS = 100
ROUNDS = {
    "first round": ("devc0-", "devc1-", "devc2-"),
    "second round": ("devc3-", "devc4-", "devc5-"),
    "third round": ("devc6-", "devc7-", "devc8-"),
    "fourth round": ("devc9-", "devc10-", "devc11-"),
    "fifth round": ("devc12-", "devc13-", "devc14-", "wc15-", "wc16-"),
    "sixth round": ("wc17-", "wc18-"),
    "seventh round": ("devc19-", "devc20-", "devc21-"),
    "eighth round": ("devc24-", "wc22-", "wc23-"),
    "ninth round": ("devc25-", "devc26-"),
    "tenth round": ("wc27-", "wc28-"),
    "eleventh round": ("devc29-", "devc30-"),
    "twelfth round": ("devc31-", "devc32-", "devc33-"),
    "thirteenth round": ("devc34-", "wc35-", "devc36-", "devc38-"),
    "fourteenth round": ("devc37-", "wc39-"),
    "fifteenth round": ("devc40-", "devc41-", "devc42-", "wc43-"),
    "sixteenth round": ("devc44-", "devc45-", "devc46-", "devc47-", "wc48-"),
    "seventeenth round": ("devc49-", "devc50-", "devc51-", "wc52-"),
    "twenty-first round": ("devc53-", "devc54-", "devc55-", "devc56-"),
    "twenty-second round": ("devc57-", "devc58-", "devc59-", "devc60-"),
    "twenty-third round": ("devc61-", "devc62-", "devc63-", "devc64-"),
    "twenty-fourth round": ("devc65-", "devc66-", "devc67-", "devc68-"),
    "twenty-fifth round": ("devc69-", "devc70-", "devc71-", "devc72-"),
    "twenty-sixth round": ("devc73-", "devc74-", "devc75-", "devc76-"),
    "twenty-seventh round": ("devc77-", "devc78-", "devc79-", "devc80-"),
    "twenty-eighth round": ("devc81-", "devc82-", "devc83-", "devc84-"),
    "twenty-ninth round": ("devc85-", "devc86-", "devc87-", "devc88-"),
    "thirtieth round": ("devc89-", "devc90-", "devc91-", "devc92-", "devc93-", "devc94-"),
    "thirty-first round": ("devc95-", "devc96-", "devc97-", "devc98-", "devc99-", "devc100-"),
    "thirty-second round": (
        "devc101-",
        "devc102-",
        "devc103-",
        "devc104-",
        "devc105-",
        "wc106-",
        "wc107-",
    ),
    "thirty-third round": (
        "devc108-",
        "devc109-",
        "devc110-",
        "devc111-",
        "devc112-",
        "wc113-",
    ),
    "thirty-fourth round": (
        "devc114-",
        "devc115-",
        "devc116-",
        "devc117-",
        "wc118-",
        "wc119-",
    ),
}
"""The confirmation set's rounds by work-id prefix (``data/confirm/README.md``): the second was
judged after the first calibration was committed, the third to fifth after the model they
test was."""
OUT = Path(__file__).resolve().parent / "results" / "calibration.md"


Pairs = tuple[
    NDArray[np.float64], NDArray[np.float64], NDArray[np.int_], NDArray[np.str_], NDArray[np.str_]
]


def pairs(tagger: Tagger, dev_dir: str) -> tuple[Pairs, NDArray[np.float64]]:
    """Every judged (work, required tag) pair of a works folder.

    Returns:
        ``((d, raw, y, tag, work), ratio)``, each shape ``(pairs,)``: decades beyond the
        tag's alpha, the chance score (one minus the chance), 1 if the work shows the tag,
        the tag id and the work id (unknown judgments left out); and, for the comparison of
        forms, ``log(-ln chance) - log(-ln alpha)``.
    """
    assert tagger.null is not None
    mu, sigma = tagger.null
    col = {t: j for j, t in enumerate(tagger.tags)}
    d, raw, y, tag, work, ratio = [], [], [], [], [], []
    for s in score_items(tagger, load_dev_works(dev_dir)):
        log_c = log_chance(s.scores, mu, sigma, tagger.k)
        beyond_alpha = beyond(log_c, tagger.alpha)
        for t in REQUIRED_TAGS:
            if s.item.judgments[t] >= 0:
                j = col[t]
                d.append(beyond_alpha[j])
                raw.append(-np.expm1(log_c[j]))
                y.append(s.item.judgments[t])
                tag.append(t)
                work.append(s.item.id)
                ratio.append(np.log(max(-log_c[j], 1e-12)) - np.log(-np.log(tagger.alpha[j])))
    found = (np.array(d), np.array(raw), np.array(y), np.array(tag), np.array(work))
    return found, np.array(ratio)


FORMS: dict[str, Any] = {
    "logistic in d (shipped)": lambda d, r: d[:, None],
    "logistic in asinh(d)": lambda d, r: np.arcsinh(d)[:, None],
    "logistic in log(-ln chance) - log(-ln alpha)": lambda d, r: r[:, None],
    "logistic in d, with a step at the bar": lambda d, r: np.c_[d, d >= 0],
    "logistic in d, its own slope over the bar": lambda d, r: np.c_[d, np.maximum(d, 0)],
    "isotonic in d": None,
}
"""Calibration forms compared before choosing one: name -> features of ``(d, ratio)``."""


def form_losses(
    form: Any,
    train: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int_]],
    test: tuple[NDArray[np.float64], NDArray[np.float64]],
) -> NDArray[np.float64]:
    """Fit one of :data:`FORMS` on ``(d, ratio, y)`` and predict at ``(d, ratio)``."""
    d, r, y = train
    if form is None:
        iso = IsotonicRegression(y_min=0.01, y_max=0.99, out_of_bounds="clip").fit(d, y)
        return np.asarray(iso.predict(test[0]))
    model = LogisticRegression(C=1e12).fit(form(d, r), y)
    return np.asarray(model.predict_proba(form(*test))[:, 1])


def predict(d: NDArray[np.float64], ab: tuple[float, float]) -> NDArray[np.float64]:
    """Probabilities at ``d`` under ``ab`` (as ``decision.work_probability`` computes them)."""
    return np.asarray(1.0 / (1.0 + np.exp(-(ab[0] + ab[1] * d))))


def decisions(d: NDArray[np.float64], y: NDArray[np.int_]) -> str:
    """Shown tags found and false tags among trope-free pairs, at ``d >= 0``."""
    shown = d >= 0
    found, false = int((shown & (y == 1)).sum()), int((shown & (y == 0)).sum())
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    return f"found {found} of {pos} ({found / pos:.2f}), false {false} of {neg} ({false / neg:.3f})"


def losses(p: NDArray[np.float64], y: NDArray[np.int_]) -> str:
    """Brier score and log loss, as table cells."""
    q = np.clip(p, 1e-6, 1 - 1e-6)
    log_loss = -np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))
    return f"{np.mean((p - y) ** 2):.3f} | {log_loss:.3f}"


def reliability(p: NDArray[np.float64], y: NDArray[np.int_], scale: int = 1) -> list[str]:
    """Table rows: per band of ``p``, pairs (divided by ``scale``), mean ``p``, share shown."""
    rows = []
    for lo, hi in itertools.pairwise(BANDS):
        m = (p >= lo) & ((p < hi) if hi < 1 else (p <= hi))
        if m.any():
            rows.append(
                f"| {lo:.1f}-{hi:.1f} | {m.sum() / scale:.0f} | {p[m].mean():.2f} "
                f"| {y[m].mean():.2f} |"
            )
    return rows


def main() -> None:
    """Score the dev and confirmation works, choose the calibration, write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the shipped one)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"table to write (default: {OUT})")
    args = parser.parse_args()
    tagger = load(args.model)
    if tagger.null is None:
        raise SystemExit("the model has no background null: nothing to calibrate")
    (d, raw, y, tag, work), ratio = pairs(tagger, "data/dev")
    (d_new, raw_new, y_new, tag_new, work_new), ratio_new = pairs(tagger, "data/confirm")
    rounds = {
        name: np.array([w.startswith(prefixes) for w in work_new], dtype=bool)
        for name, prefixes in ROUNDS.items()
    }
    chosen = fit(d, y)
    chance = {"dev": raw, "confirm": raw_new}

    rng = np.random.default_rng(0)
    ids = np.unique(work)
    held_p, held_y = [], []
    held_forms: dict[str, list[NDArray[np.float64]]] = {name: [] for name in FORMS}
    for _ in range(SPLITS):
        half = np.isin(work, rng.permutation(ids)[: len(ids) // 2])
        for a, b in ((half, ~half), (~half, half)):
            held_p.append(predict(d[b], fit(d[a], y[a])))
            held_y.append(y[b])
            for name, form in FORMS.items():
                held_forms[name].append(form_losses(form, (d[a], ratio[a], y[a]), (d[b], ratio[b])))
    hp, hy = np.concatenate(held_p), np.concatenate(held_y)
    p_in, p_new = predict(d, chosen), predict(d_new, chosen)
    base = float(y.mean())
    at = predict(np.zeros(1), chosen)[0]

    commit = git("rev-parse", "--short", "HEAD")
    lines = [
        "# Work-score calibration chosen on the dev works",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC at commit {commit} by "
        f"`benchmarks/calibration.py` on model `{args.model or 'models/default'}`: "
        f"{len(np.unique(work))} dev works ({len(y)} judged work-tag pairs of the required "
        f"tags, {y.sum()} showing the tag) and {len(y_new)} pairs of the fresh works of "
        f"`data/confirm` ({y_new.sum()} showing). Score = 1 / (1 + exp(-(a + b d))), d = "
        "log10(alpha / chance) clipped to +-20, one (a, b) for every tag, chosen by maximum "
        f"likelihood on the dev works: a = {chosen[0]:.4f}, b = {chosen[1]:.4f}, so every tag "
        f"is shown from score {at:.2f}. Held out: chosen on a random half of the dev works, "
        f"measured on the other, both ways, {SPLITS} splits.",
        "",
        "| works | score | Brier | log loss |",
        "|---|---|---:|---:|",
        f"| dev (in-sample) | calibrated | {losses(p_in, y)} |",
        f"| dev (held out) | calibrated | {losses(hp, hy)} |",
        f"| dev | chance score (before) | {losses(chance['dev'], y)} |",
        f"| dev | base rate {base:.2f} | {losses(np.full(len(y), base), y)} |",
        f"| confirm (fresh) | calibrated | {losses(p_new, y_new)} |",
        f"| confirm (fresh) | chance score (before) | {losses(chance['confirm'], y_new)} |",
        f"| confirm (fresh) | dev base rate {base:.2f} "
        f"| {losses(np.full(len(y_new), base), y_new)} |",
        *(
            row
            for name, m in list(rounds.items())[1:]
            for row in (
                f"| confirm, {name} only | calibrated | {losses(p_new[m], y_new[m])} |",
                f"| confirm, {name} only | chance score (before) "
                f"| {losses(chance['confirm'][m], y_new[m])} |",
                f"| confirm, {name} only | dev base rate {base:.2f} "
                f"| {losses(np.full(int(m.sum()), base), y_new[m])} |",
            )
        ),
        "",
        "The second round ("
        + f"{len(set(work_new[rounds['second round']]))} works) was judged after the first "
        "calibration (71e447c) was committed, the third ("
        + f"{len(set(work_new[rounds['third round']]))} works), the fourth ("
        + f"{len(set(work_new[rounds['fourth round']]))} works), the fifth ("
        + f"{len(set(work_new[rounds['fifth round']]))} works, 6 of them written for the "
        "project) and the sixth ("
        + f"{len(set(work_new[rounds['sixth round']]))} written) after the model they test "
        "(`data/confirm/README.md`); every alpha and calibration is chosen on the dev works "
        "alone, so the fresh works choose nothing. The shipped decisions (d >= 0) on the fresh "
        "works: "
        + "; ".join(
            f"{name}: {decisions(d_new[m], y_new[m])}"
            for name, m in [*rounds.items(), ("all", np.ones(len(y_new), dtype=bool))]
        )
        + ".",
        "",
        "Reliability: pairs per band of score, their mean score and the share that show the tag.",
        "",
    ]
    for name, p, yy, scale in (
        ("dev, held out (pairs: per split)", hp, hy, SPLITS),
        ("confirm, calibrated", p_new, y_new, 1),
        ("dev, chance score (before)", chance["dev"], y, 1),
        ("confirm, chance score (before)", chance["confirm"], y_new, 1),
    ):
        head = ["| score | pairs | mean score | shown |", "|---|---:|---:|---:|"]
        lines += [f"**{name}**", "", *head]
        lines += [*reliability(p, yy, scale), ""]
    lines += [
        "Tags as shown (d >= 0), per tag: pairs shown, their mean calibrated score and the "
        "share right (precision), on the dev works and the fresh works.",
        "",
        "| tag | dev shown | mean score | right | confirm shown | mean score | right |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in REQUIRED_TAGS:
        cells = []
        for dd, yy, tt, p in ((d, y, tag, p_in), (d_new, y_new, tag_new, p_new)):
            m = (tt == t) & (dd >= 0)
            cells.append(
                f"{m.sum()} | {p[m].mean():.2f} | {yy[m].mean():.2f}" if m.any() else "0 | - | -"
            )
        lines.append(f"| `{t}` | " + " | ".join(cells) + " |")
    lines += [
        "",
        "A reader who wants surer tags can keep only those scoring at least some value "
        "(the shown tags, d >= 0, with score >= the value): precision / recall / false-tag "
        "rate.",
        "",
        "| score at least | dev works | fresh works |",
        "|---:|---|---|",
    ]
    for least in (0.0, 0.5, 0.6, 0.7, 0.8):
        cells = []
        for dd, pp, yy in ((d, p_in, y), (d_new, p_new, y_new)):
            kept = (dd >= 0) & (pp >= least)
            right = int((kept & (yy == 1)).sum())
            cells.append(
                f"{right / max(int(kept.sum()), 1):.2f} / {right / int((yy == 1).sum()):.2f} "
                f"/ {int((kept & (yy == 0)).sum()) / int((yy == 0).sum()):.3f}"
            )
        lines.append(f"| {least:.1f} | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        "Forms compared before choosing (log loss: held out on the dev works, same splits; "
        "on the fresh works, fitted on all dev works):",
        "",
        "| form | held out | fresh |",
        "|---|---:|---:|",
    ]
    for name, form in FORMS.items():
        fresh = form_losses(form, (d, ratio, y), (d_new, ratio_new))
        held = np.concatenate(held_forms[name])
        lines.append(
            f"| {name} | {losses(held, hy).split(' | ')[1]} "
            f"| {losses(fresh, y_new).split(' | ')[1]} |"
        )
    lines.append("")
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    print(f"CALIBRATION = ({chosen[0]:.4f}, {chosen[1]:.4f})")


if __name__ == "__main__":
    main()
