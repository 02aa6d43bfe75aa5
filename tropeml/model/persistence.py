"""Model folders: ``config.json`` + ``head.skops`` + ``head.npz`` + ``tropes.toml`` + ``README.md``.

No pickles: the classifier is saved with skops and loaded only if every type in the file
is on an explicit allow-list, so a tampered head is refused before anything is built.
Tagging reads the same classifier from ``head.npz``: its prediction as plain arrays
(:mod:`tropeml.model.head`), loaded without pickles and without importing scikit-learn.
``config.json`` is validated against :data:`CONFIG_SCHEMA`, and records the SHA-256 of the
head and the taxonomy plus a content hash over them and the config fields that must agree
with the head; all are checked on load.

A folder is written to a temporary sibling and swapped in whole (an atomic exchange where the
OS offers one), under a lock, so a killed or concurrent write never leaves a broken model.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tropeml._version import __version__
from tropeml.core.errors import TropemlError
from tropeml.core.fileio import fsync_dir, fsync_write
from tropeml.core.lazy import skops_io
from tropeml.core.taxonomy import Taxonomy
from tropeml.model.head import ArrayHead, check_arrays, export_arrays, npz_bytes

if TYPE_CHECKING:
    from tropeml.model.classifier import TropeClassifier

FORMAT = "tropeml-model"
FORMAT_VERSION = 2
"""2 added ``files`` and ``content_sha256``; folders of format 1 (head hash only) still load."""
HEAD_FILE = "head.skops"
ARRAYS_FILE = "head.npz"
"""The classifier's prediction as plain arrays, for fast loading (see :mod:`tropeml.model.head`)."""
CONFIG_FILE = "config.json"
TAXONOMY_FILE = "tropes.toml"
CARD_FILE = "README.md"

TRUSTED_TYPES = frozenset(
    {"tropeml.model.classifier.TropeClassifier", "tropeml.classifier.TropeClassifier"}
)
"""The classifier, under its 0.2 path and its 0.1 path (heads saved by tropeml 0.1)."""
"""tropeml's own types a head may hold (skops does not know them)."""

ALLOWED_MODULES = ("numpy", "sklearn")
"""Besides :data:`TRUSTED_TYPES` and :data:`ALLOWED_BUILTINS`, a head may only name types and
functions from these packages, and only those that skops also trusts by default."""

_BUILTINS = "bool bytes complex dict float frozenset int list NoneType set slice str tuple"
ALLOWED_BUILTINS = frozenset(f"builtins.{name}" for name in _BUILTINS.split())

REQUIRED_FILES = (HEAD_FILE, TAXONOMY_FILE)
HASHED_FILES = (HEAD_FILE, TAXONOMY_FILE, ARRAYS_FILE)
"""Files whose SHA-256 a model folder records (the card is documentation, not checked).
:data:`ARRAYS_FILE` is optional: a folder without it is served from ``head.skops``."""

HASHED_FIELDS = ("format", "format_version", "tags", "encoder", "mask_names", "files")
"""Config fields covered by ``content_sha256``. Thresholds, name and roll-up settings are
left out so they can be edited by hand."""

_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_POSITIVE = {"type": "integer", "minimum": 1}
CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "tropeml model config.json",
    "type": "object",
    "required": [
        "format",
        "format_version",
        "tropeml_version",
        "name",
        "tags",
        "thresholds",
        "encoder",
        "rollup",
        "head",
    ],
    "properties": {
        "format": {"const": FORMAT},
        "format_version": {"type": "integer", "minimum": 1, "maximum": FORMAT_VERSION},
        "tropeml_version": {"type": "string"},
        "name": {"type": "string"},
        "tags": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
            "message": "'tags' must be a non-empty list of distinct tag ids",
        },
        "thresholds": {
            "type": "object",
            "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
            "message": "'thresholds' must map tag ids to numbers between 0 and 1",
        },
        "encoder": {
            "type": "object",
            "required": ["name", "dimension"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "dimension": _POSITIVE,
                "max_tokens": _POSITIVE,
            },
        },
        "rollup": {
            "type": "object",
            "properties": {
                "top_k": {**_POSITIVE, "message": "'rollup.top_k' must be a positive integer"},
                "max_evidence": {
                    **_POSITIVE,
                    "message": "'rollup.max_evidence' must be a positive integer",
                },
            },
        },
        "mask_names": {"type": "boolean"},
        "head": {
            "type": "object",
            "required": ["sha256"],
            "properties": {"file": {"const": HEAD_FILE}, "sha256": _SHA256},
        },
        "files": {
            "type": "object",
            "required": list(REQUIRED_FILES),
            "additionalProperties": False,
            "properties": {name: _SHA256 for name in HASHED_FILES},
        },
        "content_sha256": _SHA256,
    },
    "if": {"properties": {"format_version": {"minimum": 2}}},
    "then": {"required": ["files", "content_sha256"]},
}
"""JSON Schema of ``config.json``; a ``message`` member gives the error for its subtree."""

