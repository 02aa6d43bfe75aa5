"""tropeml: tag the tropes of fan fiction, with the passages that justify each tag.

Names are imported on first use, so ``import tropeml`` (and ``tropeml --help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tropeml import _aliases
from tropeml._version import __version__

_aliases.install()

if TYPE_CHECKING:
    from tropeml.core.errors import TropemlError
    from tropeml.core.taxonomy import Taxonomy, Trope
    from tropeml.core.types import Evidence, Passage, TagResult, Work, WorkMeta, WorkResult
    from tropeml.io.readers import read_work
    from tropeml.io.sources import LabelledWork
    from tropeml.model.cache import CachedEncoder
    from tropeml.model.classifier import TropeClassifier
    from tropeml.model.encoders import Encoder, HashingEncoder, SentenceTransformerEncoder
    from tropeml.model.training import retrain, train
    from tropeml.serve.audit import audit_work
    from tropeml.serve.tagger import Tagger, load
    from tropeml.text.passages import split_passages

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
    "CachedEncoder": "model.cache",
    "Encoder": "model.encoders",
    "HashingEncoder": "model.encoders",
    "SentenceTransformerEncoder": "model.encoders",
    "Evidence": "core.types",
    "Passage": "core.types",
    "TagResult": "core.types",
    "Work": "core.types",
    "WorkMeta": "core.types",
    "WorkResult": "core.types",
    "LabelledWork": "io.sources",
    "retrain": "model.training",
    "audit_work": "serve.audit",
    "Tagger": "serve.tagger",
    "load": "serve.tagger",
    "Taxonomy": "core.taxonomy",
    "Trope": "core.taxonomy",
    "TropeClassifier": "model.classifier",
    "TropemlError": "core.errors",
    "read_work": "io.readers",
    "split_passages": "text.passages",
    "train": "model.training",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"tropeml.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'tropeml' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
