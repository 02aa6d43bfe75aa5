"""Quick dev-set measurements of training-data and model variants, in seconds per variant.

Three steps:

1. ``capture DATA OUT [--window N]`` trains like ``tropeml train --no-eval`` on the data
   folder ``DATA`` into the model folder ``OUT`` and saves, beside it (``OUT.rows.pkl``, a
   private scratch file of this script), the training rows, the background rows and the
   dev passages' and dev works' passages with their embeddings. ``--window N`` splits
   every text into passages of at most ``N`` encoder tokens instead of the encoder's own
   254 (128 or 512 tokens with the special ones); ``--encoder`` trains on another
   sentence-transformers encoder (a folder or a name), as ``tropeml train --encoder``.
2. ``report CAPTURE... [--knn]`` scores each captured model on the dev set: passage AP per
   tag (each dev passage's best window), core AP (hurt_comfort, fake_death, reunion,
   soulmates) and all-8 AP, and at work level the pooled recall of shown tags with alphas
   chosen by ``benchmarks/alpha.py``'s rule (in-sample, and held out: chosen on one half of
   the works, measured on the other, 100 splits). ``--knn`` also refits the head with its
   prototype view replaced by a nearest-neighbour view (mean cosine to the 10 nearest
   positive training rows minus that to the 10 nearest negatives, out of fold).
   ``--svm C...`` refits it with the embedding view an RBF support-vector machine (one
   row per ``C``) and gives the paired book-bootstrap CI of its core AP minus the refit
   linear head's.
3. ``average CAPTURE_A CAPTURE_B [--weights W...]``: work recall when the two models'
   work evidence (decades) is averaged, the second weighted ``W``; the dev
   works must be the same (for example MiniLM and mpnet captures of one data folder).

The numbers equal ``benchmarks/alpha.py`` and the paired passage script of
``results/training_data.md`` for the same model (checked on the shipped model).

Usage::

    .venv/bin/python benchmarks/variants.py capture data /tmp/v/base
    .venv/bin/python benchmarks/variants.py report /tmp/v/base.rows.pkl --knn
"""

from __future__ import annotations

import argparse
import pickle
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import average_precision_score
from sklearn.model_selection import GroupKFold
from sklearn.svm import SVC

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alpha import GRID, choose, held_out, rates

from tropeml.io.devset import REQUIRED_TAGS, load_dev_passages, load_dev_works
from tropeml.model import encoders, training
from tropeml.model.backends import load_encoder
from tropeml.model.classifier import TropeClassifier
from tropeml.model.decision import fit_null, log_chance
from tropeml.serve.targets import judged
from tropeml.serve.tuning import work_evidence

CORE = ("hurt_comfort", "fake_death", "reunion", "soulmates")
PASSAGE_TAGS = tuple(t for t in REQUIRED_TAGS if t not in ("mates", "alpha_beta_omega"))
NEIGHBOURS = 10


def capture(data: str, out: str, window: int | None, encoder: str | None = None) -> None:
    """Train on ``data`` into ``out`` and save the rows every report needs."""
    import tropeml

    if window:
        encoders.SentenceTransformerEncoder.max_tokens = property(lambda self: window)  # type: ignore[assignment,method-assign]
    rows: dict[str, Any] = {}
    fit_mil, background_rows = training.fit_mil, training.background_rows

    def spy_fit(clf: Any, base: Any, bags: Any, *args: Any) -> Any:
        rows.update(X=base.X, Y=base.Y, groups=list(base.groups), texts=list(base.texts))
        rows["params"] = clf.get_params()
        return fit_mil(clf, base, bags, *args)

    def spy_background(*args: Any) -> Any:
        found = background_rows(*args)
        rows["BX"], rows["Btexts"] = found[0], list(found[1])
        return found

    training.fit_mil, training.background_rows = spy_fit, spy_background  # type: ignore[assignment]
    root = Path(__file__).resolve().parents[1]
    enc = load_encoder(encoder) if encoder else None
    training.train(data, root=root, out=out, encoder=enc, evaluate=False)
    tagger = tropeml.load(out)

    def passages(work: Any) -> tuple[NDArray[np.float32], list[str]]:
        ps = tagger.passages(work)
        texts = tagger.texts(ps, work)
        return tagger.embed_texts(texts), list(texts)

    dev_passages, dev_works = load_dev_passages(), load_dev_works()
    rows["tags"] = list(tagger.tags)
    rows["dev_p"] = [passages(it.work) for it in dev_passages]
    rows["dev_p_J"] = {
        t: np.array([it.judgments.get(t, -1) for it in dev_passages]) for t in REQUIRED_TAGS
    }
    rows["dev_w"] = [passages(it.work) for it in dev_works]
    rows["dev_w_J"] = judged(dev_works, REQUIRED_TAGS)
    with open(out + ".rows.pkl", "wb") as fh:
        pickle.dump(rows, fh)
    print(f"{out}: {len(rows['Y'])} training rows, {len(rows['BX'])} background passages")


