"""One training path: sources -> training set -> fit -> evaluate -> save a model folder.

``tropeml train``, ``python train.py`` and :func:`tropeml.train` all call :func:`train`.
Training from ``data/`` and retraining with fics, answers and more label files are the same
call with more sources (see :mod:`tropeml.io.sources`).
"""

from __future__ import annotations

__all__ = [
    "PROTOCOLS",
    "Prepared",
    "TrainResult",
    "default_encoder",
    "evaluate",
    "prepare",
    "retrain",
    "run_protocol",
    "train",
]

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tropeml.core.errors import TropemlError
from tropeml.core.resources import default_model_dir
from tropeml.core.taxonomy import Taxonomy
from tropeml.core.types import UNKNOWN
from tropeml.io.readers import DEFAULT_MAX_BYTES
from tropeml.io.sources import LabelledWork, Sources, collect_sources, is_data_dir
from tropeml.model.card import added_card, added_summary, model_card, model_config
from tropeml.model.classifier import TropeClassifier
from tropeml.model.dataset import (
    ANSWER,
    WORK,
    TrainingSet,
    answer_rows,
    background_rows,
    build_training_set,
    embed_training_set,
    work_bags,
)
from tropeml.model.decision import ALPHA, DEFAULT_ALPHA, EVIDENCE_RANK, fit_null
from tropeml.model.evaluation import EvalReport
from tropeml.model.mil import Rows, WorkCheck, fit_mil, stack, work_checks
from tropeml.model.persistence import model_lock, save_model
from tropeml.model.protocols import (
    PROTOCOLS,
    Prepared,
    default_encoder,
    evaluate,
    prepare,
    run_protocol,
)
from tropeml.model.screen import Screen, build_screen
from tropeml.model.shipped import WORK_CALIBRATOR
from tropeml.text.passages import count_words


@dataclass
class TrainResult:
    """What :func:`train` built.

    Attributes:
        folder: The model folder written (``None`` when not saved).
        classifier: The fitted classifier.
        report: Leave-one-fic-out evaluation (``None`` without seed fics or ``evaluate``).
        training_set: Every labelled row used, of every kind.
        embedded: Texts embedded anew.
        reused: Texts whose embeddings came from the cache.
        exemplar_report: Grouped k-fold evaluation over the exemplars.
        works: Works labelled at work level (author tags, or given in code).
        untagged: Fics named as sources whose author tags map to no trope (unused).
        skipped: One-line errors of fics that could not be read (unused).
        n_answers: Yes/no answers used.
        work_checks: Author-tagged works held out one at a time.
        prepared: The embedded base data folder and prototypes.
    """

    folder: Path | None
    classifier: TropeClassifier
    report: EvalReport | None
    training_set: TrainingSet
    embedded: int
    reused: int
    exemplar_report: EvalReport | None = None
    works: list[LabelledWork] = field(default_factory=list)
    untagged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    n_answers: int = 0
    work_checks: list[WorkCheck] = field(default_factory=list)
    prepared: Prepared | None = None


def guard_default(out: Path, root: Path, allow: bool) -> None:
    """Refuse to write the shipped default model (or ``root/models/default``) unless allowed."""
    targets = {default_model_dir().resolve(), (root / "models" / "default").resolve()}
    if out.resolve() in targets and not allow:
        raise TropemlError(
            f"{out}: refusing to overwrite the shipped default model; choose another --out "
            "(or pass --overwrite-default)"
        )


