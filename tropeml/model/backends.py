"""Backends: run a sentence-transformers encoder with torch, or as ONNX without torch."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tropeml.core.errors import TropemlError
from tropeml.model.encoders import HashingEncoder, SentenceTransformerEncoder
from tropeml.model.onnx_backend import PRECISION_OF, OnnxEncoder
from tropeml.model.weights import verify_encoder

BACKENDS = ("auto", "fast", "float", "torch")
"""Ways to run a sentence-transformers encoder: ``fast`` (int8 ONNX with onnxruntime, no
torch), ``float`` (float32 ONNX, no torch), ``torch`` (sentence-transformers), ``auto`` (fast
where it can be built, else torch)."""


class BackendError(TropemlError):
    """The backend asked for is unknown or cannot be had (the model folder is not at fault)."""


ENV_VAR = "TROPEML_BACKEND"
"""The environment variable that picks the backend when none is given."""


def resolve_backend(backend: str | None, default: str = "auto", option: str | None = None) -> str:
    """Return the backend to use: ``backend``, else ``$TROPEML_BACKEND``, else ``default``.

    Args:
        backend: The backend asked for (``None``: not given).
        default: The backend when neither ``backend`` nor the variable is set.
        option: What ``backend`` came from, named in the error (e.g. ``"--backend"``).

    Raises:
        BackendError: If the value is not one of :data:`BACKENDS`; the message names the
            option or the environment variable it came from.
    """
    choices = ", ".join(BACKENDS)
    if backend is not None:
        if backend not in BACKENDS:
            source = f" ({option})" if option else ""
            raise BackendError(f"unknown backend {backend!r}{source}: choose {choices}")
        return backend
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return default
    if value not in BACKENDS:
        raise BackendError(f"unknown backend {value!r} (${ENV_VAR}): choose {choices}")
    return value


def load_encoder(
    name: str | None = None,
    backend: str | None = None,
    files: Mapping[str, str] | None = None,
    trust: bool = False,
    where: str | Path = "config.json",
    **kwargs: Any,
) -> Any:
    """Return the encoder for a name as stored in a model's config.

    ``"hashing-<d>"`` gives a :class:`HashingEncoder`; anything else (or ``None``) a
    sentence-transformers model run on ``backend``. Its folder is checked against ``files``
    before anything is loaded or built from it (the ONNX backends are built from the same
    folder; see :mod:`tropeml.model.weights`).

    Args:
        name: The encoder's name (``None``: the default all-MiniLM-L6-v2).
        backend: ``"auto"`` (default, or ``$TROPEML_BACKEND``), ``"fast"`` (int8 ONNX),
            ``"float"`` (float32 ONNX: torch's vectors without torch) or ``"torch"``.
        files: The SHA-256 of every encoder file, as the model recorded them
            (``encoder.files``); ``None`` or empty: nothing to verify.
        trust: Use the encoder even if its files differ from ``files``.
        where: The model's config file, named in errors.
        **kwargs: Passed to :class:`SentenceTransformerEncoder` (``batch_size``, ``device``).

    Raises:
        TropemlError: If the name is neither a local folder nor a known model.
        BackendError: If the backend is unknown, or ``"fast"`` or ``"float"`` was asked for
            and cannot be had.
        EncoderMismatchError: If the encoder's files are not the recorded ones (and not trusted).
    """
    backend = resolve_backend(backend)
    if name and (m := re.fullmatch(r"hashing-(\d+)", name)):
        return HashingEncoder(int(m.group(1)))
    enc = SentenceTransformerEncoder(name, **kwargs)
    if enc._path is None and "/" not in (name or "") and not Path(name or "").exists():
        raise TropemlError(f"unknown encoder {name!r}: not a local folder or a model name")
    verify_encoder(enc._path, files, where, trust)
    if backend == "torch":
        return enc
    if backend == "auto":
        return fast_or_fallback(enc)
    try:
        return fast_or_fallback(enc, required=True, precision=PRECISION_OF[backend])
    except TropemlError as exc:
        raise BackendError(str(exc)) from None


def fast_or_fallback(
    reference: SentenceTransformerEncoder, required: bool = False, precision: str = "int8"
) -> Any:
    """Return the ONNX encoder for ``reference``, building it if needed.

    Args:
        reference: The float encoder (its model folder is exported).
        required: Raise if the ONNX encoder cannot be had; otherwise warn on stderr and
            return ``reference``.
        precision: ``"int8"`` (the fast backend) or ``"fp32"`` (the float backend).

    Raises:
        TropemlError: If ``required`` and onnxruntime is missing or the build fails.
    """
    try:
        if importlib.util.find_spec("onnxruntime") is None:
            raise TropemlError("fast backend: onnxruntime is not installed")
        fast = OnnxEncoder(reference.model, batch_size=reference.batch_size, precision=precision)
        fast.ensure_built()
    except OSError as exc:  # e.g. the disk filled up while the model was saved
        error = TropemlError(
            f"fast backend: cannot save the ONNX model ({exc}); use --backend torch"
        )
        if required:
            raise error from None
        print(f"tropeml: warning: {error}; using the torch backend", file=sys.stderr)
        return reference
    except TropemlError as exc:
        if required:
            raise
        print(f"tropeml: warning: {exc}; using the torch backend", file=sys.stderr)
        return reference
    return fast
