"""Training rows: sources (see :mod:`tropeml.io.sources`) split, masked and embedded.

Every kind of label becomes rows of one :class:`TrainingSet`, with a target per tag of 1,
0 or -1 (unknown):

- ``seed``: passages of a fic with span labels;
- ``exemplar``: written passages;
- ``answer``: passages answered yes/no in ``tropeml label``;
- ``judged``: passages of whole works judged per tag (``data/judged/``): each is negative
  for every tag its work is judged not to show anywhere, unknown for the rest;
- ``work``: passages of fics labelled only at work level (author tags). They start as
  :class:`WorkBag` (every passage unknown) and become rows once multiple-instance selection
  (:mod:`tropeml.model.mil`) has chosen their positives.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tropeml.core.errors import TropemlError
from tropeml.core.taxonomy import Taxonomy
from tropeml.core.types import UNKNOWN
from tropeml.io.devset import load_dev_works
from tropeml.io.labels import load_exemplars, load_span_labels, span_targets
from tropeml.io.readers import DEFAULT_MAX_BYTES, read_work
from tropeml.io.sources import LabelledWork, load_answers
from tropeml.model.head import unit_rows
from tropeml.text.masking import find_names, masker, work_names
from tropeml.text.passages import count_words, split_passages

SEED = "seed"
EXEMPLAR = "exemplar"
ANSWER = "answer"
"""Row kind: a passage answered yes/no in ``tropeml label``."""
WORK = "work"
"""Row kind: a passage of a work labelled by its author's tags (multiple-instance)."""
JUDGED = "judged"
"""Row kind: a passage of a whole work judged per tag (negatives only)."""


@dataclass
class TrainingSet:
    """Labelled training rows.

    Each row is one passage of a labelled fic (kind ``"seed"``), or one hand-written
    exemplar (kind ``"exemplar"``). A row's text may be several chunks (an exemplar longer
    than the encoder's window); its embedding is their normalised mean.

    Attributes:
        chunks: Texts per row.
        Y: Labels, shape ``(n, T)``: 1, 0, or -1 unknown.
        groups: Work (or exemplar file) per row.
        kinds: ``"seed"`` or ``"exemplar"`` per row.
        tags: Column order of ``Y``.
        data_hash: SHA-256 over every input file.
    """

    chunks: list[list[str]]
    Y: NDArray[np.int8]
    groups: list[str]
    kinds: list[str]
    tags: list[str]
    data_hash: str
    files: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.chunks)

    @property
    def texts(self) -> list[str]:
        """Each row's text (its chunks joined), for the classifier's lexical view."""
        return [" ".join(row) for row in self.chunks]

    def counts(self, kind: str | None = None) -> dict[str, int]:
        """Return positive rows per tag (optionally of one kind)."""
        rows = [i for i, k in enumerate(self.kinds) if kind is None or k == kind]
        return {t: int((self.Y[rows, j] == 1).sum()) for j, t in enumerate(self.tags)}


