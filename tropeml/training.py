"""Build the training set from ``data/`` and ``seeds/``, fit, evaluate, save a model folder."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tropeml.classifier import UNKNOWN, TropeClassifier
from tropeml.encoders import CachedEncoder, SentenceTransformerEncoder, encoder_id
from tropeml.errors import TropemlError
from tropeml.evaluation import EvalReport, grouped_kfold, leave_one_work_out, nan_to_none
from tropeml.labels import load_exemplars, load_span_labels, span_targets
from tropeml.masking import find_names, masker, work_names
from tropeml.passages import count_words, split_passages
from tropeml.persistence import model_lock, save_model
from tropeml.readers import read_work
from tropeml.taxonomy import Taxonomy

SEED = "seed"
EXEMPLAR = "exemplar"


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
) -> TrainingSet:
    """Turn span labels and exemplars into training rows.

    Args:
        taxonomy: Defines the tags (columns).
        label_files: Span-label JSONL files.
        exemplar_files: Exemplar JSONL files.
        root: Folder that span labels' ``file`` paths are relative to.
        count_tokens: The encoder's token counter (for splitting).
        max_tokens: The encoder's token budget.
        mask_names: Replace character and place names with stand-ins (see
            :mod:`tropeml.masking`) in the text that gets embedded.
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
            chunks.append(parts or [ex.text])
            groups.append(ex.group)
            kinds.append(EXEMPLAR)
            blocks.append(np.array([[1 if t in ex.tags else 0 for t in tags]], dtype=np.int8))
    if not chunks:
        raise TropemlError("no labelled passages found: add span labels or exemplars")
    Y_all = np.concatenate(blocks).astype(np.int8)
    return TrainingSet(chunks, Y_all, groups, kinds, tags, digest.hexdigest(), files)


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
    out = _unit(vectors[: len(tropes)])
    pos = len(tropes)
    for i, trope in enumerate(tropes):
        if trope.scenes:
            mean = _unit(vectors[pos : pos + len(trope.scenes)].mean(axis=0, keepdims=True))
            out[i] = _unit(out[i : i + 1] + mean)[0]
            pos += len(trope.scenes)
    return out