LockWaiter = Callable[[str], None]


def package_versions() -> dict[str, str]:
    """Return the versions of the packages a model depends on."""
    out = {}
    for name in ("tropeml", "scikit-learn", "numpy", "skops", "sentence-transformers", "torch"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    out.setdefault("tropeml", __version__)
    return out


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_SKOPS_ID = re.compile(r'("__id__": |"file": ")(\d+)')


def _forget_memory_addresses(classifier: TropeClassifier) -> None:
    """Drop state that holds a memory address, so the same model saves to the same bytes.

    A fitted ``TfidfVectorizer`` caches ``id(stop_words)`` on every transform, only to skip
    re-checking its stop words; it sets it again when next needed.
    """
    vectorizer = getattr(classifier, "vectorizer_", None)
    if vectorizer is not None:
        vectorizer.__dict__.pop("_stop_words_id", None)


def reproducible_skops(data: bytes) -> bytes:
    """Return a skops file that depends only on the object saved, not on the process.

    skops names objects and array files by their ``id()`` and stamps the zip entries with
    the current time, so saving the same classifier twice gives different bytes. Here each id
    is renumbered in order of first appearance (references stay consistent) and every entry
    gets a fixed timestamp, so identical training gives a byte-identical head.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as zin:
        infos = zin.infolist()
        schema = zin.read("schema.json").decode("utf-8")
        ids: dict[str, str] = {}
        for m in _SKOPS_ID.finditer(schema):
            ids.setdefault(m.group(2), str(len(ids) + 1))
        schema = _SKOPS_ID.sub(lambda m: m.group(1) + ids[m.group(2)], schema)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zout:
            for info in infos:
                stem, dot, ext = info.filename.partition(".")
                name = ids.get(stem, stem) + dot + ext if info.filename != "schema.json" else None
                entry = zipfile.ZipInfo(name or "schema.json", date_time=(1980, 1, 1, 0, 0, 0))
                entry.compress_type = info.compress_type
                entry.external_attr = 0o644 << 16
                payload = schema.encode("utf-8") if name is None else zin.read(info)
                zout.writestr(entry, payload)
    return out.getvalue()


def save_model(
    folder: str | Path,
    classifier: TropeClassifier,
    config: dict[str, Any],
    taxonomy_path: str | Path,
    card: str,
) -> Path:
    """Write a model folder, replacing any old one only once the new one is complete.

    The new folder is written and fsynced beside the old one, then swapped in with one
    atomic exchange (two renames where the OS has no exchange). A kill at any moment leaves
    either the old folder or the new one, never a mix. The folder's lock is held throughout.

    Args:
        folder: Target folder.
        classifier: A fitted :class:`TropeClassifier`.
        config: Everything for ``config.json`` except ``format*``, ``head``, ``files``,
            ``content_sha256`` and versions.
        taxonomy_path: The taxonomy the tags come from (copied into the folder).
        card: The model card (Markdown).

    Returns:
        The folder.
    """
    sio = skops_io()

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with model_lock(folder):
        _clean_leftovers(folder)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.new-", dir=folder.parent))
        try:
            _forget_memory_addresses(classifier)
            fsync_write(tmp / HEAD_FILE, reproducible_skops(sio.dumps(classifier)))
            arrays = checked_arrays(classifier)
            if arrays is not None:
                fsync_write(tmp / ARRAYS_FILE, npz_bytes(arrays))
            fsync_write(tmp / TAXONOMY_FILE, Path(taxonomy_path).read_bytes())
            files = {
                name: sha256_file(tmp / name) for name in HASHED_FILES if (tmp / name).exists()
            }
            full = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "tropeml_version": __version__,
                **config,
                "head": {"file": HEAD_FILE, "sha256": files[HEAD_FILE]},
                "files": files,
                "packages": package_versions(),
            }
            full["content_sha256"] = content_hash(full)
            fsync_write(tmp / CONFIG_FILE, (json.dumps(full, indent=2) + "\n").encode())
            fsync_write(tmp / CARD_FILE, card.encode())
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; a model folder is not
            fsync_dir(tmp)
            if folder.exists() and _exchange(tmp, folder):
                fsync_dir(folder.parent)  # tmp now holds the old model
            else:
                old = None
                if folder.exists():  # no atomic exchange: keep the old folder aside meanwhile
                    old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
                    old.rmdir()
                    os.replace(folder, old)
                os.replace(tmp, folder)
                fsync_dir(folder.parent)
                if old is not None:
                    os.replace(old, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def checked_arrays(classifier: TropeClassifier) -> dict[str, Any] | None:
    """Return the classifier as arrays, if they score probe passages as the classifier does.

    The arrays are :func:`tropeml.model.head.export_arrays`'s. ``None`` means the classifier cannot
    be reproduced from arrays; its folder then has no ``head.npz`` and is served from
    ``head.skops``.

    The probes are the prototypes and seeded random unit vectors, with texts drawn from the
    lexical vocabulary, so the check is the same on every run.
    """
    arrays = export_arrays(classifier)
    if arrays is None:
        return None
    rng = np.random.default_rng(0)
    d = int(classifier.n_features_in_)
    X = rng.normal(size=(32, d)).astype(np.float32)
    if classifier.prototypes_ is not None:
        X = np.vstack([np.asarray(classifier.prototypes_, dtype=np.float32), X])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    texts = None
    if classifier.uses_texts:
        words = [str(w) for w in arrays["vocabulary"].tolist()] or ["empty"]
        texts = [" ".join(rng.choice(words, size=40)) for _ in range(len(X))]
    return arrays if check_arrays(classifier, arrays, X, texts) else None


def content_hash(config: dict[str, Any]) -> str:
    """Return the SHA-256 over the config fields in :data:`HASHED_FIELDS` (canonical JSON)."""
    covered = {key: config.get(key) for key in HASHED_FIELDS}
    blob = json.dumps(covered, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode("ascii")).hexdigest()


def lock_path(folder: str | Path) -> Path:
    """Return the lock file that guards writes to a model folder (a hidden sibling)."""
    folder = Path(folder)
    return folder.parent / f".{folder.name}.lock"


@contextlib.contextmanager
def model_lock(
    folder: str | Path, timeout: float = -1, on_wait: LockWaiter | None = None
) -> Iterator[None]:
    """Hold the write lock of a model folder (re-entrant within a process).

    Args:
        folder: The model folder.
        timeout: Seconds to wait for another writer; ``-1``: as long as it takes.
        on_wait: Called with a one-line message if another process holds the lock.

    Raises:
        TropemlError: If the lock is still held by another process after ``timeout``.
    """
    from filelock import FileLock, Timeout

    folder = Path(folder)
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), is_singleton=True)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if timeout == 0:
            raise TropemlError(
                f"{folder}: another tropeml process is writing this model folder "
                f"(lock {path}); try again when it has finished"
            ) from None
        if on_wait is not None:
            on_wait(
                f"{folder}: another tropeml process is writing this model folder; "
                f"waiting for it to finish (lock {path})"
            )
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise TropemlError(
                f"{folder}: still locked by another tropeml process after {timeout:g} s "
                f"(lock {path})"
            ) from None
    try:
        yield
    finally:
        lock.release()


def _clean_leftovers(folder: Path) -> None:
    """Remove the temporary folders a killed save left beside ``folder`` (lock held).

    If the folder itself is gone but an ``.old-`` copy survives (a kill between the two
    renames of the fallback swap), that copy is the last complete model: it is put back.
    """
    leftovers = sorted(folder.parent.glob(f".{folder.name}.new-*"))
    olds = sorted(folder.parent.glob(f".{folder.name}.old-*"))
    if olds and not folder.exists():
        os.replace(olds.pop(), folder)
    for path in leftovers + olds:
        shutil.rmtree(path, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); ``False`` where that is unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.restype = ctypes.c_int
    c_int, c_path = ctypes.c_int, ctypes.c_char_p
    renameat2.argtypes = [c_int, c_path, c_int, c_path, ctypes.c_uint]
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return bool(rc == 0)


def read_config(folder: str | Path) -> dict[str, Any]:
    """Read and validate a model folder's ``config.json`` against :data:`CONFIG_SCHEMA`.

    Raises:
        TropemlError: If the folder or file is missing, not JSON, does not fit the schema,
            or was written by a newer, incompatible tropeml.
    """
    folder = Path(folder)
    if not folder.is_dir():
        stranded = sorted(folder.parent.glob(f".{folder.name}.old-*"))
        if stranded and not folder.exists():
            raise TropemlError(
                f"{folder}: model folder not found, but an interrupted save left the previous "
                f"model in {stranded[-1]}: rename it back (or save again)"
            )
        raise TropemlError(f"{folder}: model folder not found")
    path = folder / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except FileNotFoundError:
        raise TropemlError(f"{path}: missing; not a tropeml model folder") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise TropemlError(f"{path}: unreadable config ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise TropemlError(f"{path}: not a tropeml model config")
    version = config.get("format_version")
    if (
        isinstance(version, (int, float))
        and not isinstance(version, bool)
        and version > FORMAT_VERSION
    ):
        raise TropemlError(
            f"{path}: model format {version} was written by tropeml "
            f"{config.get('tropeml_version', '?')}; this tropeml ({__version__}) reads up to "
            f"{FORMAT_VERSION}. Upgrade tropeml."
        )
    _check_schema(config, path)
    if set(config["thresholds"]) != set(config["tags"]):
        raise TropemlError(f"{path}: 'thresholds' must give one threshold per tag")
    return config


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


@functools.cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(CONFIG_SCHEMA)
    return Draft202012Validator(CONFIG_SCHEMA)


def _check_schema(config: dict[str, Any], path: Path) -> None:
    """Raise a one-line :class:`TropemlError` for the first way ``config`` breaks the schema."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator().iter_errors(config))
    if error is None:
        return
    where = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        missing = next(k for k in error.validator_value if k not in error.instance)
        raise TropemlError(f"{path}: field {'.'.join(filter(None, (where, missing)))!r} missing")
    message, node = None, CONFIG_SCHEMA
    for part in error.absolute_schema_path:  # the innermost "message" on the way wins
        message = node.get("message", message) if isinstance(node, dict) else message
        node = node[part]
    raise TropemlError(f"{path}: {message or f'field {where!r}: {error.message}'}")


def load_model(folder: str | Path) -> tuple[TropeClassifier, dict[str, Any], Taxonomy]:
    """Load a model folder safely, with its classifier as the scikit-learn estimator.

    Nothing from the head is built before its hash matches the config and every type it
    names is on the allow-list (:data:`TRUSTED_TYPES`, :data:`ALLOWED_BUILTINS`, and what
    skops trusts of :data:`ALLOWED_MODULES`).

    Returns:
        The classifier, the config and the model's taxonomy.

    Raises:
        TropemlError: On a missing or corrupt file, a file or config field whose hash does
            not match the one recorded, a head holding a type not on the allow-list, or a
            head that does not fit the config (tags, embedding dimension).
    """
    folder = Path(folder)
    config = _verified_config(folder)
    classifier = _load_skops(folder / HEAD_FILE)
    return classifier, config, _fits(classifier, folder / HEAD_FILE, config, folder)


def load_head(
    folder: str | Path,
) -> tuple[TropeClassifier | ArrayHead, dict[str, Any], Taxonomy]:
    """Load a model folder for prediction: from ``head.npz`` when it has one.

    The checks are those of :func:`load_model`, except that ``head.skops`` is not built: the
    types it names are checked against the allow-list's modules without importing skops,
    and its top-level object must be a ``TropeClassifier``. The arrays are loaded with
    pickles refused. A folder without ``head.npz`` (older tropeml) is loaded with
    :func:`load_model`.

    Returns:
        The head (an :class:`~tropeml.model.head.ArrayHead`, or the estimator), the config and
        the model's taxonomy.

    Raises:
        TropemlError: As :func:`load_model`, and for malformed arrays.
    """
    folder = Path(folder)
    config = _verified_config(folder)
    if ARRAYS_FILE not in config.get("files", {}):
        classifier = _load_skops(folder / HEAD_FILE)
        return classifier, config, _fits(classifier, folder / HEAD_FILE, config, folder)
    head = folder / HEAD_FILE
    names, root = _schema_names(head)
    _refuse(head, sorted(name for name in names if not _allowed_module(name)))
    if root not in TRUSTED_TYPES:
        raise TropemlError(f"{head}: holds a {root.rpartition('.')[2]}, not a TropeClassifier")
    arrays = ArrayHead.load(folder / ARRAYS_FILE)
    return arrays, config, _fits(arrays, folder / ARRAYS_FILE, config, folder)


def _verified_config(folder: Path) -> dict[str, Any]:
    """Read the config and check every recorded file hash and the content hash."""
    config = read_config(folder)
    head = folder / HEAD_FILE
    if not head.is_file():
        raise TropemlError(f"{head}: classifier head missing")
    recorded = {HEAD_FILE: config["head"]["sha256"], **config.get("files", {})}
    for name, digest in recorded.items():
        if not (folder / name).is_file():
            raise TropemlError(f"{folder / name}: missing from the model folder")
        if sha256_file(folder / name) != digest:
            raise TropemlError(
                f"{folder / name}: does not match the hash in config.json (corrupt or altered)"
            )
    if "content_sha256" in config and content_hash(config) != config["content_sha256"]:
        raise TropemlError(
            f"{folder / CONFIG_FILE}: fields {', '.join(HASHED_FIELDS)} do not match the "
            "content hash recorded when the model was saved (corrupt or altered)"
        )
    return config


def _load_skops(head: Path) -> TropeClassifier:
    """Build the classifier from ``head.skops`` once every type in it is allowed."""
    from tropeml.model.classifier import TropeClassifier

    sio = skops_io()
    refused, skops_untrusted = _audit(head)
    _refuse(head, refused)
    try:  # what is left of skops's untrusted list is tropeml's own, allowed types
        classifier = sio.load(head, trusted=sorted(skops_untrusted))
    except Exception as exc:
        raise TropemlError(f"{head}: cannot load classifier ({type(exc).__name__})") from None
    if not isinstance(classifier, TropeClassifier):
        raise TropemlError(f"{head}: holds a {type(classifier).__name__}, not a TropeClassifier")
    return classifier


def _fits(head: Any, path: Path, config: dict[str, Any], folder: Path) -> Taxonomy:
    """Check a loaded head against the config; return the model's taxonomy."""
    if [str(c) for c in getattr(head, "classes_", [])] != list(config["tags"]):
        raise TropemlError(f"{path}: its tags do not match config.json")
    dim = config["encoder"].get("dimension")
    if getattr(head, "n_features_in_", None) != dim:
        raise TropemlError(
            f"{path}: expects {getattr(head, 'n_features_in_', '?')}-d embeddings but "
            f"the encoder in config.json gives {dim}"
        )
    taxonomy = Taxonomy.load(folder / TAXONOMY_FILE)
    taxonomy.check_ids(list(config["tags"]), str(folder / CONFIG_FILE))
    return taxonomy


def _schema_names(head: Path) -> tuple[set[str], str]:
    """Every type and function a skops file names, and its top-level type (nothing built).

    Raises:
        TropemlError: If the file is not a readable skops file.
    """
    try:
        with zipfile.ZipFile(head) as z:
            schema = json.loads(z.read("schema.json"))
    except Exception as exc:
        raise TropemlError(f"{head}: not a readable skops file ({type(exc).__name__})") from None
    names: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            module, cls = node.get("__module__"), node.get("__class__")
            if isinstance(module, str) and isinstance(cls, str):
                names.add(f"{module}.{cls}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    root = schema if isinstance(schema, dict) else {}
    return names, f"{root.get('__module__', '?')}.{root.get('__class__', '?')}"


def untrusted_types(head: str | Path) -> list[str]:
    """Return the types and functions a skops file names that tropeml will not load.

    Only the file's schema is read; nothing is built. A name passes if it is one of
    :data:`TRUSTED_TYPES` or :data:`ALLOWED_BUILTINS`, or if it comes from one of
    :data:`ALLOWED_MODULES` and skops trusts it by default.

    Raises:
        TropemlError: If the file is not a readable skops file.
    """
    return _audit(Path(head))[0]


def _audit(head: Path) -> tuple[list[str], set[str]]:
    """The names :func:`untrusted_types` refuses, and the names skops itself does not trust."""
    sio = skops_io()
    names, _ = _schema_names(head)
    try:
        skops_untrusted = set(sio.get_untrusted_types(file=head))
    except Exception as exc:
        raise TropemlError(f"{head}: not a readable skops file ({type(exc).__name__})") from None
    names |= skops_untrusted
    return sorted(name for name in names if not _allowed(name, skops_untrusted)), skops_untrusted


def _refuse(head: Path, refused: list[str]) -> None:
    if refused:
        raise TropemlError(f"{head}: refusing to load untrusted type(s): {', '.join(refused)}")


def _allowed_module(name: str) -> bool:
    """The allow-list without skops's own list: tropeml's types, builtins, numpy, sklearn."""
    if name in TRUSTED_TYPES or name in ALLOWED_BUILTINS:
        return True
    return name.split(".")[0] in ALLOWED_MODULES


def _allowed(name: str, skops_untrusted: set[str]) -> bool:
    return _allowed_module(name) and (
        name in TRUSTED_TYPES or name in ALLOWED_BUILTINS or name not in skops_untrusted
    )
