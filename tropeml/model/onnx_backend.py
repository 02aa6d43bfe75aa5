"""The fast backend: the encoder as a fused, int8-quantised ONNX graph, run without torch.

On first use the sentence-transformers model (a mean-pooled BERT such as all-MiniLM-L6-v2)
is exported once to ONNX with eager attention, fused with onnxruntime's transformer
optimiser, quantised to int8 with dynamic quantisation, and checked against the float
encoder on a fixed probe set. Only then is it written (atomically) into the cache folder,
next to a ``meta.json`` that records its fidelity. Later runs load it with onnxruntime and
the ``tokenizers`` library; torch is never imported. ``meta.json`` also records a digest of
the source folder's files: if they change, the model is rebuilt from them.

Building needs torch and transformers (both come with sentence-transformers; the export
itself is :mod:`tropeml.model.onnx_export`); running needs only onnxruntime, tokenizers and
numpy.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from tropeml.core.errors import TropemlError
from tropeml.core.fileio import atomic_write_bytes, atomic_write_text
from tropeml.core.resources import cache_root
from tropeml.model.encoders import DEFAULT_ENCODER, SentenceTransformerEncoder, _normalise
from tropeml.model.onnx_export import (
    MIN_COSINE,
    MIN_COSINE_FP32,
    MIN_MEAN_COSINE,
    PROBES,
    RECIPES,
    check_pooling,
    export_graph,
    fidelity,
    requantise,
)
from tropeml.model.weights import encoder_files, folder_digest

_T = TypeVar("_T")

FORMAT = "tropeml-onnx-int8"
FORMAT_VERSION = 1
MODEL_FILE = "model-int8.onnx"
META_FILE = "meta.json"

PRECISION_OF = {"fast": "int8", "float": "fp32"}
"""The ONNX backends: ``fast`` is quantised to int8, ``float`` is the fused graph in fp32."""

PRECISIONS = tuple(PRECISION_OF.values())

_BACKEND_OF = {precision: backend for backend, precision in PRECISION_OF.items()}


def default_backend_dir() -> Path:
    """Return the folder of built ONNX models.

    ``$TROPEML_ONNX_DIR`` if set, else ``onnx/`` next to the embedding cache.
    """
    root = os.environ.get("TROPEML_ONNX_DIR")
    return Path(root) if root else cache_root() / "onnx"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:120]


class OnnxEncoder:
    """A mean-pooled BERT sentence encoder run as an ONNX graph with onnxruntime.

    Same name, tokenizer, passage budget and dimension as the
    :class:`~tropeml.model.encoders.SentenceTransformerEncoder` it is built from, but a different
    :attr:`id`, so cached int8 (or fp32 ONNX) vectors never mix with torch ones.

    Args:
        model: Model name or local folder; ``None`` for the default all-MiniLM-L6-v2.
        batch_size: Texts per forward pass.
        cache_dir: Where built models live (default: ``onnx/`` next to the embedding cache).
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).
        build: Build the ONNX model on first use if it is missing (otherwise raise).
        precision: ``"int8"`` (the fast backend: quantised) or ``"fp32"`` (the float
            backend: the fused float graph, whose vectors match torch's to cosine 0.9999).
    """

    def __init__(
        self,
        model: str | None = None,
        batch_size: int = 32,
        cache_dir: str | Path | None = None,
        threads: int | None = None,
        build: bool = True,
        precision: str = "int8",
    ) -> None:
        if precision not in PRECISIONS:
            raise TropemlError(f"unknown precision {precision!r}: choose {', '.join(PRECISIONS)}")
        self.model = model
        self.batch_size = batch_size
        self.threads = threads
        self.build = build
        self.precision = precision
        self.backend = _BACKEND_OF[precision]
        self._float = SentenceTransformerEncoder(model)
        if self._float._path is None:
            raise TropemlError(
                f"fast backend: encoder {self._float.name!r} is not a local model folder"
            )
        self.source = self._float._path
        root = Path(cache_dir) if cache_dir is not None else default_backend_dir()
        suffix = "" if precision == "int8" else f"-{precision}"
        self.folder = root / (_slug(self._float.id) + suffix)
        self._session: Any = None
        self._tokenizer: Any = None
        self._workers = 1 if threads else max(1, min(8, os.cpu_count() or 1))

    # the float encoder's identity, budget and tokenizer --------------------------------------

    @property
    def name(self) -> str:
        """Return the model's name (as recorded in a model folder's config)."""
        return self._float.name

    @property
    def version(self) -> str:
        """Return the float weights' version."""
        return self._float.version

    @property
    def id(self) -> str:
        """Return the cache namespace: the float model's id plus this backend's format."""
        run = "-row" if self.precision == "int8" else ""  # one text per call (see embed)
        return f"{self._float.id}#{_format(self.precision)}-v{FORMAT_VERSION}{run}"

    @property
    def max_tokens(self) -> int:
        """Return the content token budget (special tokens excluded)."""
        return self._float.max_tokens

    @property
    def dimension(self) -> int:
        """Return the embedding dimension ``d``."""
        return self._float.dimension

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Count tokens with the model's tokenizer, special tokens excluded."""
        return self._float.count_tokens(texts)

    # running ----------------------------------------------------------------------------------

    @property
    def model_file(self) -> Path:
        """Return the path of the ONNX file."""
        return self.folder / _model_file(self.precision)

    def is_built(self) -> bool:
        """Return whether a verified model for this encoder is in the cache."""
        return self._built_meta() is not None

    def _built_meta(self) -> dict[str, Any] | None:
        """The built model's ``meta.json``, if it is there and built from today's weights.

        A model built by tropeml 0.2 or later records a digest of its source folder's files
        (``source_sha256``); if the folder changed since, the model is stale.
        """
        meta = read_meta(self.folder, self.precision)
        if meta is None or not self.model_file.is_file():
            return None
        recorded = meta.get("source_sha256")
        if recorded is not None and recorded != folder_digest(encoder_files(self.source)):
            return None
        return meta

    def ensure_built(self) -> dict[str, Any]:
        """Build (if needed) and return the model's ``meta.json`` (fidelity and provenance).

        Raises:
            TropemlError: If it is missing and ``build`` is off, or building or the fidelity
                check fails.
        """
        meta = self._built_meta()
        if meta is None:
            if not self.build:
                raise TropemlError(
                    f"{self.backend} backend: no {self.precision} model of today's encoder "
                    f"files in {self.folder}; run "
                    f"`tropeml setup{'' if self.precision == 'int8' else ' --backend float'}`"
                )
            self._check_writable()  # before a minute of building, not after
            meta = build(self.source, self.folder, self._float, self.precision)
        return meta

    def _check_writable(self) -> None:
        """Raise a one-line error if the model's folder cannot be created or written."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.folder):
                pass
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise TropemlError(
                f"{self.backend} backend: cannot write {self.folder} ({reason}); set "
                "$TROPEML_ONNX_DIR to a writable folder or use --backend torch"
            ) from None

    def _load(self) -> Any:
        if self._session is None:
            self.ensure_built()
            try:
                import onnxruntime as ort
            except ImportError:
                raise TropemlError(
                    f"{self.backend} backend: onnxruntime is not installed (use --backend torch)"
                ) from None
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if self.threads or self.precision == "int8":
                # int8 runs one text per call on each of ``_workers`` threads (see embed)
                opts.intra_op_num_threads = self.threads or 1
            opts.log_severity_level = 3
            try:
                self._session = ort.InferenceSession(
                    str(self.model_file), opts, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:
                raise TropemlError(
                    f"{self.model_file}: cannot load ({type(exc).__name__}); delete it to rebuild"
                ) from None
            self._tokenizer = _padding_tokenizer(self.source, self.max_tokens + 2)
        return self._session

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        """Embed texts; returns shape ``(n, d)``, float32, L2-normalised.

        The float graph runs texts batched by length (less padding). The int8 graph runs one
        text per call: dynamic quantisation takes its activation scale from the whole input,
        so in a batch a text's vector would depend on its neighbours (and their padding).
        Alone, a text gets the same vector in any batch and from the cache. The output keeps
        the input order.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        session = self._load()
        feeds = {i.name for i in session.get_inputs()}
        encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        step = 1 if self.precision == "int8" else self.batch_size
        batches = [order[b : b + step] for b in range(0, len(order), step)]

        def run(rows: list[int]) -> NDArray[np.float32]:
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = len(encodings[i].ids)
                ids[r, :n] = encodings[i].ids
                mask[r, :n] = 1
            inputs = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in feeds:
                inputs["token_type_ids"] = np.zeros_like(ids)
            hidden = session.run(None, inputs)[0]  # (b, width, d)
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            return np.asarray(pooled, dtype=np.float32)

        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if step == 1 and len(batches) > 1:  # one text per call, a call per core at a time
            with ThreadPoolExecutor(self._workers) as pool:
                for rows, pooled in zip(batches, pool.map(run, batches), strict=True):
                    out[rows] = pooled
        else:
            for rows in batches:
                out[rows] = run(rows)
        return _normalise(out)