def build_training_set(
    taxonomy: Taxonomy,
    label_files: Sequence[Path],
    exemplar_files: Sequence[Path] = (),
    root: str | Path = ".",
    count_tokens: Any = count_words,
    max_tokens: int = 254,
    mask_names: bool = True,
    judged_dir: str | Path | None = None,
) -> TrainingSet:
    """Turn span labels, exemplars and judged whole works into training rows.

    Args:
        taxonomy: Defines the tags (columns).
        label_files: Span-label JSONL files.
        exemplar_files: Exemplar JSONL files.
        root: Folder that span labels' ``file`` paths are relative to.
        count_tokens: The encoder's token counter (for splitting).
        max_tokens: The encoder's token budget.
        mask_names: Replace character and place names with stand-ins (see
            :mod:`tropeml.text.masking`) in the text that gets embedded.
        judged_dir: Folder of judged whole works (``works/*.jsonl``, as ``data/dev``):
            every passage becomes a row, grouped by its book (:func:`judged_targets`).
    """
    root = Path(root)
    tags = taxonomy.ids
    chunks: list[list[str]] = []
    blocks: list[NDArray[np.int8]] = []
    groups: list[str] = []
    kinds: list[str] = []
    digest = hashlib.sha256()
    files: list[str] = []
    for path in sorted(label_files):
        spans = load_span_labels(path, taxonomy, root)
        digest.update(Path(path).read_bytes())
        by_file: dict[str, list[Any]] = {}
        for span in spans:
            by_file.setdefault(span.file, []).append(span)
        for file, file_spans in sorted(by_file.items()):
            work = read_work(root / file)
            digest.update(work.text.encode())
            files.append(file)
            passages = split_passages(work, count_tokens, max_tokens)
            mask_work = masker(work_names(work) if mask_names else {})
            Y = span_targets(passages, file_spans, tags)
            keep = (Y != UNKNOWN).any(axis=1)
            for p, labelled in zip(passages, keep, strict=True):
                if labelled:
                    chunks.append([mask_work(p.text)])
                    groups.append(file)
                    kinds.append(SEED)
            blocks.append(Y[keep])
    for path in sorted(exemplar_files):
        digest.update(Path(path).read_bytes())
        files.append(_relative(Path(path), root))
        for ex in load_exemplars(path, taxonomy):
            mask_ex = masker(find_names(ex.text) if mask_names else {})
            parts = [mask_ex(p.text) for p in split_passages(ex.text, count_tokens, max_tokens)]
            row = exemplar_targets(ex.tags, ex.near_miss, taxonomy)
            for part in parts or [ex.text]:  # one row per passage, as tagging reads them
                chunks.append([part])
                groups.append(ex.group)
                kinds.append(EXEMPLAR)
                blocks.append(row[None, :])
    if judged_dir is not None:
        for path in sorted((Path(judged_dir) / "works").glob("*.jsonl")):
            digest.update(path.read_bytes())
            files.append(_relative(path, root))
        for item in load_dev_works(judged_dir, required=None):
            taxonomy.check_ids(list(item.judgments), f"{item.id} (judged work)")
            row = judged_targets(item.judgments, taxonomy)
            mask_work = masker(work_names(item.work) if mask_names else {})
            passages = split_passages(item.work, count_tokens, max_tokens)
            if not passages or not (row != UNKNOWN).any():
                continue
            digest.update(item.work.text.encode())
            chunks += [[mask_work(p.text)] for p in passages]
            groups += [item.book] * len(passages)
            kinds += [JUDGED] * len(passages)
            blocks.append(np.repeat(row[None, :], len(passages), axis=0))
    if not chunks:
        raise TropemlError("no labelled passages found: add span labels or exemplars")
    Y_all = np.concatenate(blocks).astype(np.int8)
    return TrainingSet(chunks, Y_all, groups, kinds, tags, digest.hexdigest(), files)


def exemplar_targets(
    tags: Sequence[str], near_miss: Sequence[str], taxonomy: Taxonomy
) -> NDArray[np.int8]:
    """An exemplar's targets, shape ``(T,)``: what its writer judged, and nothing more.

    Its ``tags`` are 1 and its ``near_miss`` tags 0. A tag it does not name is 0 only when it
    cannot be confused with what the exemplar shows: neither that tag nor any shown tag lists
    the other as related in the taxonomy. A related tag nobody judged is unknown (-1).
    """
    shown = set(tags)
    confusable = set(shown)
    for t in shown:
        confusable |= set(taxonomy[t].related)
    confusable |= {t.id for t in taxonomy.values() if shown & set(t.related)}
    return np.array(
        [
            1 if t in shown else 0 if (t in near_miss or t not in confusable) else UNKNOWN
            for t in taxonomy.ids
        ],
        dtype=np.int8,
    )