def knn_view(E: NDArray[Any], X: NDArray[Any], Y: NDArray[Any]) -> NDArray[np.float64]:
    """Mean cosine to the nearest positive rows minus to the nearest negatives, ``(n, T)``."""
    S = E @ X.T
    out = np.full((len(E), Y.shape[1]), np.nan)
    for j in range(Y.shape[1]):
        pos, neg = Y[:, j] == 1, Y[:, j] == 0
        if pos.any() and neg.any():
            top_p = -np.sort(-S[:, pos], axis=1)[:, :NEIGHBOURS].mean(axis=1)
            top_n = -np.sort(-S[:, neg], axis=1)[:, :NEIGHBOURS].mean(axis=1)
            out[:, j] = top_p - top_n
    return out


class SvmClassifier(TropeClassifier):
    """``TropeClassifier`` whose embedding view is a balanced RBF SVM (``gamma="scale"``)."""

    svm_c = 1.0

    def _logreg(self, C: float, sparse: bool = False) -> Any:
        if sparse:  # the lexical view stays a logistic regression
            return super()._logreg(C, sparse)
        return SVC(C=self.svm_c, kernel="rbf", gamma="scale", class_weight=self.class_weight)


def passage_best(rows: dict[str, Any], predict: Any) -> NDArray[np.float64]:
    """Each dev passage's best window score, shape ``(passages, T)``."""
    return np.array([predict(X, texts).max(axis=0) for X, texts in rows["dev_p"]])


def paired_core(rows: dict[str, Any], best_a: Any, best_b: Any, reps: int = 1000) -> str:
    """Core AP of ``b`` minus ``a`` with a 95% CI, dev books resampled (paired)."""
    from quality import boot_samples

    col = {t: j for j, t in enumerate(rows["tags"])}
    books = [it.title for it in load_dev_passages()]

    def core(best: NDArray[np.float64], idx: NDArray[np.intp]) -> float:
        aps = []
        for t in CORE:
            y = rows["dev_p_J"][t][idx]
            known = y != -1
            if (y[known] == 1).any() and (y[known] == 0).any():
                aps.append(average_precision_score(y[known], best[idx][known, col[t]]))
        return float(np.mean(aps))

    every = np.arange(len(books))
    diffs = [core(best_b, i) - core(best_a, i) for i in boot_samples(books, reps)]
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return f"{core(best_b, every) - core(best_a, every):+.3f} [{lo:+.3f}, {hi:+.3f}]"


class KnnClassifier(TropeClassifier):
    """``TropeClassifier`` with a nearest-neighbour view in place of the prototype view."""

    def fit(self, X: Any, Y: Any, groups: Any = None, texts: Any = None) -> KnnClassifier:
        """Keep the training rows the view reads, then fit as the parent does."""
        self.knn_X_ = np.asarray(X, dtype=np.float32)
        self.knn_Y_ = np.asarray(Y, dtype=np.int8)
        super().fit(X, Y, groups=groups, texts=texts)
        return self

    def _views(self, fitted: Any, X: Any, texts: Any) -> Any:
        out = super()._views(fitted, X, texts)
        out[2] = knn_view(X, self.knn_X_, self.knn_Y_)
        return out

    def _out_of_fold(self, X: Any, Y: Any, texts: Any, groups: Any) -> Any:
        """The parent's out-of-fold views, with the kNN view read from the other folds only."""
        views = super()._out_of_fold(X, Y, texts, groups)
        folds = GroupKFold(n_splits=min(self.threshold_folds, len(np.unique(groups))))
        for train, test in folds.split(X, groups=groups):
            views[2, test] = knn_view(X[test], X[train], Y[train])
        return views


def work_scores(rows: dict[str, Any], predict: Any) -> NDArray[np.float64]:
    """The chance rule's work evidence (decades) on the dev works, shape ``(works, T)``."""
    mu, sigma = fit_null(predict(rows["BX"], rows["Btexts"]))
    return work_evidence(
        np.array([log_chance(predict(X, texts), mu, sigma, 2) for X, texts in rows["dev_w"]])
    )