def _padding_tokenizer(folder: Path, max_length: int) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.enable_truncation(max_length=max_length)
    tok.no_padding()
    return tok


def _format(precision: str) -> str:
    return FORMAT if precision == "int8" else f"tropeml-onnx-{precision}"


def _model_file(precision: str) -> str:
    return MODEL_FILE if precision == "int8" else f"model-{precision}.onnx"


def read_meta(folder: Path, precision: str = "int8") -> dict[str, Any] | None:
    """Return a built model's ``meta.json``, or ``None`` if absent, unreadable or outdated."""
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != _format(precision):
        return None
    if meta.get("format_version") != FORMAT_VERSION:
        return None
    return meta


def _step(fn: Callable[..., _T], *args: Any) -> _T:
    """Run a build step; any failure becomes one line that points at the torch backend."""
    try:
        return fn(*args)
    except TropemlError:
        raise
    except Exception as exc:
        raise TropemlError(
            f"fast backend: building the ONNX model failed ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); "
            "use --backend torch"
        ) from None


def build(
    source: Path, folder: Path, reference: Any | None = None, precision: str = "int8"
) -> dict[str, Any]:
    """Export, fuse, quantise and verify the model in ``source``; write it into ``folder``.

    Args:
        source: A sentence-transformers model folder (mean pooling, BERT).
        folder: Where ``model-int8.onnx`` (or ``model-fp32.onnx``) and ``meta.json`` go
            (written atomically).
        reference: The float encoder to check against (default: loaded from ``source``).
        precision: ``"int8"`` quantises the fused graph; ``"fp32"`` keeps it in float.

    Returns:
        The ``meta.json`` contents (fidelity and provenance).

    Raises:
        TropemlError: If a step fails or the int8 model is not faithful enough.
    """
    check_pooling(source)
    reference = reference or SentenceTransformerEncoder(str(source))
    backend = _BACKEND_OF[precision]
    model_file = _model_file(precision)
    print(
        f"tropeml: building the {backend} ({precision} ONNX) encoder into {folder} (once)...",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory(prefix="tropeml-onnx-") as tmp:
        work = Path(tmp)
        _step(export_graph, source, work, model_file, precision)
        probe = OnnxEncoder(str(source), build=False, precision=precision)
        probe.folder = work
        meta: dict[str, Any] = {
            "format": _format(precision),
            "format_version": FORMAT_VERSION,
            "encoder": getattr(reference, "name", DEFAULT_ENCODER),
            "encoder_id": getattr(reference, "id", ""),
            "probes": len(PROBES),
            "recipe": RECIPES[precision],
            "source_sha256": folder_digest(encoder_files(source)),
        }
        atomic_write_text(work / META_FILE, json.dumps(meta))  # lets the probe load
        meta.update(fidelity(probe, reference))
        del probe  # releases the session before the file is copied
        need = (MIN_MEAN_COSINE, MIN_COSINE) if precision == "int8" else (MIN_COSINE_FP32,) * 2
        if precision == "int8" and (meta["mean_cosine"] < need[0] or meta["min_cosine"] < need[1]):
            print(
                f"tropeml: the int8 model is not faithful (mean cosine {meta['mean_cosine']:.4f}); "
                "quantising again with outlier layers kept in float...",
                file=sys.stderr,
            )
            meta["float_matmuls"] = _step(requantise, source, work, model_file)
            meta["recipe"] = RECIPES["int8-outliers"]
            probe = OnnxEncoder(str(source), build=False, precision=precision)
            probe.folder = work
            meta.update(fidelity(probe, reference))
            del probe
        if meta["mean_cosine"] < need[0] or meta["min_cosine"] < need[1]:
            raise TropemlError(
                f"{backend} backend: the {precision} model is not faithful enough (mean cosine "
                f"{meta['mean_cosine']:.4f}, min {meta['min_cosine']:.4f} against the float "
                f"model; need {need[0]} and {need[1]}); use --backend torch"
            )
        atomic_write_bytes(folder / model_file, (work / model_file).read_bytes())
    atomic_write_text(folder / META_FILE, json.dumps(meta, indent=2) + "\n")  # last: the seal
    print(
        f"tropeml: {backend} encoder ready (cosine to the float model: mean "
        f"{meta['mean_cosine']:.4f}, min {meta['min_cosine']:.4f})",
        file=sys.stderr,
    )
    return meta