def train(
    data: str | Path | Sequence[str | Path] = "data",
    root: str | Path | None = None,
    out: str | Path | None = "models/trained",
    encoder: Any = None,
    cache: bool | str | Path = True,
    name: str | None = None,
    *,
    data_dir: str | Path | None = None,
    works: Sequence[LabelledWork] = (),
    mil_top_k: int = 1,
    mil_rounds: int = 2,
    max_eval_works: int = 20,
    C: float = 1.0,
    top_k: int = 2,
    overwrite_default: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    evaluate: bool = True,
    screen: bool = False,
    lock_timeout: float = -1,
    on_lock_wait: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train on every source named, evaluate, and save a model folder.

    Args:
        data: Sources (see :func:`tropeml.io.sources.collect_sources`): data folders, label
            and answers files, fic files and folders. The first data folder is the base
            (its ``tropes.toml`` defines the tags).
        root: Folder that span labels' file paths are relative to (default: the base data
            folder's parent, the project root).
        out: Model folder to write (``None``: do not save). The shipped default is refused
            unless ``overwrite_default``.
        encoder: Encoder to use (default: :func:`default_encoder`).
        cache: Embedding cache (``True``: the default file; a path; ``False``: none).
        name: The model's name (default: the folder's name).
        data_dir: The base data folder, if not the first data folder in ``data`` (default
            ``data``).
        works: More labelled works, given in code.
        mil_top_k: Passages made positive per author tag and work.
        mil_rounds: Rounds of choosing those passages with the model trained so far.
        max_eval_works: Most labelled works held out, one at a time, for the model card.
        C: Inverse regularisation strength of the per-tag logistic regressions.
        top_k: Passages pooled into work scores.
        overwrite_default: Allow ``out`` to be the shipped default model.
        max_bytes: Largest fic read.
        evaluate: Cross-validate for the model card (``False``: faster, the card says so).
        screen: Also distil a screen into the folder (:mod:`tropeml.model.screen`; needs
            torch and a sentence-transformers encoder), for ``tropeml tag --screen``.
        lock_timeout: Seconds to wait while another process writes ``out`` (``-1``: no
            limit). The whole run holds ``out``'s lock, so concurrent trains take turns.
        on_lock_wait: Called with a one-line message when this run has to wait.

    Returns:
        The model, its training set, embedding counts and evaluations.

    Raises:
        TropemlError: On bad data, when ``out`` is the shipped default, or if ``out`` stays
            locked past ``lock_timeout``.
    """
    paths = [Path(data)] if isinstance(data, str | Path) else [Path(p) for p in data]
    for path in paths:
        if not path.exists():
            raise TropemlError(f"{path}: no such data folder (with tropes.toml), label file or fic")
    base = Path(data_dir) if data_dir is not None else next(filter(is_data_dir, paths), None)
    base = base if base is not None else Path("data")
    if not is_data_dir(base):
        raise TropemlError(f"{base}: no tropes.toml here; name the data folder with --data")
    root = Path(root) if root is not None else base.resolve().parent
    if out is not None:
        guard_default(Path(out), root, overwrite_default)
    taxonomy = Taxonomy.load(base / "tropes.toml")
    for lw in works:
        taxonomy.check_ids(list(lw.tags), f"{lw.work.source}: work labels")
    sources = collect_sources([base, *(p for p in paths if p != base)], taxonomy, max_bytes)
    options = _Options(
        encoder,
        cache,
        name,
        list(works),
        mil_top_k,
        mil_rounds,
        max_eval_works,
        C,
        top_k,
        evaluate,
        screen,
    )
    if out is None:
        return _train(base, root, None, sources, options)
    with model_lock(out, lock_timeout, on_lock_wait):
        return _train(base, root, Path(out), sources, options)


MIN_BACKGROUND = 200
"""Fewest background passages for a null (fewer: work scores stay the mean of top-k)."""


def chance_rollup(
    model: TropeClassifier,
    folder: Path,
    encoder: Any,
    count_tokens: Any,
    max_tokens: int,
    top_k: int,
) -> dict[str, Any] | None:
    """The ``rollup`` config of a model whose work scores beat chance (:mod:`~.decision`).

    The trained model scores the background prose in ``folder``; each tag's null is the
    median and scale of those passage logits. ``None`` without enough background.
    """
    X, texts, files = background_rows(folder, encoder, count_tokens, max_tokens)
    if len(texts) < MIN_BACKGROUND:
        return None
    mu, sigma = fit_null(model.predict_proba(X, texts))
    tags = [str(t) for t in model.classes_]
    return {
        "method": "chance",
        "k": EVIDENCE_RANK,
        "alpha": {t: ALPHA.get(t, DEFAULT_ALPHA) for t in tags},
        "null": {
            "mu": {t: round(float(m), 6) for t, m in zip(tags, mu, strict=True)},
            "sigma": {t: round(float(v), 6) for t, v in zip(tags, sigma, strict=True)},
            "passages": len(texts),
            "files": files,
        },
        "calibrator": WORK_CALIBRATOR.for_tags(tags).to_config(),
        "top_k": top_k,
        "max_evidence": 3,
    }


def _screen(
    base: Path, prepared: Prepared, model: Any, texts: list[str], X: NDArray[np.float32]
) -> Screen:
    """The screen for ``model``: fitted on background prose plus the training rows given."""
    enc, cached = prepared.encoder, prepared.cached
    count_tokens = getattr(enc, "count_tokens", count_words)
    max_tokens = int(getattr(enc, "max_tokens", 254))
    X_bg, bg_texts, _ = background_rows(base / "background", cached, count_tokens, max_tokens)
    return build_screen(enc, model, [*bg_texts, *texts], np.concatenate([X_bg, X]))


def retrain(extra: Sequence[str | Path] = (), **kwargs: Any) -> TrainResult:
    """Same as :func:`train` (kept from tropeml 0.1): ``extra`` are the sources."""
    return train(list(extra), **kwargs)


@dataclass
class _Options:
    encoder: Any
    cache: bool | str | Path
    name: str | None
    works: list[LabelledWork]
    mil_top_k: int
    mil_rounds: int
    max_eval_works: int
    C: float
    top_k: int
    evaluate: bool
    screen: bool


def _train(base: Path, root: Path, out: Path | None, sources: Sources, o: _Options) -> TrainResult:
    top_k, evaluate = o.top_k, o.evaluate
    prepared = prepare(base, root, o.encoder, o.cache)
    taxonomy, enc, cached, ts = (
        prepared.taxonomy,
        prepared.encoder,
        prepared.cached,
        prepared.training_set,
    )
    count_tokens = getattr(enc, "count_tokens", count_words)
    max_tokens = int(getattr(enc, "max_tokens", 254))
    all_works = [*sources.works, *o.works]
    extended = bool(
        sources.span_files or sources.exemplar_files or sources.answer_files or all_works
    )
    chunks, groups, kinds = list(ts.chunks), list(ts.groups), list(ts.kinds)
    blocks, Xs, files = [ts.Y], [prepared.X], list(ts.files)
    digest = hashlib.sha256(ts.data_hash.encode())
    if sources.span_files or sources.exemplar_files:
        spans = build_training_set(
            taxonomy, sources.span_files, sources.exemplar_files, root, count_tokens, max_tokens
        )
        Xs.append(embed_training_set(spans, cached))
        blocks.append(spans.Y)
        chunks, groups, kinds = chunks + spans.chunks, groups + spans.groups, kinds + spans.kinds
        digest.update(spans.data_hash.encode())
        files += spans.files
    answers = answer_rows(sources.answer_files, taxonomy)
    for path, sha in zip(sources.answer_files, answers.file_hashes, strict=True):
        digest.update(sha.encode())
        files.append(str(path))
    if answers.chunks:
        Xs.append(np.asarray(cached.embed([c[0] for c in answers.chunks]), dtype=np.float32))
        blocks.append(answers.Y)
        chunks, groups = chunks + answers.chunks, groups + answers.groups
        kinds += [ANSWER] * len(answers.chunks)
    bags = work_bags(all_works, taxonomy, cached, count_tokens, max_tokens)
    for bag in bags:
        digest.update(bag.text.encode())
        files.append(bag.group)

    base_rows = Rows(
        np.concatenate(Xs).astype(np.float32),
        np.concatenate(blocks).astype(np.int8),
        groups[:],
        [" ".join(c) for c in chunks],
    )
    clf = TropeClassifier(tags=taxonomy.ids, prototypes=prepared.prototypes, C=o.C)
    model, selected = fit_mil(clf, base_rows, bags, o.mil_rounds, o.mil_top_k)
    rows = stack(base_rows, bags, selected)
    for bag, Y_bag in zip(bags, selected, strict=True):
        keep = (Y_bag != UNKNOWN).any(axis=1)
        chunks += [[c] for c, k in zip(bag.chunks, keep, strict=True) if k]
        groups += [bag.group] * int(keep.sum())
        kinds += [WORK] * int(keep.sum())
    combined = TrainingSet(
        chunks,
        rows.Y,
        groups,
        kinds,
        taxonomy.ids,
        digest.hexdigest() if extended else ts.data_hash,
        files,
    )
    prepared_all = Prepared(
        taxonomy, prepared.taxonomy_path, combined, rows.X, prepared.prototypes, enc, cached
    )
    report = run_protocol(prepared_all, clf, "works", top_k) if evaluate else None
    exemplar_report = (
        run_protocol(prepared_all, clf, "exemplars", top_k, repeats=1) if evaluate else None
    )
    checks = (
        work_checks(
            clf, base_rows, bags, taxonomy.ids, top_k, o.max_eval_works, o.mil_rounds, o.mil_top_k
        )
        if evaluate
        else []
    )
    rollup = chance_rollup(model, base / "background", cached, count_tokens, max_tokens, top_k)
    screen = None
    if o.screen:
        if rollup is None:
            raise TropemlError("a screen needs background prose (data/background) for the null")
        screen = _screen(base, prepared, model, base_rows.texts, base_rows.X)
    folder = None
    if out is not None:
        model_name = o.name or out.name
        config = model_config(
            model_name, model, combined, enc, top_k, report, exemplar_report, rollup
        )
        card = model_card(model_name, taxonomy, combined, model, report, config, exemplar_report)
        if extended:
            n_answers = answers.n_answers
            config["training_data"]["added"] = added_summary(
                sources, all_works, n_answers, combined, checks
            )
            card += added_card(sources, all_works, n_answers, combined, checks)
        folder = save_model(out, model, config, prepared.taxonomy_path, card, screen)
    return TrainResult(
        folder,
        model,
        report,
        combined,
        int(getattr(cached, "misses", len(combined))),
        int(getattr(cached, "hits", 0)),
        exemplar_report,
        all_works,
        sources.untagged,
        sources.skipped,
        answers.n_answers,
        checks,
        prepared_all,
    )
