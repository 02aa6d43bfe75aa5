"""Embedded training data and the cross-validation protocols that evaluate training.

:func:`prepare` embeds a data folder's training set (with the encoder that serves the
model); :func:`run_protocol` cross-validates a classifier on it, leaving one labelled fic
out (``works``) or grouped k-fold over the exemplars (``exemplars``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tropeml.core.errors import TropemlError
from tropeml.core.taxonomy import Taxonomy
from tropeml.model.backends import load_encoder
from tropeml.model.cache import CachedEncoder
from tropeml.model.classifier import TropeClassifier
from tropeml.model.dataset import (
    EXEMPLAR,
    SEED,
    TrainingSet,
    build_training_set,
    embed_prototypes,
    embed_training_set,
)
from tropeml.model.evaluation import EvalReport, grouped_kfold, leave_one_work_out
from tropeml.text.passages import count_words


def default_encoder() -> Any:
    """The encoder a model is trained with by default: the one ``tropeml tag`` serves it with.

    all-MiniLM-L6-v2 on the default backend (``auto``: the int8 ONNX graph where it can be
    built, else torch), so the head's calibration and thresholds fit the vectors it is
    served, and every number evaluated is the number users get.
    """
    return load_encoder(None)


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
    root: str | Path | None = None,
    encoder: Any = None,
    cache: bool | str | Path = True,
) -> Prepared:
    """Load ``data_dir``, build the training set and embed it (through the cache).

    Args:
        data_dir: Holds ``tropes.toml``, ``labels/*.jsonl``, ``exemplars/*.jsonl`` and
            (optionally) ``judged/works/*.jsonl``.
        root: Folder that span labels' file paths are relative to (default: the data
            folder's parent, the project root).
        encoder: Encoder to use (default: :func:`default_encoder`).
        cache: Embedding cache (``True``: the default file; a path; ``False``: none).
    """
    data_dir = Path(data_dir)
    root = Path(root) if root is not None else data_dir.resolve().parent
    taxonomy_path = data_dir / "tropes.toml"
    taxonomy = Taxonomy.load(taxonomy_path)
    base = encoder if encoder is not None else default_encoder()
    enc = CachedEncoder(base, None if cache is True else Path(str(cache))) if cache else base
    ts = build_training_set(
        taxonomy,
        sorted((data_dir / "labels").glob("*.jsonl")),
        sorted((data_dir / "exemplars").glob("*.jsonl")),
        root=root,
        count_tokens=getattr(base, "count_tokens", count_words),
        max_tokens=int(getattr(base, "max_tokens", 254)),
        judged_dir=data_dir / "judged",
    )
    X = embed_training_set(ts, enc)
    prototypes = embed_prototypes(taxonomy, enc)
    return Prepared(taxonomy, taxonomy_path, ts, X, prototypes, base, enc)


PROTOCOLS = ("works", "exemplars")
"""``works``: leave one labelled fic out at a time (real text). ``exemplars``: grouped
5-fold CV, repeated 3 times, over the hand-written exemplars (varied voices)."""


def run_protocol(
    prepared: Prepared,
    classifier: TropeClassifier,
    protocol: str = "works",
    top_k: int = 2,
    repeats: int = 3,
) -> EvalReport | None:
    """Evaluate ``classifier`` (cloned per fold) under a protocol; ``None`` if no test rows.

    ``repeats`` is how often the ``exemplars`` protocol reshuffles its folds (a model card
    uses one: each repeat refits the classifier 30 times).
    """
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
    return grouped_kfold(
        classifier, prepared.X, ts.Y, ts.groups, mask, repeats=repeats, texts=ts.texts
    )


def evaluate(
    data_dir: str | Path = "data",
    root: str | Path | None = None,
    protocol: str = "works",
    encoder: Any = None,
    cache: bool | str | Path = True,
    C: float = 1.0,
) -> EvalReport:
    """Cross-validate tropeml's classifier on ``data_dir`` without saving a model.

    Args:
        data_dir: Holds ``tropes.toml``, ``labels/*.jsonl``, ``exemplars/*.jsonl`` and
            (optionally) ``judged/works/*.jsonl``.
        root: Folder that span labels' file paths are relative to (default: the data
            folder's parent).
        protocol: One of :data:`PROTOCOLS`.
        encoder: Encoder to use (default: :func:`default_encoder`).
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