def _unit(V: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(V, axis=1, keepdims=True)
    return np.asarray(V / np.maximum(norms, 1e-12), dtype=np.float32)


@dataclass
class TrainResult:
    """What :func:`train` built."""

    folder: Path | None
    classifier: TropeClassifier
    report: EvalReport | None
    training_set: TrainingSet
    embedded: int
    reused: int
    exemplar_report: EvalReport | None = None


@dataclass
class Prepared:
    """A taxonomy's training set, embedded, with its prototypes."""

    taxonomy: Taxonomy
    taxonomy_path: Path
    training_set: TrainingSet
    X: NDArray[np.float32]
    prototypes: NDArray[np.float32]
    encoder: Any
    cached: Any


def prepare(
    data_dir: str | Path = "data",
    root: str | Path = ".",
    encoder: Any = None,
    cache: bool | str | Path = True,
) -> Prepared:
    """Load ``data_dir``, build the training set and embed it (through the cache).

    Args:
        data_dir: Holds ``tropes.toml``, ``labels/*.jsonl`` and ``exemplars/*.jsonl``.
        root: Folder that span labels' file paths are relative to (the project root).
        encoder: Encoder to use (default: all-MiniLM-L6-v2).
        cache: Embedding cache (``True``: the default file; a path; ``False``: none).
    """
    data_dir = Path(data_dir)
    taxonomy_path = data_dir / "tropes.toml"
    taxonomy = Taxonomy.load(taxonomy_path)
    base = encoder if encoder is not None else SentenceTransformerEncoder()
    enc = CachedEncoder(base, None if cache is True else Path(str(cache))) if cache else base
    ts = build_training_set(
        taxonomy,
        sorted((data_dir / "labels").glob("*.jsonl")),
        sorted((data_dir / "exemplars").glob("*.jsonl")),
        root=root,
        count_tokens=getattr(base, "count_tokens", count_words),
        max_tokens=int(getattr(base, "max_tokens", 254)),
    )
    X = embed_training_set(ts, enc)
    prototypes = embed_prototypes(taxonomy, enc)
    return Prepared(taxonomy, taxonomy_path, ts, X, prototypes, base, enc)


PROTOCOLS = ("works", "exemplars")
"""``works``: leave one labelled fic out at a time (real text). ``exemplars``: grouped
5-fold CV, repeated 3 times, over the hand-written exemplars (varied voices)."""


def run_protocol(
    prepared: Prepared, classifier: TropeClassifier, protocol: str = "works", top_k: int = 2
) -> EvalReport | None:
    """Evaluate ``classifier`` (cloned per fold) under a protocol; ``None`` if no test rows."""
    ts = prepared.training_set
    if protocol not in PROTOCOLS:
        raise TropemlError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    kind = SEED if protocol == "works" else EXEMPLAR
    mask = [k == kind for k in ts.kinds]
    if not any(mask):
        return None
    if protocol == "works":
        return leave_one_work_out(
            classifier, prepared.X, ts.Y, ts.groups, mask, top_k=top_k, texts=ts.texts
        )
    return grouped_kfold(classifier, prepared.X, ts.Y, ts.groups, mask, texts=ts.texts)


def evaluate(
    data_dir: str | Path = "data",
    root: str | Path = ".",
    protocol: str = "works",
    encoder: Any = None,
    cache: bool | str | Path = True,
    C: float = 1.0,
) -> EvalReport:
    """Cross-validate tropeml's classifier on ``data_dir`` without saving a model.

    Args:
        data_dir: Holds ``tropes.toml``, ``labels/*.jsonl`` and ``exemplars/*.jsonl``.
        root: Folder that span labels' file paths are relative to.
        protocol: One of :data:`PROTOCOLS`.
        encoder: Encoder to use (default: all-MiniLM-L6-v2).
        cache: Embedding cache (``True``: the default file; a path; ``False``: none).
        C: Inverse regularisation strength.

    Raises:
        TropemlError: If the protocol is unknown or has no rows to test.
    """
    prepared = prepare(data_dir, root, encoder, cache)
    clf = TropeClassifier(tags=prepared.training_set.tags, prototypes=prepared.prototypes, C=C)
    report = run_protocol(prepared, clf, protocol)
    if report is None:
        raise TropemlError(f"{data_dir}: no rows to test under protocol {protocol!r}")
    return report


def train(
    data_dir: str | Path = "data",
    root: str | Path = ".",
    out: str | Path | None = "models/default",
    encoder: Any = None,
    cache: bool | str | Path = True,
    name: str = "default",
    C: float = 1.0,
    top_k: int = 2,
    lock_timeout: float = -1,
    on_lock_wait: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train a model from ``data_dir`` (taxonomy, labels, exemplars) and save it.

    Both protocols in :data:`PROTOCOLS` are run for the model card.

    Args:
        data_dir: Holds ``tropes.toml``, ``labels/*.jsonl`` and ``exemplars/*.jsonl``.
        root: Folder that span labels' file paths are relative to (the project root).
        out: Model folder to write (``None``: do not save).
        encoder: Encoder to use (default: all-MiniLM-L6-v2).
        cache: Embedding cache (``True``: the default file; a path; ``False``: none).
        name: The model's name.
        C: Inverse regularisation strength of the per-tag logistic regressions.
        top_k: Passages pooled into work scores.
        lock_timeout: Seconds to wait while another process writes ``out`` (``-1``: no
            limit). The whole run holds ``out``'s lock, so concurrent trains take turns.
        on_lock_wait: Called with a one-line message when this run has to wait.

    Returns:
        The fitted classifier, its cross-validation reports and embedding counts.

    Raises:
        TropemlError: On bad data, or if ``out`` stays locked past ``lock_timeout``.
    """
    if out is None:
        return _train(data_dir, root, None, encoder, cache, name, C, top_k)
    with model_lock(out, lock_timeout, on_lock_wait):
        return _train(data_dir, root, out, encoder, cache, name, C, top_k)


def _train(
    data_dir: str | Path,
    root: str | Path,
    out: str | Path | None,
    encoder: Any,
    cache: bool | str | Path,
    name: str,
    C: float,
    top_k: int,
) -> TrainResult:
    prepared = prepare(data_dir, root, encoder, cache)
    ts = prepared.training_set
    clf = TropeClassifier(tags=ts.tags, prototypes=prepared.prototypes, C=C)
    report = run_protocol(prepared, clf, "works", top_k)
    exemplar_report = run_protocol(prepared, clf, "exemplars", top_k)
    clf.fit(prepared.X, ts.Y, groups=ts.groups, texts=ts.texts)
    folder = None
    if out is not None:
        config = _config(name, clf, ts, prepared.encoder, top_k, report, exemplar_report)
        card = model_card(name, prepared.taxonomy, ts, clf, report, config, exemplar_report)
        folder = save_model(out, clf, config, prepared.taxonomy_path, card)
    embedded = getattr(prepared.cached, "misses", len(ts))
    reused = getattr(prepared.cached, "hits", 0)
    return TrainResult(folder, clf, report, ts, embedded, reused, exemplar_report)


def _config(
    name: str,
    clf: TropeClassifier,
    ts: TrainingSet,
    encoder: Any,
    top_k: int,
    report: EvalReport | None,
    exemplar_report: EvalReport | None = None,
) -> dict[str, Any]:
    evaluation = {
        protocol: {"scheme": r.scheme, "macro": nan_to_none(r.macro())}
        for protocol, r in (("works", report), ("exemplars", exemplar_report))
        if r is not None
    }
    return {
        "name": name,
        "tags": ts.tags,
        "thresholds": {
            t: round(float(x), 6) for t, x in zip(ts.tags, clf.thresholds_, strict=True)
        },
        "encoder": {
            "name": str(getattr(encoder, "name", encoder_id(encoder))),
            "version": str(getattr(encoder, "version", "")),
            "id": encoder_id(encoder),
            "dimension": int(clf.n_features_in_),
            "max_tokens": int(getattr(encoder, "max_tokens", 254)),
        },
        "rollup": {"method": "mean of top-k passage scores", "top_k": top_k, "max_evidence": 3},
        "mask_names": True,
        "training_data": {
            "sha256": ts.data_hash,
            "files": ts.files,
            "n_rows": len(ts),
            "n_seed_passages": ts.kinds.count(SEED),
            "n_exemplars": ts.kinds.count(EXEMPLAR),
            "positives": ts.counts(),
        },
        "evaluation": evaluation,
    }


def model_card(
    name: str,
    taxonomy: Taxonomy,
    ts: TrainingSet,
    clf: TropeClassifier,
    report: EvalReport | None,
    config: dict[str, Any],
    exemplar_report: EvalReport | None = None,
) -> str:
    """Return the model card (Markdown): tags, training counts, cross-validated metrics."""
    sections = []
    if report is not None:
        sections.append(
            f"""## Evaluation ({report.scheme}, passage level, seed fics)

Each seed fic is held out in turn; the model is trained on the other fics (and all
exemplars, which are never test data) and scored on the held-out fic's passages.
Where a tag has fewer than 3 positive passages in the test folds, no number is given.
With three seed fics these numbers are indicative at best.

{report.to_markdown()}
"""
        )
    if exemplar_report is not None:
        sections.append(
            f"""## Evaluation ({exemplar_report.scheme}, passage level, hand-written exemplars)

The exemplars (original passages in many voices, fandoms and settings, with hard
negatives) are split into folds; each fold is scored by a model trained on the seed fics
and the other folds. This measures how the tags carry over to other styles, but the
exemplars were written for this project, so expect real fics to score lower.

{exemplar_report.to_markdown()}
"""
        )
    evaluation = "\n".join(sections) or "No labelled data to cross-validate on.\n"
    seed, ex = ts.counts(SEED), ts.counts(EXEMPLAR)
    enc = config["encoder"]
    rows = "\n".join(
        f"| `{t}` | {taxonomy[t].name} | {seed[t]} | {ex[t]} | "
        f"{int(clf.n_negatives_[j])} | {clf.thresholds_[j]:.3f} |"
        for j, t in enumerate(ts.tags)
    )
    return f"""# tropeml model: {name}

Tags fan-fiction passages with tropes and rolls them up to work-level tags with evidence.

- Encoder: `{enc["name"]}` ({enc["version"]}), {enc["dimension"]}-d, {enc["max_tokens"]} tokens
  per passage (plus special tokens).
- Names: character and place names are replaced by neutral stand-ins before embedding.
- Head (`tropeml.TropeClassifier`, saved with skops, loaded with an allow-list of types):
  per tag, three views summed after standardisation: a balanced logistic regression on the
  passage embedding, one on TF-IDF words of the masked passage text, and the
  passage's similarity to the tag's prototype (embedded definition and scene sketches),
  centred across tags. Tags without labels are predicted zero-shot from the prototype.
- Standardisation, calibration and thresholds: per tag, from out-of-fold scores with folds
  grouped by work (Platt scaling, then the F1-maximising threshold).
- Work score: mean of the {config["rollup"]["top_k"]} best passage scores; prominence is the
  share of the work's text in passages over the threshold.
- Training data: {ts.kinds.count(SEED)} labelled passages of
  {len({g for g, k in zip(ts.groups, ts.kinds, strict=True) if k == SEED})} seed fics and
  {ts.kinds.count(EXEMPLAR)} hand-written exemplar passages; data hash
  `{ts.data_hash[:16]}`.

## Tags and training counts

| id | tag | positive seed passages | positive exemplars | negatives | threshold |
|---|---|---:|---:|---:|---:|
{rows}

{evaluation}
## Limits

Trained on three fics of one fandom{" and hand-written exemplars" if ex else ""}: expect
lower accuracy on other fandoms, voices and eras. Tags present in one seed fic only cannot be
evaluated fairly by holding that fic out.
"""
