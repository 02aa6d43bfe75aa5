"""Cross-tag work scores: a tag's score read from every tag's score (the twenty-first test).

A work that ends happily also tends to be warm (fluff), to hold a declaration and a kiss, and
not to end in a funeral, while happy_ending's own passage scores barely rank it (ROC AUC
0.54 on the judged works; ``benchmarks/results/probes_s34.md``). A *cross score* for a tag is
a logistic regression on the shipped score logits of all 18 tags of the work (its own
included), fitted on the judged works; the tag is then given when the cross score reaches a
floor, chosen like the alphas (``tropeml tune``'s target: the lowest floor on a 0.01 grid
whose false-tag rate on the judged works is at most 10%, pooled and on each kind of work),
and the chance rule no longer gates it.

Usage::

    .venv/bin/python benchmarks/crosstag.py fit OUT.json [--tags happy_ending first_kiss] \\
        [--ending --inputs happy_ending fluff angst grief]
    .venv/bin/python benchmarks/crosstag.py report CANDIDATE.json --works data/confirm_next \\
        [--out FILE] [--name Z --test twenty-second]

``fit`` fits on every work of ``data/dev`` and ``data/confirm`` (judged yes or no for the
tag); ``report`` compares a model's decisions (``--model``, default the shipped one) with
the candidate's on the works of ``--works``, per tag and pooled over the candidate's tags,
with a 95% CI over works. Both read the model's base scores (its calibrator without cross
scores), so they give the same numbers whether or not the model already has cross tags;
the twenty-first test compared with ``models/default`` as of 3cee57e, before X shipped.
With ``--ending`` the cross score reads each tag's best passage in the work's last tenth
instead (``tropeml.model.workcal.ending_evidence``; the twenty-fourth test), and
``--inputs`` limits the tags it reads.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fresh import counts, summary, tag_table
from quality import git

from tropeml.io.devset import load_dev_works
from tropeml.model.workcal import C, CrossScore, ending_evidence, evidence_features, fit_cross
from tropeml.serve.crosstune import FLOOR_GRID, choose_floor
from tropeml.serve.deveval import Scored, score_items
from tropeml.serve.tagger import Tagger, load

GRID = FLOOR_GRID
OUT = Path(__file__).resolve().parent / "results" / "fresh_twentyfirst.md"


def base_scores(t: Tagger, scored: list[Scored]) -> NDArray[np.float64]:
    """Each work's base scores (the calibrator before any cross score), ``(works, tags)``."""
    assert t.null is not None and t.calibrator is not None
    mu, sigma = t.null
    feats = (evidence_features(s.scores, mu, sigma, t.alpha) for s in scored)
    return np.array([t.calibrator.predict(f, t.tags) for f in feats])


def endings(t: Tagger, scored: list[Scored]) -> NDArray[np.float64]:
    """Each work's ending evidence, ``(works, tags)``."""
    assert t.null is not None
    return np.array([ending_evidence(s.scores, *t.null) for s in scored])


def cross_of(cand: dict, tag: str) -> CrossScore:  # type: ignore[type-arg]
    """The candidate's :class:`CrossScore` for ``tag``."""
    c = cand["tags"][tag]
    return CrossScore(c["bias"], c["weights"], c.get("reads", "work"))


def fit(out: Path, tags: list[str], reads: str = "work", inputs: list[str] | None = None) -> None:
    """Fit each tag's cross score and floor on the dev and confirmation works."""
    t = load("models/default")
    items = load_dev_works("data/dev") + load_dev_works("data/confirm")
    scored = [s for s in score_items(t, items) if len(s.scores)]
    base, ending = base_scores(t, scored), endings(t, scored)
    kinds = np.array([s.item.kind for s in scored])
    cand: dict = {"fitted_on": len(scored), "C": C, "features": list(t.tags), "tags": {}}  # type: ignore[type-arg]
    for tag in tags:
        y = np.array([s.item.judgments.get(tag, -1) for s in scored])
        m = y >= 0
        c = fit_cross(base[m], t.tags, y[m], reads, ending[m], inputs)
        weights = {k: round(w, 6) for k, w in c.weights.items()}
        cand["tags"][tag] = {"bias": round(c.bias, 6), "weights": weights, "reads": reads}
        p = cross_of(cand, tag).predict(base, t.tags, ending)
        floor = choose_floor(p[m], y[m], tag, kinds[m])
        cand["tags"][tag]["floor"] = floor
        fired = p >= floor
        print(
            f"{tag}: {m.sum()} works, floor {floor}, in-sample found "
            f"{(fired & (y == 1)).sum()}/{(y == 1).sum()}, false {(fired & (y == 0)).sum()}/"
            f"{(y == 0).sum()}"
        )
    out.write_text(json.dumps(cand, indent=1) + "\n", encoding="utf-8")


