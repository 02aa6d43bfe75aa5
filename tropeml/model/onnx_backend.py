"""The fast backend: the encoder as a fused, int8-quantised ONNX graph, run without torch.

On first use the sentence-transformers model (a mean-pooled BERT such as all-MiniLM-L6-v2)
is exported once to ONNX with eager attention, fused with onnxruntime's transformer
optimiser, quantised to int8 with dynamic quantisation, and checked against the float
encoder on a fixed probe set. Only then is it written (atomically) into the cache folder,
next to a ``meta.json`` that records its fidelity. Later runs load it with onnxruntime and
the ``tokenizers`` library; torch is never imported.

Building needs torch and transformers (both come with sentence-transformers); running needs
only onnxruntime, tokenizers and numpy.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tropeml.core.errors import TropemlError
from tropeml.core.fileio import atomic_write_bytes, atomic_write_text
from tropeml.model.cache import default_cache_path
from tropeml.model.encoders import DEFAULT_ENCODER, SentenceTransformerEncoder, _normalise

FORMAT = "tropeml-onnx-int8"
FORMAT_VERSION = 1
MODEL_FILE = "model-int8.onnx"
META_FILE = "meta.json"

PRECISION_OF = {"fast": "int8", "float": "fp32"}
"""The ONNX backends: ``fast`` is quantised to int8, ``float`` is the fused graph in fp32."""
PRECISIONS = tuple(PRECISION_OF.values())
_BACKEND_OF = {precision: backend for backend, precision in PRECISION_OF.items()}

_FUSED = "ONNX (opset 17, eager attention), onnxruntime BERT fusion"
RECIPES = {
    "int8": f"{_FUSED}, dynamic int8 quantisation (int8 weights per channel, uint8 activations)",
    "fp32": _FUSED,
}
"""How each model is made (recorded in its ``meta.json``)."""
RECIPE = RECIPES["int8"]

MIN_MEAN_COSINE = 0.98
"""The int8 model is refused unless its vectors match the float model's this well on average."""
MIN_COSINE = 0.95
"""... and at least this well on every probe text."""
MIN_COSINE_FP32 = 0.9999
"""The fp32 model must match the float model to this cosine on every probe text."""

PROBES = (
    "She waited by the window all night, and when the door finally opened she could not speak.",
    "He pressed the cloth to the wound and told her to stay awake, just stay awake.",
    "The funeral was a lie; he watched it from the hill, hood up, while they buried an empty box.",
    "Years later they met again at the station, older, and neither of them moved first.",
    "I love you, he said, as if it were an apology, and she laughed and kissed him.",
    "They ran all night through the pines, the hounds somewhere behind them.",
    "The pack circled the new alpha, who bared her teeth and did not back down.",
    "Rain.",
    "A quiet morning: coffee, a blanket, a cat asleep on the warm side of the bed.",
    "Her phone buzzed twice. Unknown number. She answered anyway, heart pounding.",
    "The letter said only: I'm sorry. I should have told you. Come home.",
    "The mark on his wrist burned the moment their hands touched, and he finally knew.",
    "Grief sat with him at breakfast, every day, in the chair nobody used any more.",
    "He stood between them and the blade, and he did not flinch, not even once.",
    " ".join(
        "The storm rolled over the harbour and the boats knocked together in the dark while "
        "the two of them argued in the kitchen about who should have gone back for the dog."
        for _ in range(12)
    ),
    'Chapter 3\n\n***\n\n"Don\'t," she whispered. "Don\'t you dare die on me."',
)
"""Fixed texts (written for tropeml) on which the int8 model is checked against the float one."""


