"""Compare two model folders (two encoder tiers) on the dev set and the fresh works.

For each model, as ``tropeml tag`` serves it: every dev passage's best window, and the work
evidence in decades (``tuning.work_evidence``) of every dev work and fresh work
(``data/confirm``). Then:

- passage AP per tag, core AP and all-8 AP, and the paired book-bootstrap CI of the second
  model minus the first (and, for information, of the two models' passage logits averaged);
- at work level, each model with its alphas chosen on the dev works by
  :func:`tropeml.serve.tuning.choose` (the first also with the alphas in its config): dev
  recall in-sample and held out (``benchmarks/alpha.py``'s split halves), per-tag held-out
  false-tag rates, and found / false on the fresh works, which chose nothing;
- the two models' work evidence averaged (second model's weight 0.3, 0.5, 0.7), alphas
  chosen the same way;
- paired bootstrap CIs over fresh works of each candidate's recall and false-tag rate minus
  the first model's (as configured).

Usage::

    .venv/bin/python benchmarks/tiers.py capture MODEL OUT.pkl   # once per model
    .venv/bin/python benchmarks/tiers.py report FIRST.pkl SECOND.pkl
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import average_precision_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alpha import held_out, rates

from tropeml.io.devset import REQUIRED_TAGS, load_dev_passages, load_dev_works
from tropeml.model.decision import log_chance
from tropeml.serve.deveval import score_items
from tropeml.serve.tagger import load
from tropeml.serve.targets import judged
from tropeml.serve.tuning import choose, evidence, work_evidence

CORE = ("hurt_comfort", "fake_death", "reunion", "soulmates")
PASSAGE_TAGS = tuple(t for t in REQUIRED_TAGS if t not in ("mates", "alpha_beta_omega"))
WEIGHTS = (0.3, 0.5, 0.7)
REPS = 1000


def capture(folder: str, out: str) -> None:
    """Score the dev passages, dev works and fresh works with the model in ``folder``."""
    tagger = load(folder)
    assert tagger.null is not None, "the model has no background null"
    mu, sigma = tagger.null
    res: dict[str, Any] = {
        "tags": list(tagger.tags),
        "alpha": {t: float(a) for t, a in zip(tagger.tags, tagger.alpha, strict=True)},
    }
    sets = {
        "dev": load_dev_works(),
        "conf": load_dev_works("data/confirm"),
        "pass": load_dev_passages(),
    }
    for name, items in sets.items():
        scored = score_items(tagger, items)
        res[name + "_ids"] = [s.item.id for s in scored]
        res[name + "_book"] = [s.item.title for s in scored]
        res[name + "_J"] = judged([s.item for s in scored], REQUIRED_TAGS)
        if name == "pass":
            res["pass_best"] = np.array([s.scores.max(axis=0) for s in scored])
        else:
            res[name + "_E"] = work_evidence(
                np.array([log_chance(s.scores, mu, sigma, tagger.k) for s in scored])
            )
    with open(out, "wb") as fh:
        pickle.dump(res, fh)


def passage_ap(res: dict[str, Any], tags: tuple[str, ...], idx: Any = None) -> float:
    """Mean AP over ``tags`` of the dev passages ``idx`` (all by default)."""
    col = {t: j for j, t in enumerate(res["tags"])}
    S = res["pass_best"]
    idx = np.arange(len(S)) if idx is None else idx
    aps = []
    for t in tags:
        y = res["pass_J"][t][idx]
        ok = y >= 0
        if 0 < y[ok].sum() < ok.sum():
            aps.append(average_precision_score(y[ok], S[idx][ok, col[t]]))
    return float(np.mean(aps))


def decide(
    res: dict[str, Any], Wd: NDArray[np.float64], Wc: NDArray[np.float64], alphas: Any = None
) -> tuple[NDArray[np.bool_], list[str], str]:
    """Fresh-work decisions ``(works, tags)`` at alphas chosen on ``Wd`` (or given), table rows.

    ``Wd``, ``Wc``: work evidence in decades on the dev and fresh works, ``(works, T)``.
    """
    col = {t: j for j, t in enumerate(res["tags"])}
    F = np.zeros((len(Wc), len(REQUIRED_TAGS)), dtype=bool)
    held = held_out(Wd, res["dev_J"], col)
    rows, tp_i, pos_i = [], 0, 0
    for k, t in enumerate(REQUIRED_TAGS):
        yd = res["dev_J"][t]
        a = alphas[t] if alphas else choose(Wd[:, col[t]], yd, t)
        F[:, k] = Wc[:, col[t]] >= evidence(a)
        tp, pos, fp, neg = rates(Wd[:, col[t]], yd, a)
        tp_i, pos_i = tp_i + tp, pos_i + pos
        h = np.array(held[t], dtype=float)
        c = rates(Wc[:, col[t]], res["conf_J"][t], a)
        rec_h = h[:, 0].sum() / max(h[:, 1].sum(), 1)
        ftr_h = h[:, 2].sum() / max(h[:, 3].sum(), 1)
        rows.append(
            f"| `{t}` | {a:g} | {tp}/{pos} | {fp}/{neg} | {rec_h:.2f} | {ftr_h:.3f} "
            f"| {c[0]}/{c[1]} | {c[2]}/{c[3]} |"
        )
    tp_o = sum(r[0] for t in REQUIRED_TAGS for r in held[t])
    pos_o = sum(r[1] for t in REQUIRED_TAGS for r in held[t])
    return F, rows, f"{tp_i / pos_i:.3f} / {tp_o / pos_o:.3f}"


def fresh_rates(F: NDArray[np.bool_], Y: NDArray[np.int_]) -> tuple[float, float]:
    return float((F & (Y == 1)).sum() / max((Y == 1).sum(), 1)), float(
        (F & (Y == 0)).sum() / max((Y == 0).sum(), 1)
    )


def report(first: str, second: str) -> None:
    with open(first, "rb") as fh:
        a = pickle.load(fh)
    with open(second, "rb") as fh:
        b = pickle.load(fh)
    for key in ("dev_ids", "conf_ids", "pass_ids"):
        assert a[key] == b[key], f"the two captures differ in {key}"
    rng = np.random.default_rng(0)
    books = np.array(a["pass_book"])
    unique = np.unique(books)
    samples = []
    for _ in range(REPS):
        pick = rng.choice(unique, len(unique))
        samples.append(np.concatenate([np.where(books == x)[0] for x in pick]))

    def logit(P: NDArray[np.float64]) -> NDArray[np.float64]:
        P = np.clip(P, 1e-9, 1 - 1e-9)
        return np.asarray(np.log(P / (1 - P)))

    print("## Passage level (dev passages; paired 95% CI over books, second minus first)\n")
    print("| model | core AP | all-8 AP | " + " ".join(PASSAGE_TAGS) + " |")
    print("|---|---:|---:|---|")
    mixed = {w: dict(b) for w in WEIGHTS}
    for w in WEIGHTS:
        mixed[w]["pass_best"] = (1 - w) * logit(a["pass_best"]) + w * logit(b["pass_best"])
    for name, r in (
        ("first", a),
        ("second", b),
        *((f"logits averaged, {w}", mixed[w]) for w in WEIGHTS),
    ):
        per = " ".join(f"{passage_ap(r, (t,)):.2f}" for t in PASSAGE_TAGS)
        print(f"| {name} | {passage_ap(r, CORE):.3f} | {passage_ap(r, PASSAGE_TAGS):.3f} | {per} |")
    for tags, label in ((CORE, "core"), (PASSAGE_TAGS, "all-8")):
        diff = [passage_ap(b, tags, i) - passage_ap(a, tags, i) for i in samples]
        point = passage_ap(b, tags) - passage_ap(a, tags)
        lo, hi = np.percentile(diff, [2.5, 97.5])
        print(f"\n{label} AP, second minus first: {point:+.3f} [{lo:+.3f}, {hi:+.3f}]")

    Y = np.stack([a["conf_J"][t] for t in REQUIRED_TAGS], axis=1)
    head = (
        "| tag | alpha | dev found | dev false | held-out recall | held-out false-tag rate "
        "| fresh found | fresh false |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    base, rows, rec = decide(a, a["dev_E"], a["conf_E"], a["alpha"])
    print(f"\n## First model, alphas as configured (dev recall in-sample / held out {rec})\n")
    print(head + "\n" + "\n".join(rows))
    candidates = {}
    for name, Wd, Wc in [
        ("first, alphas chosen here", a["dev_E"], a["conf_E"]),
        ("second, alphas chosen here", b["dev_E"], b["conf_E"]),
        *(
            (
                f"work evidence averaged, second's weight {w}",
                (1 - w) * a["dev_E"] + w * b["dev_E"],
                (1 - w) * a["conf_E"] + w * b["conf_E"],
            )
            for w in WEIGHTS
        ),
    ]:
        F, rows, rec = decide(a, Wd, Wc)
        candidates[name] = F
        print(f"\n## {name} (dev recall in-sample / held out {rec})\n")
        print(head + "\n" + "\n".join(rows))
    n = len(Y)
    draws = [rng.integers(0, n, n) for _ in range(REPS)]
    r0, f0 = fresh_rates(base, Y)
    print("\n## Fresh works: each against the first model as configured (95% CI over works)\n")
    print(
        "| candidate | recall | difference | false-tag rate | difference |\n|---|---:|---|---:|---|"
    )
    for name, F in candidates.items():
        r1, f1 = fresh_rates(F, Y)
        d = np.array(
            [np.subtract(fresh_rates(F[i], Y[i]), fresh_rates(base[i], Y[i])) for i in draws]
        )
        lo, hi = np.percentile(d, [2.5, 97.5], axis=0)
        print(
            f"| {name} | {r1:.3f} (first {r0:.3f}) | {r1 - r0:+.3f} [{lo[0]:+.3f}, {hi[0]:+.3f}] "
            f"| {f1:.3f} (first {f0:.3f}) | {f1 - f0:+.3f} [{lo[1]:+.3f}, {hi[1]:+.3f}] |"
        )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "capture":
        capture(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)
