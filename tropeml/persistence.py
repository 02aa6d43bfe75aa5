"""Model folders: ``config.json`` + ``head.skops`` + ``tropes.toml`` + ``README.md``.

No pickles: the classifier is saved with skops and loaded only if every type in the file
is on an explicit allow-list, so a tampered head is refused before anything is built. The
head's SHA-256 is recorded in ``config.json`` and checked on load.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

from tropeml._imports import skops_io
from tropeml._io import fsync_write
from tropeml._version import __version__
from tropeml.classifier import TropeClassifier
from tropeml.errors import TropemlError
from tropeml.taxonomy import Taxonomy

FORMAT = "tropeml-model"
FORMAT_VERSION = 1
HEAD_FILE = "head.skops"
CONFIG_FILE = "config.json"
TAXONOMY_FILE = "tropes.toml"
CARD_FILE = "README.md"

TRUSTED_TYPES = frozenset({"tropeml.classifier.TropeClassifier"})
"""Types a head may hold beyond skops' defaults (numpy arrays, scikit-learn estimators)."""

_REQUIRED = {
    "format": str,
    "format_version": int,
    "tropeml_version": str,
    "name": str,
    "tags": list,
    "thresholds": dict,
    "encoder": dict,
    "rollup": dict,
    "head": dict,
}


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

    Args:
        folder: Target folder.
        classifier: A fitted :class:`TropeClassifier`.
        config: Everything for ``config.json`` except ``format*``, ``head`` and versions.
        taxonomy_path: The taxonomy the tags come from (copied into the folder).
        card: The model card (Markdown).

    Returns:
        The folder.
    """
    sio = skops_io()

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.new-", dir=folder.parent))
    try:
        head = tmp / HEAD_FILE
        fsync_write(head, reproducible_skops(sio.dumps(classifier)))
        full = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "tropeml_version": __version__,
            **config,
            "head": {"file": HEAD_FILE, "sha256": sha256_file(head)},
            "packages": package_versions(),
        }
        fsync_write(tmp / CONFIG_FILE, (json.dumps(full, indent=2) + "\n").encode())
        fsync_write(tmp / TAXONOMY_FILE, Path(taxonomy_path).read_bytes())
        fsync_write(tmp / CARD_FILE, card.encode())
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; a model folder is not
        old = None
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
            old.rmdir()
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_config(folder: str | Path) -> dict[str, Any]:
    """Read and validate a model folder's ``config.json``.

    Raises:
        TropemlError: If the folder or file is missing, not JSON, lacks a field, or was
            written by a newer, incompatible tropeml.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise TropemlError(f"{folder}: model folder not found")
    path = folder / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TropemlError(f"{path}: missing; not a tropeml model folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TropemlError(f"{path}: unreadable config ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise TropemlError(f"{path}: not a tropeml model config")
    for key, kind in _REQUIRED.items():
        if not isinstance(config.get(key), kind):
            raise TropemlError(f"{path}: field {key!r} missing or not a {kind.__name__}")
    if config["format_version"] > FORMAT_VERSION:
        raise TropemlError(
            f"{path}: model format {config['format_version']} was written by tropeml "
            f"{config['tropeml_version']}; this tropeml ({__version__}) reads up to "
            f"{FORMAT_VERSION}. Upgrade tropeml."
        )
    tags = config["tags"]
    if not tags or not all(isinstance(t, str) for t in tags):
        raise TropemlError(f"{path}: 'tags' must be a non-empty list of tag ids")
    if set(config["thresholds"]) != set(tags):
        raise TropemlError(f"{path}: 'thresholds' must give one threshold per tag")
    if not all(_is_number(v) and 0 <= v <= 1 for v in config["thresholds"].values()):
        raise TropemlError(f"{path}: 'thresholds' must be numbers between 0 and 1")
    for key in ("top_k", "max_evidence"):
        value = config["rollup"].get(key, 1)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise TropemlError(f"{path}: 'rollup.{key}' must be a positive integer")
    return config


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_model(folder: str | Path) -> tuple[TropeClassifier, dict[str, Any], Taxonomy]:
    """Load a model folder safely.

    Returns:
        The classifier, the config and the model's taxonomy.

    Raises:
        TropemlError: On a missing or corrupt file, a head whose hash does not match the
            config, a head holding a type not on the allow-list, or a head that does not
            fit the config (tags, embedding dimension).
    """
    sio = skops_io()

    folder = Path(folder)
    config = read_config(folder)
    if config["head"].get("file", HEAD_FILE) != HEAD_FILE:
        raise TropemlError(f"{folder / CONFIG_FILE}: head file must be {HEAD_FILE!r}")
    head = folder / HEAD_FILE
    if not head.is_file():
        raise TropemlError(f"{head}: classifier head missing")
    if sha256_file(head) != config["head"].get("sha256"):
        raise TropemlError(f"{head}: does not match the hash in config.json (corrupt or altered)")
    try:
        untrusted = sio.get_untrusted_types(file=head)
    except Exception as exc:
        raise TropemlError(f"{head}: not a readable skops file ({type(exc).__name__})") from None
    refused = sorted(set(untrusted) - TRUSTED_TYPES)
    if refused:
        raise TropemlError(f"{head}: refusing to load untrusted type(s): {', '.join(refused)}")
    try:
        classifier = sio.load(head, trusted=sorted(set(untrusted)))
    except Exception as exc:
        raise TropemlError(f"{head}: cannot load classifier ({type(exc).__name__})") from None
    if not isinstance(classifier, TropeClassifier):
        raise TropemlError(f"{head}: holds a {type(classifier).__name__}, not a TropeClassifier")
    if list(getattr(classifier, "classes_", [])) != list(config["tags"]):
        raise TropemlError(f"{head}: its tags do not match config.json")
    dim = config["encoder"].get("dimension")
    if getattr(classifier, "n_features_in_", None) != dim:
        raise TropemlError(
            f"{head}: expects {getattr(classifier, 'n_features_in_', '?')}-d embeddings but "
            f"the encoder in config.json gives {dim}"
        )
    taxonomy = Taxonomy.load(folder / TAXONOMY_FILE)
    taxonomy.check_ids(list(config["tags"]), str(folder / CONFIG_FILE))
    return classifier, config, taxonomy
