"""Retrain on more than ``data/``: AO3 downloads with author tags, answer files, span labels.

Sources combine with the base data folder (taxonomy, span labels of the seeds, exemplars):

- **Works with author tags** (AO3 HTML/EPUB downloads, saved work pages, Work Header text):
  work-level labels, used multiple-instance style. A work tagged with a trope must show it in
  at least one passage, so its ``mil_top_k`` best-scoring passages for that trope (scored by
  the model trained so far) become positives; this is redone ``mil_rounds`` times. Its other
  passages, and every trope the author did not tag, are unknown (``-1``), never negative.
- **Answer files** (written by ``tropeml label``): yes/no per passage and tag; "skip" is
  unknown.
- **Span-label files** (the ``data/labels`` format).

Every text is embedded through the embedding cache, so a second run embeds nothing new. The
model folder is written atomically, with a card that counts the added works and answers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.base import clone

from tropeml.ao3 import map_author_tags
from tropeml.classifier import UNKNOWN, TropeClassifier
from tropeml.errors import TropemlError
from tropeml.labels import QUOTE_CHARS, _read_jsonl
from tropeml.masking import masker, work_names
from tropeml.passages import count_words, split_passages
from tropeml.persistence import save_model
from tropeml.readers import DEFAULT_MAX_BYTES, expand_paths, read_work
from tropeml.resources import default_model_dir
from tropeml.rollup import pool_scores
from tropeml.taxonomy import Taxonomy
from tropeml.training import (
    SEED,
    Prepared,
    TrainingSet,
    _config,
    build_training_set,
    embed_training_set,
    model_card,
    prepare,
    run_protocol,
)
from tropeml.types import Work

WORK = "work"
"""Row kind: a passage of a work labelled by its author's tags (multiple-instance)."""
ANSWER = "answer"
"""Row kind: a passage answered yes/no in ``tropeml label``."""
ANSWERS = ("yes", "no", "skip")


@dataclass(frozen=True)
class LabelledWork:
    """A work with work-level labels: tropes it shows somewhere (e.g. its author's tags).

    Attributes:
        work: The work.
        tags: Tag ids the work is known to show.
        unmapped: Author tags that map to no trope (reported, not used).
    """

    work: Work
    tags: tuple[str, ...]
    unmapped: tuple[str, ...] = ()


@dataclass(frozen=True)
class Answer:
    """One answer from ``tropeml label``: does the span show the tag?"""

    file: str
    start: int
    end: int
    tag: str
    answer: str
    where: str = ""

    @property
    def key(self) -> tuple[str, int, int, str]:
        """Identify the question (file, span, tag), for resuming."""
        return (self.file, self.start, self.end, self.tag)


def answer_record(file: str, text: str, start: int, end: int, tag: str, answer: str) -> str:
    """Return one answer as a JSON line (the ``tropeml label`` answers-file format)."""
    if answer not in ANSWERS:
        raise ValueError(f"answer must be one of {ANSWERS}")
    row = {
        "file": file,
        "start": start,
        "end": end,
        "quote": text[start : start + QUOTE_CHARS],
        "tag": tag,
        "answer": answer,
    }
    return json.dumps(row, ensure_ascii=False)


def is_answer_file(path: str | Path) -> bool:
    """Return whether a JSONL label file holds answers (rows with ``"answer"``)."""
    rows = _read_jsonl(Path(path), skip_torn=True)
    return bool(rows) and "answer" in rows[0][1]


