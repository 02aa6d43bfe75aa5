"""tropeml: tag the tropes of fan fiction, with the passages that justify each tag.

Names are imported on first use, so ``import tropeml`` (and ``tropeml --help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tropeml._version import __version__

if TYPE_CHECKING:
    from tropeml.audit import audit_work
    from tropeml.classifier import TropeClassifier
    from tropeml.encoders import CachedEncoder, Encoder, HashingEncoder, SentenceTransformerEncoder
    from tropeml.errors import TropemlError
    from tropeml.passages import split_passages
    from tropeml.readers import read_work
    from tropeml.retrain import LabelledWork, retrain
    from tropeml.tagger import Tagger, load
    from tropeml.taxonomy import Taxonomy, Trope
    from tropeml.training import train
    from tropeml.types import Evidence, Passage, TagResult, Work, WorkMeta, WorkResult

__all__ = [
    "CachedEncoder",
    "Encoder",
    "Evidence",
    "HashingEncoder",
    "LabelledWork",
    "Passage",
    "SentenceTransformerEncoder",
    "TagResult",
    "Tagger",
    "Taxonomy",
    "Trope",
    "TropeClassifier",
    "TropemlError",
    "Work",
    "WorkMeta",
    "WorkResult",
    "__version__",
    "audit_work",
    "load",
    "read_work",
    "retrain",
    "split_passages",
    "train",
]

_WHERE = {
    "CachedEncoder": "encoders",
    "Encoder": "encoders",
    "HashingEncoder": "encoders",
    "SentenceTransformerEncoder": "encoders",
    "Evidence": "types",
    "Passage": "types",
    "TagResult": "types",
    "Work": "types",
    "WorkMeta": "types",
    "WorkResult": "types",
    "LabelledWork": "retrain",
    "retrain": "retrain",
    "audit_work": "audit",
    "Tagger": "tagger",
    "load": "tagger",
    "Taxonomy": "taxonomy",
    "Trope": "taxonomy",
    "TropeClassifier": "classifier",
    "TropemlError": "errors",
    "read_work": "readers",
    "split_passages": "passages",
    "train": "training",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"tropeml.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'tropeml' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
