"""What a model folder must be: its ``config.json`` schema, its hashes, its head's allowed types.

``config.json`` is validated against :data:`CONFIG_SCHEMA`, and records the SHA-256 of the
head and the taxonomy plus a content hash over them and the config fields that must agree
with the head (:data:`HASHED_FIELDS`, which include the encoder and the hashes of its files);
all are checked on load. A skops head may only name the types of an explicit allow-list
(:func:`untrusted_types`), checked from its schema before anything is built.
"""

from __future__ import annotations

import functools
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

from tropeml._version import __version__
from tropeml.core.errors import TropemlError
from tropeml.core.lazy import skops_io
from tropeml.model.workcal import FEATURES, READS

FORMAT = "tropeml-model"

FORMAT_VERSION = 2
"""2 added ``files`` and ``content_sha256``; folders of format 1 (head hash only) still load."""

HEAD_FILE = "head.skops"
CONFIG_FILE = "config.json"
TAXONOMY_FILE = "tropes.toml"
CARD_FILE = "README.md"

ARRAYS_FILE = "head.npz"
"""The classifier's prediction as plain arrays, for fast loading (see :mod:`tropeml.model.head`)."""

TRUSTED_TYPES = frozenset(
    {
        "tropeml.model.classifier.TropeClassifier",
        "tropeml.classifier.TropeClassifier",
        "tropeml.model.kernel.RbfView",
    }
)
"""tropeml's own types a head may hold (skops does not know them): the classifier, under its
0.2 path and its 0.1 path (heads saved by tropeml 0.1), and its RBF embedding view."""

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
_FLOOR = {"type": "number", "minimum": 0, "exclusiveMaximum": 1}
_FLOORS = {"type": "object", "additionalProperties": _FLOOR}
_NUMBER = {"type": "number"}
_NUMBERS = {"type": "object", "additionalProperties": _NUMBER}
_CROSS_PROPERTIES = {"bias": _NUMBER, "weights": _NUMBERS, "reads": {"enum": list(READS)}}
_CROSS = {"type": "object", "required": ["bias", "weights"], "properties": _CROSS_PROPERTIES}
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
                "files": {
                    "type": "object",
                    "propertyNames": {"pattern": r"^(?!/)(?!(?:.*/)?\.\.(?:/|$))[^\\]+$"},
                    "additionalProperties": _SHA256,
                    "message": "'encoder.files' must map relative paths to SHA-256 digests",
                },
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
                "calibration": {
                    "type": "object",
                    "required": ["intercept", "slope"],
                    "properties": {
                        "intercept": _NUMBER,
                        "slope": {"type": "number", "exclusiveMinimum": 0},
                    },
                    "message": "'rollup.calibration' must give a number 'intercept' and a "
                    "positive 'slope'",
                },
                "calibrator": {
                    "type": "object",
                    "required": ["features", "intercept", "weights", "tags"],
                    "properties": {
                        "features": {"const": list(FEATURES)},
                        "intercept": _NUMBER,
                        "weights": {
                            "type": "array",
                            "items": _NUMBER,
                            "minItems": len(FEATURES),
                            "maxItems": len(FEATURES),
                        },
                        "tags": _NUMBERS,
                        "floor": _FLOOR,
                        "floors": _FLOORS,
                        "sure": _FLOORS,
                        "cross": {"type": "object", "additionalProperties": _CROSS},
                    },
                    "message": "'rollup.calibrator' must give its 'features' "
                    f"({', '.join(FEATURES)}), a number 'intercept', one number per feature in "
                    "'weights', a number per tag in 'tags' and, if any, a 'floor' and per-tag "
                    "'floors' and 'sure' scores, each in [0, 1), and per-tag 'cross' ('bias', "
                    "'weights', 'reads')",
                },
            },
        },
        "mask_names": {"type": "boolean"},
        "screen": {
            "type": "object",
            "required": ["margin", "files"],
            "properties": {
                "margin": _NUMBER,
                "files": {
                    "type": "object",
                    "propertyNames": {"pattern": r"^[a-z][a-z_]*\.[a-z]+$"},
                    "additionalProperties": _SHA256,
                },
            },
            "message": "'screen' must give a margin and the SHA-256 of its files",
        },
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


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def content_hash(config: dict[str, Any]) -> str:
    """Return the SHA-256 over the config fields in :data:`HASHED_FIELDS` (canonical JSON)."""
    covered = {key: config.get(key) for key in HASHED_FIELDS}
    blob = json.dumps(covered, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode("ascii")).hexdigest()


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


def verified_config(folder: Path) -> dict[str, Any]:
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
    own = name in TRUSTED_TYPES or name in ALLOWED_BUILTINS
    return own or (_allowed_module(name) and name not in skops_untrusted)


def check_head_schema(head: Path) -> None:
    """Refuse a head that names a type from outside the allowed modules, or is no classifier.

    Only the schema is read (skops is not imported; nothing is built); the top-level object
    must be a ``TropeClassifier``.

    Raises:
        TropemlError: If the file is unreadable or refused.
    """
    names, root = _schema_names(head)
    _refuse(head, sorted(name for name in names if not _allowed_module(name)))
    if root not in TRUSTED_TYPES:
        raise TropemlError(f"{head}: holds a {root.rpartition('.')[2]}, not a TropeClassifier")


def allowed_skops_types(head: Path) -> set[str]:
    """Audit a skops head; return the types skops does not trust that tropeml allows.

    Raises:
        TropemlError: If the head names a type tropeml does not allow.
    """
    refused, skops_untrusted = _audit(head)
    _refuse(head, refused)
    return skops_untrusted