def load_answers(
    path: str | Path, taxonomy: Taxonomy | None = None, check: bool = True
) -> list[Answer]:
    """Load an answers file; a later answer to the same question replaces an earlier one.

    A line torn by a crash mid-write is ignored; any other bad line is an error.

    Args:
        path: The JSONL answers file (missing: no answers).
        taxonomy: If given, tags must be its ids.
        check: Also check that each span's quote still matches its file.

    Raises:
        TropemlError: ``path:line: reason`` for bad rows.
    """
    path = Path(path)
    if not path.exists():
        return []
    rows = _read_jsonl(path, skip_torn=True)
    latest: dict[tuple[str, int, int, str], Answer] = {}
    texts: dict[str, str] = {}
    for lineno, obj in rows:
        where = f"{path}:{lineno}"
        file, start, end, tag, answer = (
            obj.get(k) for k in ("file", "start", "end", "tag", "answer")
        )
        if not isinstance(file, str) or not file:
            raise TropemlError(f"{where}: 'file' must be a path string")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
            raise TropemlError(f"{where}: 'start' and 'end' must be integers")
        assert isinstance(start, int) and isinstance(end, int)
        if not isinstance(tag, str) or (taxonomy is not None and tag not in taxonomy):
            raise TropemlError(f"{where}: unknown tag {tag!r}")
        if answer not in ANSWERS:
            raise TropemlError(f"{where}: 'answer' must be one of {', '.join(ANSWERS)}")
        if check:
            if file not in texts:
                try:
                    texts[file] = read_work(file).text
                except TropemlError as exc:
                    raise TropemlError(f"{where}: {exc}") from None
            quote = obj.get("quote")
            text = texts[file]
            if not 0 <= start < end <= len(text) or text[start : start + QUOTE_CHARS] != quote:
                raise TropemlError(f"{where}: span {start}-{end} no longer matches {file}")
        found = Answer(file, start, end, tag, str(answer), where)
        latest[found.key] = found
    return list(latest.values())


@dataclass
class Sources:
    """What a list of ``--data`` paths holds, sorted by kind."""

    data_dir: Path | None = None
    span_files: list[Path] = field(default_factory=list)
    exemplar_files: list[Path] = field(default_factory=list)
    answer_files: list[Path] = field(default_factory=list)
    works: list[LabelledWork] = field(default_factory=list)
    untagged: list[str] = field(default_factory=list)