def report(
    candidate: Path,
    works: str,
    out: Path,
    model: str = "models/default",
    name: str = "X",
    test: str = "twenty-first",
) -> None:
    """The model's decisions against candidate ``name``'s on ``works``, per tag and pooled."""
    cand = json.loads(candidate.read_text(encoding="utf-8"))
    tags = list(cand["tags"])
    t = load(model)
    scored = [s for s in score_items(t, load_dev_works(works)) if len(s.scores)]
    base, ending = base_scores(t, scored), endings(t, scored)
    Y = np.array([[s.item.judgments.get(x, -1) for x in tags] for s in scored])
    crossed = [
        cross_of(cand, x).predict(base, t.tags, ending) >= cand["tags"][x]["floor"] for x in tags
    ]
    F = {
        "shipped": np.array([[x in s.fired for x in tags] for s in scored]),
        name: np.array(crossed).T,
    }
    rng = np.random.default_rng(0)
    ref = counts(F["shipped"], Y)
    lines = [
        f"# The {test} test: cross-tag scores for " + ", ".join(tags),
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC at commit "
        f"{git('rev-parse', 'HEAD')[:7]} "
        f"by `benchmarks/crosstag.py report {candidate} --works {works}` on {len(scored)} works "
        f"({sum(s.item.kind == 'pd' for s in scored)} public-domain). **shipped**: "
        f"`{model}`; **{name}**: the candidate stated in `data/confirm/README.md`.",
        "",
        *tag_table(tags, F, Y),
        "",
        f"Pooled over the candidate's tags (95% CI over works for {name} minus shipped, 2000 "
        "resamples):",
        "",
        "| model | found | false | right when shown | recall | false-tag rate "
        "| found minus false |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, f in F.items():
        c = counts(f, Y)
        p, r, ftr = summary(c)
        diffs = []
        for _ in range(2000):
            i = rng.integers(0, len(scored), len(scored))
            a, b = counts(f[i], Y[i]), counts(F["shipped"][i], Y[i])
            diffs.append((summary(a)[0] - summary(b)[0], (a[0] - a[2]) - (b[0] - b[2])))
        d = np.array(diffs)
        ci = (
            ""
            if name == "shipped"
            else " ({:+.3f} [{:+.3f}, {:+.3f}])".format(
                p - summary(ref)[0], *np.nanpercentile(d[:, 0], [2.5, 97.5])
            )
        )
        q = np.percentile(d[:, 1], [2.5, 97.5])
        cim = "" if name == "shipped" else " [{:+.0f}, {:+.0f}]".format(*q)
        lines.append(
            f"| {name} | {c[0]}/{c[1]} | {c[2]}/{c[3]} | {p:.3f}{ci} | {r:.3f} | {ftr:.3f} | "
            f"{c[0] - c[2]}{cim} |"
        )
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    """Command line: ``fit`` or ``report``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit")
    f.add_argument("out", type=Path)
    f.add_argument("--tags", nargs="+", default=["happy_ending", "first_kiss"])
    f.add_argument("--ending", action="store_true", help="read the work's last tenth")
    f.add_argument("--inputs", nargs="+", help="the tags the score reads (default: all)")
    r = sub.add_parser("report")
    r.add_argument("candidate", type=Path)
    r.add_argument("--works", default="data/confirm_next")
    r.add_argument("--out", type=Path, default=OUT)
    r.add_argument("--model", default="models/default", help="the model X is compared with")
    r.add_argument("--name", default="X", help="the candidate's name in the table")
    r.add_argument("--test", default="twenty-first", help="which test, for the title")
    a = parser.parse_args()
    if a.cmd == "fit":
        fit(a.out, a.tags, "ending" if a.ending else "work", a.inputs)
    else:
        report(a.candidate, a.works, a.out, a.model, a.name, a.test)


if __name__ == "__main__":
    main()
