"""Model folders: ``config.json`` + ``head.skops`` + ``head.npz`` + ``tropes.toml`` + ``README.md``.

No pickles: the classifier is saved with skops and loaded only if every type in the file
is on an explicit allow-list, so a tampered head is refused before anything is built.
Tagging reads the same classifier from ``head.npz``: its prediction as plain arrays
(:mod:`tropeml.model.head`), loaded without pickles and without importing scikit-learn.
What a folder must hold, and how its hashes and the head's types are checked, is
:mod:`tropeml.model.integrity` (its names are re-exported here).

A folder is written to a temporary sibling and swapped in whole (an atomic exchange where the
OS offers one), under a lock, so a killed or concurrent write never leaves a broken model.
"""

from __future__ import annotations

import contextlib
import ctypes
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

from tropeml._version import __version__
from tropeml.core.errors import TropemlError
from tropeml.core.fileio import fsync_dir, fsync_write
from tropeml.core.lazy import skops_io
from tropeml.core.taxonomy import Taxonomy
from tropeml.model.head import ArrayHead
from tropeml.model.head_export import checked_arrays as checked_arrays
from tropeml.model.head_export import npz_bytes
from tropeml.model.integrity import ALLOWED_BUILTINS as ALLOWED_BUILTINS
from tropeml.model.integrity import ALLOWED_MODULES as ALLOWED_MODULES
from tropeml.model.integrity import ARRAYS_FILE as ARRAYS_FILE
from tropeml.model.integrity import CARD_FILE as CARD_FILE
from tropeml.model.integrity import CONFIG_FILE as CONFIG_FILE
from tropeml.model.integrity import CONFIG_SCHEMA as CONFIG_SCHEMA
from tropeml.model.integrity import FORMAT as FORMAT
from tropeml.model.integrity import FORMAT_VERSION as FORMAT_VERSION
from tropeml.model.integrity import HASHED_FIELDS as HASHED_FIELDS
from tropeml.model.integrity import HASHED_FILES as HASHED_FILES
from tropeml.model.integrity import HEAD_FILE as HEAD_FILE
from tropeml.model.integrity import REQUIRED_FILES as REQUIRED_FILES
from tropeml.model.integrity import TAXONOMY_FILE as TAXONOMY_FILE
from tropeml.model.integrity import TRUSTED_TYPES as TRUSTED_TYPES
from tropeml.model.integrity import allowed_skops_types, check_head_schema, verified_config
from tropeml.model.integrity import content_hash as content_hash
from tropeml.model.integrity import read_config as read_config
from tropeml.model.integrity import sha256_file as sha256_file
from tropeml.model.integrity import untrusted_types as untrusted_types
from tropeml.model.screen import SCREEN_DIR, Screen
from tropeml.model.weights import licence_files

if TYPE_CHECKING:
    from tropeml.model.classifier import TropeClassifier

LockWaiter = Callable[[str], None]


def package_versions() -> dict[str, str]:
    """Return the versions of the packages a model depends on."""
    out = {}
    for name in ("tropeml", "scikit-learn", "numpy", "skops", "sentence-transformers", "torch"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    out.setdefault("tropeml", __version__)
    return out


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
    screen: Screen | None = None,
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
        screen: A screen for the model (:mod:`tropeml.model.screen`), written to ``screen/``.

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
            if screen is not None:
                config = {**config, "screen": screen.save(tmp / SCREEN_DIR)}
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
            for name, data in licence_files(str(config["encoder"].get("name", ""))).items():
                fsync_write(tmp / name, data)  # the encoder's licence and NOTICE (not hashed)
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


def attach_screen(folder: str | Path, screen: Screen) -> Path:
    """Add (or replace) the screen of an existing model folder, atomically.

    The folder is copied beside itself, the screen written into the copy and recorded in
    its ``config.json``, and the copy swapped in as :func:`save_model` does.
    """
    folder = Path(folder)
    verified_config(folder)
    with model_lock(folder):
        _clean_leftovers(folder)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.new-", dir=folder.parent))
        try:
            tmp.rmdir()
            shutil.copytree(folder, tmp, ignore=shutil.ignore_patterns(SCREEN_DIR, ".*"))
            config = json.loads((tmp / CONFIG_FILE).read_text(encoding="utf-8"))
            config["screen"] = screen.save(tmp / SCREEN_DIR)
            fsync_write(tmp / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
            fsync_dir(tmp)
            if not _exchange(tmp, folder):
                raise TropemlError(f"{folder}: cannot swap in the folder with its screen")
            fsync_dir(folder.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


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
    config = verified_config(folder)
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
    config = verified_config(folder)
    if ARRAYS_FILE not in config.get("files", {}):
        classifier = _load_skops(folder / HEAD_FILE)
        return classifier, config, _fits(classifier, folder / HEAD_FILE, config, folder)
    head = folder / HEAD_FILE
    check_head_schema(head)
    arrays = ArrayHead.load(folder / ARRAYS_FILE)
    return arrays, config, _fits(arrays, folder / ARRAYS_FILE, config, folder)


def _load_skops(head: Path) -> TropeClassifier:
    """Build the classifier from ``head.skops`` once every type in it is allowed."""
    from tropeml.model.classifier import TropeClassifier

    sio = skops_io()
    skops_untrusted = allowed_skops_types(head)
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