def recall(rows: dict[str, Any], W: NDArray[np.float64]) -> tuple[float, float, str]:
    """Pooled recall of shown tags at the alphas ``alpha.py`` chooses: in-sample, held out.

    Also the works found per tag in-sample, as ``found/shown`` in :data:`REQUIRED_TAGS` order.
    """
    col = {t: j for j, t in enumerate(rows["tags"])}
    Y = rows["dev_w_J"]
    found = [rates(W[:, col[t]], Y[t], choose(W[:, col[t]], Y[t], t))[:2] for t in REQUIRED_TAGS]
    held = held_out(W, Y, col)
    tp_out = sum(r[0] for t in REQUIRED_TAGS for r in held[t])
    pos_out = sum(r[1] for t in REQUIRED_TAGS for r in held[t])
    rec_in = sum(tp for tp, _ in found) / sum(pos for _, pos in found)
    return rec_in, tp_out / pos_out, " ".join(f"{tp}/{pos}" for tp, pos in found)


def report(rows: dict[str, Any], predict: Any, label: str) -> str:
    """One line: passage AP per tag, core and all-8 AP, work recall in-sample / held out."""
    col = {t: j for j, t in enumerate(rows["tags"])}
    best = passage_best(rows, predict)
    aps = {}
    for t in PASSAGE_TAGS:
        y = rows["dev_p_J"][t]
        known = y != -1
        aps[t] = average_precision_score(y[known], best[known, col[t]])
    rec_in, rec_out, found = recall(rows, work_scores(rows, predict))
    core = np.mean([aps[t] for t in CORE])
    per_tag = " ".join(f"{aps[t]:.2f}" for t in PASSAGE_TAGS)
    return (
        f"| {label} | {core:.3f} | {np.mean(list(aps.values())):.3f} | {per_tag} "
        f"| {rec_in:.2f} / {rec_out:.2f} | {found} |"
    )


def average(captures: list[str], weights: list[float]) -> None:
    """Work recall of two captured models' work evidence (decades) averaged."""
    import tropeml

    evidence = []
    for path in captures:
        with open(path, "rb") as fh:
            rows = pickle.load(fh)
        model = tropeml.load(path.removesuffix(".rows.pkl")).classifier
        evidence.append(work_scores(rows, model.predict_proba))
    for w in weights:
        rec_in, rec_out, found = recall(rows, (1 - w) * evidence[0] + w * evidence[1])
        print(f"second model's weight {w}: recall {rec_in:.2f} / {rec_out:.2f}; {found}")


def main() -> None:
    """Capture or report, as the command line says."""
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    cap = sub.add_parser("capture")
    cap.add_argument("data")
    cap.add_argument("out")
    cap.add_argument("--window", type=int, default=None)
    cap.add_argument("--encoder", default=None, help="a sentence-transformers folder or name")
    rep = sub.add_parser("report")
    rep.add_argument("captures", nargs="+")
    rep.add_argument("--knn", action="store_true")
    rep.add_argument("--svm", type=float, nargs="*", default=None, metavar="C")
    avg = sub.add_parser("average")
    avg.add_argument("captures", nargs=2)
    avg.add_argument("--weights", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    args = parser.parse_args()
    if args.step == "capture":
        capture(args.data, args.out, args.window, args.encoder)
        return
    if args.step == "average":
        average(args.captures, args.weights)
        return
    import tropeml

    print(f"alpha grid: {GRID[0]} ... {GRID[-1]} ({len(GRID)} steps)")
    print(
        "| model | core AP | all-8 AP | " + " ".join(PASSAGE_TAGS) + " | recall in / out "
        "| works found: " + " ".join(REQUIRED_TAGS) + " |"
    )
    print("|---|---:|---:|---|---:|---|")
    for path in args.captures:
        with open(path, "rb") as fh:
            rows = pickle.load(fh)
        model = tropeml.load(path.removesuffix(".rows.pkl")).classifier
        print(report(rows, model.predict_proba, Path(path).name), flush=True)
        if args.knn:
            knn = KnnClassifier(**rows["params"]).fit(
                rows["X"], rows["Y"], groups=rows["groups"], texts=rows["texts"]
            )
            print(report(rows, knn.predict_proba, Path(path).name + " + kNN view"), flush=True)
        if args.svm is not None:
            fit = {"groups": rows["groups"], "texts": rows["texts"]}
            linear = TropeClassifier(**rows["params"]).fit(rows["X"], rows["Y"], **fit)
            print(report(rows, linear.predict_proba, "refit, linear embedding view"), flush=True)
            for C in args.svm or [1.0]:
                svm = type("Svm", (SvmClassifier,), {"svm_c": C})(**rows["params"])
                svm.fit(rows["X"], rows["Y"], **fit)
                paired = paired_core(
                    rows,
                    passage_best(rows, linear.predict_proba),
                    passage_best(rows, svm.predict_proba),
                )
                label = f"RBF SVM embedding view, C={C} (core AP minus linear: {paired})"
                print(report(rows, svm.predict_proba, label), flush=True)


if __name__ == "__main__":
    main()
