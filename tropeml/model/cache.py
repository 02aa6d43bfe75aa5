"""The embedding cache (SQLite): vectors and derived values (passage splits, names) by key."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import sqlite3
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tropeml.core.errors import TropemlError
from tropeml.core.resources import cache_root
from tropeml.model.encoders import _normalise, encoder_id


def default_cache_path() -> Path:
    """Return the embedding cache file (in :func:`~tropeml.core.resources.cache_root`)."""
    return cache_root() / "embeddings.sqlite3"


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


def valid_spans(spans: Any, n: int) -> bool:
    """Whether a cached split is a list of ``[start, end, chapter]`` inside a text of ``n``."""
    return isinstance(spans, list) and all(
        isinstance(x, list)
        and len(x) == 3
        and type(x[0]) is int
        and type(x[1]) is int
        and 0 <= x[0] < x[1] <= n
        and (x[2] is None or isinstance(x[2], str))
        for x in spans
    )