def judged_targets(judgments: dict[str, int], taxonomy: Taxonomy) -> NDArray[np.int8]:
    """Targets of each passage of a judged work, shape ``(T,)``.

    0 where the work is judged not to show the tag anywhere; else unknown (where it shows
    the tag, which of its passages do is not known).
    """
    return np.array([0 if judgments.get(t) == 0 else UNKNOWN for t in taxonomy.ids], dtype=np.int8)


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` where it lies inside (config files carry no home paths)."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def embed_training_set(ts: TrainingSet, encoder: Any) -> NDArray[np.float32]:
    """Embed every row; multi-chunk rows get their chunks' normalised mean. Shape ``(n, d)``."""
    flat = [c for row in ts.chunks for c in row]
    vectors = np.asarray(encoder.embed(flat), dtype=np.float32)
    out = np.empty((len(ts.chunks), vectors.shape[1]), dtype=np.float32)
    pos = 0
    for i, row in enumerate(ts.chunks):
        mean = vectors[pos : pos + len(row)].mean(axis=0)
        out[i] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        pos += len(row)
    return out


def embed_prototypes(taxonomy: Taxonomy, encoder: Any) -> NDArray[np.float32]:
    """Embed each trope's prototype, shape ``(T, d)``, rows L2-normalised.

    A prototype is the normalised sum of the embedded name-and-definition and the
    normalised mean of the embedded scene sketches (the definition alone where a trope has
    no scenes). Definitions say what counts; scenes show it the way stories tell it.
    """
    tropes = list(taxonomy.values())
    scenes = [s for t in tropes for s in t.scenes]
    vectors = np.asarray(encoder.embed([t.description for t in tropes] + scenes), np.float32)
    out = unit_rows(vectors[: len(tropes)])
    pos = len(tropes)
    for i, trope in enumerate(tropes):
        if trope.scenes:
            mean = unit_rows(vectors[pos : pos + len(trope.scenes)].mean(axis=0, keepdims=True))
            out[i] = unit_rows(out[i : i + 1] + mean)[0]
            pos += len(trope.scenes)
    return out


def file_hash(path: Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class AnswerRows:
    """Rows from answers files: one per answered span, with its yes/no tags."""

    chunks: list[list[str]]
    Y: NDArray[np.int8]
    groups: list[str]
    n_answers: int
    file_hashes: list[str]


def answer_rows(
    answer_files: Sequence[Path], taxonomy: Taxonomy, max_bytes: int = DEFAULT_MAX_BYTES
) -> AnswerRows:
    """Turn ``tropeml label`` answers into rows (a "skip" is unknown; masked text).

    Args:
        answer_files: JSONL answers files.
        taxonomy: Defines the tags (columns).
        max_bytes: Largest answered file read.
    """
    tags = taxonomy.ids
    chunks: list[list[str]] = []
    blocks: list[NDArray[np.int8]] = []
    groups: list[str] = []
    hashes: list[str] = []
    n_answers = 0
    read: dict[str, tuple[str, Callable[[str], str]]] = {}  # each answered file once
    for path in answer_files:
        hashes.append(file_hash(path))
        spans: dict[tuple[str, int, int], dict[str, int]] = {}
        for a in load_answers(path, taxonomy):
            if a.answer != "skip":
                spans.setdefault((a.file, a.start, a.end), {})[a.tag] = int(a.answer == "yes")
                n_answers += 1
        for (file, start, end), answers in spans.items():
            if file not in read:
                work = read_work(file, max_bytes=max_bytes)
                read[file] = (work.text, masker(work_names(work)))
            text, mask_work = read[file]
            chunks.append([mask_work(text[start:end])])
            groups.append(file)
            blocks.append(np.array([[answers.get(t, UNKNOWN) for t in tags]], dtype=np.int8))
    Y = np.concatenate(blocks) if blocks else np.zeros((0, len(tags)), np.int8)
    return AnswerRows(chunks, Y.astype(np.int8), groups, n_answers, hashes)


@dataclass
class WorkBag:
    """One work labelled at work level: its passages, embedded, and the tags it shows.

    Attributes:
        group: The work's source (its fold group).
        X: Passage embeddings, shape ``(n, d)``.
        chunks: The passages' masked texts.
        positive: Columns of the tags the work shows.
    """

    group: str
    X: NDArray[np.float32]
    chunks: list[str]
    positive: list[int]
    text: str = ""
    """The work's whole text (hashed into the training data's hash)."""


def work_bags(
    works: Sequence[LabelledWork],
    taxonomy: Taxonomy,
    encoder: Any,
    count_tokens: Any = count_words,
    max_tokens: int = 254,
) -> list[WorkBag]:
    """Split, mask and embed each labelled work (works with no passages are left out)."""
    col = {t: j for j, t in enumerate(taxonomy.ids)}
    bags: list[WorkBag] = []
    for lw in works:
        passages = split_passages(lw.work, count_tokens, max_tokens)
        if not passages:
            continue
        mask_work = masker(work_names(lw.work))
        texts = [mask_work(p.text) for p in passages]
        X_w = np.asarray(encoder.embed(texts), dtype=np.float32)
        bags.append(WorkBag(lw.work.source, X_w, texts, [col[t] for t in lw.tags], lw.work.text))
    return bags


def background_rows(
    folder: Path,
    encoder: Any,
    count_tokens: Any = count_words,
    max_tokens: int = 254,
) -> tuple[NDArray[np.float32], list[str], list[str]]:
    """Passages of the unlabelled background prose in ``folder`` (``*.txt``), embedded.

    Background text is ordinary prose in which any one trope is rare; scored by a trained
    model, it gives each tag's null distribution (:mod:`tropeml.model.decision`).

    Returns:
        ``(X, texts, files)``: embeddings ``(N, d)``, the masked passage texts, and the files
        read (sorted).
    """
    files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
    texts: list[str] = []
    for path in files:
        work = read_work(path)
        mask_work = masker(work_names(work))
        texts += [mask_work(p.text) for p in split_passages(work, count_tokens, max_tokens)]
    X = (
        np.asarray(encoder.embed(texts), dtype=np.float32)
        if texts
        else np.zeros((0, 0), np.float32)
    )
    return X, texts, [p.name for p in files]