def default_backend_dir() -> Path:
    """Return the folder of built ONNX models.

    ``$TROPEML_ONNX_DIR`` if set, else ``onnx/`` next to the embedding cache.
    """
    root = os.environ.get("TROPEML_ONNX_DIR")
    return Path(root) if root else default_cache_path().parent / "onnx"


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
        return f"{self._float.id}#{_format(self.precision)}-v{FORMAT_VERSION}"

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
        meta = read_meta(self.folder, self.precision)
        return meta is not None and self.model_file.is_file()

    def ensure_built(self) -> dict[str, Any]:
        """Build (if needed) and return the model's ``meta.json`` (fidelity and provenance).

        Raises:
            TropemlError: If it is missing and ``build`` is off, or building or the fidelity
                check fails.
        """
        meta = read_meta(self.folder, self.precision)
        if meta is None or not self.model_file.is_file():
            if not self.build:
                raise TropemlError(
                    f"{self.backend} backend: no {self.precision} model in {self.folder}; run "
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
            if self.threads:
                opts.intra_op_num_threads = self.threads
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

        Texts are batched by length (less padding); the output keeps the input order.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        session = self._load()
        feeds = {i.name for i in session.get_inputs()}
        encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for b in range(0, len(order), self.batch_size):
            rows = order[b : b + self.batch_size]
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
            out[rows] = pooled
        return _normalise(out)


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


def fidelity(fast: Any, reference: Any, texts: tuple[str, ...] = PROBES) -> dict[str, float]:
    """Compare two encoders on ``texts``: mean and minimum cosine of their vectors."""
    a = fast.embed(list(texts))
    b = reference.embed(list(texts))
    cos = np.sum(a * b, axis=1)
    return {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min())}


def _check_pooling(source: Path) -> None:
    pooling = source / "1_Pooling" / "config.json"
    try:
        cfg = json.loads(pooling.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cfg = {}
    modes = {k for k, v in cfg.items() if k.startswith("pooling_mode") and v}
    if modes != {"pooling_mode_mean_tokens"} or (source / "2_Dense").exists():
        raise TropemlError(
            f"fast backend: {source} is not a mean-pooled sentence-transformers model "
            "(use --backend torch)"
        )
    if not (source / "tokenizer.json").is_file():
        raise TropemlError(f"fast backend: {source} has no tokenizer.json (use --backend torch)")


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
    _check_pooling(source)
    reference = reference or SentenceTransformerEncoder(str(source))
    backend = _BACKEND_OF[precision]
    model_file = _model_file(precision)
    print(
        f"tropeml: building the {backend} ({precision} ONNX) encoder into {folder} (once)...",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory(prefix="tropeml-onnx-") as tmp:
        work = Path(tmp)
        try:
            with _quiet():
                _export(source, work / "model.onnx")
                _fuse(source, work / "model.onnx", work / "model-fused.onnx")
                if precision == "int8":
                    _quantise(work / "model-fused.onnx", work / model_file)
                else:
                    os.replace(work / "model-fused.onnx", work / model_file)
        except TropemlError:
            raise
        except Exception as exc:
            raise TropemlError(
                f"fast backend: building the ONNX model failed ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); "
                "use --backend torch"
            ) from None
        probe = OnnxEncoder(str(source), build=False, precision=precision)
        probe.folder = work
        meta: dict[str, Any] = {
            "format": _format(precision),
            "format_version": FORMAT_VERSION,
            "encoder": getattr(reference, "name", DEFAULT_ENCODER),
            "encoder_id": getattr(reference, "id", ""),
            "probes": len(PROBES),
            "recipe": RECIPES[precision],
        }
        atomic_write_text(work / META_FILE, json.dumps(meta))  # lets the probe load
        meta.update(fidelity(probe, reference))
        del probe  # releases the session before the file is copied
        need = (MIN_MEAN_COSINE, MIN_COSINE) if precision == "int8" else (MIN_COSINE_FP32,) * 2
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


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's and optimiser's warnings (they are about tracing, not errors)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _export(source: Path, out: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    bert = transformers.AutoModel.from_pretrained(str(source), attn_implementation="eager")
    bert.eval()

    class Hidden(torch.nn.Module):  # positional inputs in, last hidden state out
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.bert(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
            ).last_hidden_state

    ids = torch.ones((2, 16), dtype=torch.long)
    axes = {0: "batch", 1: "seq"}
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with torch.no_grad():
        torch.onnx.export(
            Hidden().eval(),
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(out),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={n: axes for n in [*names, "last_hidden_state"]},
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )


def _fuse(source: Path, model: Path, out: Path) -> None:
    from onnxruntime.transformers import optimizer

    cfg = json.loads((source / "config.json").read_text(encoding="utf-8"))
    opt = optimizer.optimize_model(
        str(model),
        model_type="bert",
        num_heads=int(cfg["num_attention_heads"]),
        hidden_size=int(cfg["hidden_size"]),
        opt_level=1,
    )
    opt.save_model_to_file(str(out))


def _quantise(model: Path, out: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(model),
        str(out),
        weight_type=QuantType.QInt8,
        per_channel=True,  # per-tensor scales lose too much (mean cosine ~0.955 vs ~0.992)
        # the fused graph holds contrib ops that shape inference cannot type
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