def collect_sources(
    paths: Sequence[str | Path],
    taxonomy: Taxonomy,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Sources:
    """Sort paths into a data folder, label files and works with author tags.

    A folder with ``tropes.toml`` is a data folder: the first one is the base (``data_dir``),
    a later one adds its ``labels/*.jsonl`` and ``exemplars/*.jsonl``. A ``.jsonl`` file is an
    answers file or a span-label file (told apart by its rows). Anything else is read as fics;
    those with author tags that map to ``taxonomy`` become :class:`LabelledWork`.

    Args:
        paths: Data folders, label files, fic files and folders.
        taxonomy: Maps author tags to ids.
        max_bytes: Largest fic read.
    """
    out = Sources()
    for raw in paths:
        path = Path(raw)
        if is_data_dir(path):
            if out.data_dir is None:
                out.data_dir = path
                continue
            labels = sorted((path / "labels").glob("*.jsonl"))
            out.exemplar_files += sorted((path / "exemplars").glob("*.jsonl"))
        elif path.suffix.lower() == ".jsonl" and path.is_file():
            labels = [path]
        else:
            for source in expand_paths([path]):
                work = read_work(source, max_bytes=max_bytes)
                mapped = map_author_tags(work.author_tags, taxonomy)
                if mapped.ids:
                    out.works.append(LabelledWork(work, tuple(mapped.ids), mapped.unmapped))
                else:
                    out.untagged.append(source)
            continue
        for label_file in labels:
            (out.answer_files if is_answer_file(label_file) else out.span_files).append(label_file)
    return out


def is_data_dir(path: Path) -> bool:
    """Return whether ``path`` is a data folder (it holds ``tropes.toml``)."""
    return path.is_dir() and (path / "tropes.toml").is_file()


def mil_targets(scores: NDArray[Any], positive: Sequence[int], top_k: int = 1) -> NDArray[np.int8]:
    """Multiple-instance targets for one work known to show the tags in ``positive``.

    Args:
        scores: The work's passage scores, shape ``(n, T)``.
        positive: Columns of the tags the work shows.
        top_k: Passages made positive per tag (its best-scoring ones).

    Returns:
        Shape ``(n, T)``: 1 for each positive tag's ``top_k`` best passages, else -1.
    """
    Y = np.full(scores.shape, UNKNOWN, dtype=np.int8)
    k = max(1, min(top_k, scores.shape[0]))
    for j in positive:
        Y[np.argsort(-scores[:, j], kind="stable")[:k], j] = 1
    return Y


@dataclass
class WorkRows:
    """One labelled work's passages, embedded."""

    group: str
    X: NDArray[np.float32]
    chunks: list[str]
    positive: list[int]


@dataclass
class WorkCheck:
    """A labelled work held out: its work tags against the model's."""

    work: str
    tags: list[str]
    predicted: list[str]

    @property
    def recovered(self) -> list[str]:
        """Return the work's tags the held-out model also predicts."""
        return [t for t in self.tags if t in self.predicted]


@dataclass
class RetrainResult:
    """What :func:`retrain` built."""

    folder: Path | None
    classifier: TropeClassifier
    training_set: TrainingSet
    embedded: int
    reused: int
    works: list[LabelledWork]
    untagged: list[str]
    n_answers: int
    work_checks: list[WorkCheck]
    prepared: Prepared
    report: Any = None
    exemplar_report: Any = None


def guard_default(out: Path, root: Path, allow: bool) -> None:
    """Refuse to write the shipped default model (or ``root/models/default``) unless allowed."""
    targets = {default_model_dir().resolve(), (root / "models" / "default").resolve()}
    if out.resolve() in targets and not allow:
        raise TropemlError(
            f"{out}: refusing to overwrite the shipped default model; choose another --out "
            "(or pass --overwrite-default)"
        )


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def retrain(
    extra: Sequence[str | Path] = (),
    data_dir: str | Path | None = None,
    root: str | Path = ".",
    out: str | Path | None = "models/trained",
    encoder: Any = None,
    cache: bool | str | Path = True,
    name: str | None = None,
    works: Sequence[LabelledWork] = (),
    mil_top_k: int = 1,
    mil_rounds: int = 2,
    max_eval_works: int = 20,
    C: float = 1.0,
    top_k: int = 2,
    overwrite_default: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    evaluate: bool = True,
) -> RetrainResult:
    """Train on the base data folder plus extra works, answers and span labels; save a model.

    Args:
        extra: Paths for :func:`collect_sources` (a data folder among them becomes the base
            when ``data_dir`` is not given).
        data_dir: The base data folder (taxonomy, labels, exemplars); default: the first data
            folder in ``extra``, else ``data``.
        root: Folder that span labels' file paths are relative to.
        out: Model folder to write (``None``: do not save). The shipped default is refused
            unless ``overwrite_default``.
        encoder: Encoder to use (default: all-MiniLM-L6-v2).
        cache: Embedding cache (``True``: the default file; a path; ``False``: none).
        name: The model's name (default: the folder's name).
        works: More labelled works, given in code.
        mil_top_k: Passages made positive per author tag and work.
        mil_rounds: Rounds of choosing those passages with the model trained so far.
        max_eval_works: Most labelled works held out, one at a time, for the model card.
        C: Inverse regularisation strength.
        top_k: Passages pooled into work scores.
        overwrite_default: Allow ``out`` to be the shipped default model.
        max_bytes: Largest fic read.
        evaluate: Cross-validate for the model card (``False``: faster, the card says so).

    Returns:
        The model, its training set, embedding counts (texts embedded anew and reused from the
        cache) and evaluations.

    Raises:
        TropemlError: On bad input, or when ``out`` is the shipped default.
    """
    root = Path(root)
    if out is not None:
        guard_default(Path(out), root, overwrite_default)
    for path in map(Path, extra):
        if not path.exists():
            raise TropemlError(f"{path}: no such data folder (with tropes.toml), label file or fic")
    if data_dir is None:
        data_dir = next((Path(p) for p in extra if is_data_dir(Path(p))), Path("data"))
    base = Path(data_dir)
    if not is_data_dir(base):
        raise TropemlError(f"{base}: no tropes.toml here; name the data folder with --data")
    taxonomy = Taxonomy.load(base / "tropes.toml")
    sources = collect_sources([p for p in extra if Path(p) != base], taxonomy, max_bytes)
    if sources.data_dir is not None:  # a second data folder: its labels and exemplars count
        sources = collect_sources(
            [base, *(p for p in extra if Path(p) != base)], taxonomy, max_bytes
        )
    all_works = [*sources.works, *works]
    for lw in works:
        taxonomy.check_ids(list(lw.tags), f"{lw.work.source}: work labels")

    prepared = prepare(base, root, encoder, cache)
    enc, cached = prepared.encoder, prepared.cached
    count_tokens = getattr(enc, "count_tokens", count_words)
    max_tokens = int(getattr(enc, "max_tokens", 254))
    tags = taxonomy.ids
    ts = prepared.training_set
    chunks, groups, kinds = list(ts.chunks), list(ts.groups), list(ts.kinds)
    blocks, Xs = [ts.Y], [prepared.X]
    digest = hashlib.sha256(ts.data_hash.encode())
    files = list(ts.files)

    if sources.span_files or sources.exemplar_files:
        spans = build_training_set(
            taxonomy, sources.span_files, sources.exemplar_files, root, count_tokens, max_tokens
        )
        Xs.append(embed_training_set(spans, cached))
        blocks.append(spans.Y)
        chunks += spans.chunks
        groups += spans.groups
        kinds += spans.kinds
        digest.update(spans.data_hash.encode())
        files += spans.files

    n_answers = 0
    for path in sources.answer_files:
        digest.update(_file_hash(path).encode())
        files.append(str(path))
        rows: dict[tuple[str, int, int], dict[str, int]] = {}
        for a in load_answers(path, taxonomy):
            if a.answer != "skip":
                rows.setdefault((a.file, a.start, a.end), {})[a.tag] = int(a.answer == "yes")
                n_answers += 1
        texts, names = [], []
        read: dict[str, tuple[str, Callable[[str], str]]] = {}  # each answered file once
        for (file, start, end), answers in rows.items():
            if file not in read:
                work = read_work(file, max_bytes=max_bytes)
                read[file] = (work.text, masker(work_names(work)))
            text, mask_work = read[file]
            texts.append(mask_work(text[start:end]))
            names.append(file)
            blocks.append(np.array([[answers.get(t, UNKNOWN) for t in tags]], dtype=np.int8))
        if texts:
            Xs.append(np.asarray(cached.embed(texts), dtype=np.float32))
            chunks += [[t] for t in texts]
            groups += names
            kinds += [ANSWER] * len(texts)

    col = {t: j for j, t in enumerate(tags)}
    work_rows: list[WorkRows] = []
    for lw in all_works:
        passages = split_passages(lw.work, count_tokens, max_tokens)
        if not passages:
            continue
        mask_work = masker(work_names(lw.work))
        texts = [mask_work(p.text) for p in passages]
        digest.update(lw.work.text.encode())
        files.append(lw.work.source)
        X_w = np.asarray(cached.embed(texts), dtype=np.float32)
        work_rows.append(WorkRows(lw.work.source, X_w, texts, [col[t] for t in lw.tags]))

    X_base = np.concatenate(Xs).astype(np.float32)
    Y_base = np.concatenate(blocks).astype(np.int8)
    texts_base = [" ".join(c) for c in chunks]
    clf = TropeClassifier(tags=tags, prototypes=prepared.prototypes, C=C)

    def fit_with(selected: list[NDArray[np.int8]], rows: list[WorkRows]) -> TropeClassifier:
        X, Y, g, t = _stack(X_base, Y_base, groups, rows, selected, texts_base)
        fitted: TropeClassifier = clone(clf).fit(X, Y, groups=g, texts=t)
        return fitted

    model = clone(clf).fit(X_base, Y_base, groups=groups, texts=texts_base)
    selected: list[NDArray[np.int8]] = []
    for _ in range(max(1, mil_rounds) if work_rows else 0):
        selected = [
            mil_targets(model.predict_proba(w.X, w.chunks), w.positive, mil_top_k)
            for w in work_rows
        ]
        model = fit_with(selected, work_rows)

    # The combined training set (work rows: only the chosen passages carry a label).
    for w, Y_w in zip(work_rows, selected, strict=True):
        keep = (Y_w != UNKNOWN).any(axis=1)
        chunks += [[c] for c, k in zip(w.chunks, keep, strict=True) if k]
        groups += [w.group] * int(keep.sum())
        kinds += [WORK] * int(keep.sum())
    X_all, Y_all, _, _ = _stack(X_base, Y_base, [], work_rows, selected, texts_base)
    combined = TrainingSet(
        chunks,
        Y_all,
        groups,
        kinds,
        tags,
        digest.hexdigest(),
        files,
    )
    prepared_all = Prepared(
        taxonomy, prepared.taxonomy_path, combined, X_all, prepared.prototypes, enc, cached
    )
    report = run_protocol(prepared_all, clf, "works", top_k) if evaluate else None
    exemplar_report = run_protocol(prepared_all, clf, "exemplars", top_k) if evaluate else None
    checks = (
        []
        if not evaluate
        else _work_checks(
            X_base,
            Y_base,
            texts_base,
            groups[: len(Y_base)],
            work_rows,
            selected,
            clf,
            tags,
            top_k,
            max_eval_works,
        )
    )

    folder = None
    if out is not None:
        out = Path(out)
        model_name = name or out.name
        config = _config(model_name, model, combined, enc, top_k, report, exemplar_report)
        config["training_data"]["added"] = _added_summary(
            sources, all_works, n_answers, combined, checks
        )
        card = model_card(
            model_name, taxonomy, combined, model, report, config, exemplar_report
        ) + _added_card(sources, all_works, n_answers, combined, checks)
        folder = save_model(out, model, config, prepared.taxonomy_path, card)
    return RetrainResult(
        folder,
        model,
        combined,
        int(getattr(cached, "misses", len(combined))),
        int(getattr(cached, "hits", 0)),
        all_works,
        sources.untagged,
        n_answers,
        checks,
        prepared_all,
        report,
        exemplar_report,
    )


def _stack(
    X_base: NDArray[np.float32],
    Y_base: NDArray[np.int8],
    groups: list[str],
    rows: list[WorkRows],
    selected: list[NDArray[np.int8]],
    texts_base: list[str],
) -> tuple[NDArray[np.float32], NDArray[np.int8], list[str], list[str]]:
    """The base rows plus each work's labelled passages: X, Y, groups and texts."""
    Xs, Ys, g, texts = [X_base], [Y_base], list(groups), list(texts_base)
    for w, Y_w in zip(rows, selected, strict=True):
        keep = (Y_w != UNKNOWN).any(axis=1)
        Xs.append(w.X[keep])
        Ys.append(Y_w[keep])
        g += [w.group] * int(keep.sum())
        texts += [c for c, k in zip(w.chunks, keep, strict=True) if k]
    return np.concatenate(Xs).astype(np.float32), np.concatenate(Ys).astype(np.int8), g, texts


def _work_checks(
    X_base: NDArray[np.float32],
    Y_base: NDArray[np.int8],
    texts_base: list[str],
    groups: list[str],
    rows: list[WorkRows],
    selected: list[NDArray[np.int8]],
    clf: TropeClassifier,
    tags: list[str],
    top_k: int,
    limit: int,
) -> list[WorkCheck]:
    """Hold each labelled work out (up to ``limit``) and compare its tags with the model's."""
    checks = []
    for i, w in enumerate(rows[:limit]):
        others = [r for r_i, r in enumerate(rows) if r_i != i]
        sel = [s for s_i, s in enumerate(selected) if s_i != i]
        X, Y, g, t = _stack(X_base, Y_base, groups, others, sel, texts_base)
        model = clone(clf).fit(X, Y, groups=g, texts=t)
        pooled = pool_scores(model.predict_proba(w.X, w.chunks), top_k)
        predicted = [t for j, t in enumerate(tags) if pooled[j] >= model.thresholds_[j]]
        checks.append(WorkCheck(w.group, [tags[j] for j in w.positive], predicted))
    return checks


def _added_summary(
    sources: Sources,
    works: list[LabelledWork],
    n_answers: int,
    ts: TrainingSet,
    checks: list[WorkCheck],
) -> dict[str, Any]:
    per_tag: dict[str, int] = {}
    for lw in works:
        for t in lw.tags:
            per_tag[t] = per_tag.get(t, 0) + 1
    return {
        "works": [lw.work.source for lw in works],
        "n_works": len(works),
        "works_without_author_tags": sources.untagged,
        "works_per_tag": per_tag,
        "unmapped_author_tags": sorted({t for lw in works for t in lw.unmapped}),
        "answer_files": [str(p) for p in sources.answer_files],
        "n_answers": n_answers,
        "span_label_files": [str(p) for p in sources.span_files],
        "positive_rows": {kind: ts.counts(kind) for kind in (SEED, ANSWER, WORK)},
        "held_out_works": [
            {"work": c.work, "tags": c.tags, "predicted": c.predicted} for c in checks
        ],
    }


def _added_card(
    sources: Sources,
    works: list[LabelledWork],
    n_answers: int,
    ts: TrainingSet,
    checks: list[WorkCheck],
) -> str:
    if not works and not n_answers and not sources.span_files:
        return ""
    per_work: dict[str, int] = {}
    for lw in works:
        for t in lw.tags:
            per_work[t] = per_work.get(t, 0) + 1
    answers, work_pos = ts.counts(ANSWER), ts.counts(WORK)
    answer_neg = {
        t: int((ts.Y[[k == ANSWER for k in ts.kinds], j] == 0).sum()) for j, t in enumerate(ts.tags)
    }
    rows = "\n".join(
        f"| `{t}` | {per_work.get(t, 0)} | {work_pos[t]} | {answers[t]} | {answer_neg[t]} |"
        for t in ts.tags
    )
    unmapped = sorted({t for lw in works for t in lw.unmapped})
    lines = [
        "\n## Added data\n",
        f"- {len(works)} works with author tags (multiple-instance: for each author tag,",
        "  the work's best-scoring passage is a positive; untagged tropes are unknown).",
        f"- {len(sources.untagged)} works without author tags that map to the taxonomy (unused).",
        f"- {n_answers} yes/no answers from {len(sources.answer_files)} answers file(s).",
        f"- {len(sources.span_files)} extra span-label file(s).",
        f"- Author tags not in the taxonomy: {', '.join(unmapped) if unmapped else 'none'}.",
        "",
        "| id | works tagged by their author | positive work passages | yes answers | no answers |",
        "|---|---:|---:|---:|---:|",
        rows,
    ]
    if checks:
        found = sum(len(c.recovered) for c in checks)
        total = sum(len(c.tags) for c in checks)
        lines += [
            "\n## Author-tagged works, held out one at a time\n",
            "Each work is left out of training and tagged; its author's tags are compared",
            "with the model's (tags the author did not write are not counted as errors).",
            f"Author tags recovered: {found} of {total}.\n",
            "| work | author tags | recovered | model's other tags |",
            "|---|---|---|---|",
        ]
        for c in checks:
            others = [t for t in c.predicted if t not in c.tags]
            lines.append(
                f"| {Path(c.work).name} | {', '.join(c.tags)} | "
                f"{', '.join(c.recovered) or '-'} | {', '.join(others) or '-'} |"
            )
    return "\n".join(lines) + "\n"
