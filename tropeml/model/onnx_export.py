"""Making the ONNX encoder: export, fusion, int8 quantisation, and the fidelity probes.

Needs torch and transformers (both come with sentence-transformers) to export, and
onnxruntime to fuse and quantise. Nothing here runs the built model:
:mod:`tropeml.model.onnx_backend` does, and checks it with :func:`fidelity` on
:data:`PROBES` before it is kept.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tropeml.core.errors import TropemlError

_FUSED = "ONNX (opset 17, eager attention), onnxruntime BERT fusion"

RECIPES = {
    "int8": f"{_FUSED}, dynamic int8 quantisation (int8 weights per channel, uint8 activations)",
    "int8-outliers": f"{_FUSED}, dynamic int8 quantisation (7-bit weights per channel, uint8 "
    "activations); MatMuls whose input has outliers on the probes kept in float",
    "fp32": _FUSED,
}
"""How each model is made (recorded in its ``meta.json``).

``int8-outliers`` is the fallback when ``int8`` is not faithful (all-mpnet-base-v2 on a CPU
without VNNI: mean cosine 0.04). Two things break it: the u8 x s8 kernels of CPUs without VNNI
saturate 16-bit sums, which 7-bit weights avoid (``reduce_range``), and a few layers feed their
MatMul activations with outliers that one uint8 scale per text cannot hold (MPNet's later
FFN outputs: max 23-43 times the 99.9th percentile).
"""

OUTLIER_RATIO = 20.0
"""``int8-outliers`` keeps a MatMul in float when its input's max |x| on the probes exceeds
this many times its 99.9th percentile (all-mpnet-base-v2: 5 of 72 weight MatMuls; the next
highest ratio is 14)."""

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


def fidelity(fast: Any, reference: Any, texts: tuple[str, ...] = PROBES) -> dict[str, float]:
    """Compare two encoders on ``texts``: mean and minimum cosine of their vectors."""
    a = fast.embed(list(texts))
    b = reference.embed(list(texts))
    cos = np.sum(a * b, axis=1)
    return {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min())}


def check_pooling(source: Path) -> None:
    """Refuse a model the ONNX backends cannot run: not mean-pooled BERT, or no tokenizer.json."""
    pooling = source / "1_Pooling" / "config.json"
    try:
        cfg = json.loads(pooling.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cfg = {}
    modes = {k for k, v in cfg.items() if k.startswith("pooling_mode") and v is True}
    mean = modes == {"pooling_mode_mean_tokens"} or (  # sentence-transformers < 6 and 6+
        not modes and cfg.get("pooling_mode") == "mean"
    )
    if not mean or (source / "2_Dense").exists():
        raise TropemlError(
            f"fast backend: {source} is not a mean-pooled sentence-transformers model "
            "(use --backend torch)"
        )
    if not (source / "tokenizer.json").is_file():
        raise TropemlError(f"fast backend: {source} has no tokenizer.json (use --backend torch)")


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


def _quantise(model: Path, out: Path, keep_float: list[str] | None = None) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(model),
        str(out),
        weight_type=QuantType.QInt8,
        per_channel=True,  # per-tensor scales lose too much (mean cosine ~0.955 vs ~0.992)
        reduce_range=keep_float is not None,
        nodes_to_exclude=keep_float or [],
        # the fused graph holds contrib ops that shape inference cannot type
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def outlier_matmuls(source: Path, model: Path, ratio: float = OUTLIER_RATIO) -> list[str]:
    """Name the weight MatMuls of ``model`` whose input has outliers on :data:`PROBES`.

    Each probe runs alone (as the int8 backend runs texts); a MatMul is named when the
    largest |x| of its input, over every probe token, exceeds ``ratio`` times the 99.9th
    percentile of |x|.
    """
    import onnx
    import onnxruntime as ort
    from tokenizers import Tokenizer

    graph = onnx.load(str(model))
    weights = {i.name for i in graph.graph.initializer}
    matmuls = [n for n in graph.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    inputs = sorted({n.input[0] for n in matmuls})
    for name in inputs:
        graph.graph.output.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        )
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    del graph
    feeds = {i.name for i in session.get_inputs()}
    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=512)
    seen: dict[str, list[Any]] = {name: [] for name in inputs}
    for text in PROBES:
        ids = np.asarray([tokenizer.encode(text).ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if "token_type_ids" in feeds:
            feed["token_type_ids"] = np.zeros_like(ids)
        for name, value in zip(inputs, session.run(inputs, feed), strict=True):
            seen[name].append(np.abs(value).ravel())
    spread = {}
    for name, parts in seen.items():
        values = np.concatenate(parts)
        spread[name] = float(values.max()) / max(float(np.quantile(values, 0.999)), 1e-12)
    return [n.name for n in matmuls if spread[n.input[0]] > ratio]


def export_graph(source: Path, work: Path, model_file: str, precision: str) -> None:
    """Export, fuse and (for ``"int8"``) quantise ``source`` into ``work / model_file``.

    The fused float graph stays in ``work`` as ``model-fused.onnx`` for
    :func:`requantise`.
    """
    with _quiet():
        _export(source, work / "model.onnx")
        _fuse(source, work / "model.onnx", work / "model-fused.onnx")
        if precision == "int8":
            _quantise(work / "model-fused.onnx", work / model_file)
        else:
            os.replace(work / "model-fused.onnx", work / model_file)


def requantise(source: Path, work: Path, model_file: str) -> int:
    """Quantise ``work``'s fused graph again by the ``int8-outliers`` recipe.

    Returns:
        How many MatMuls were kept in float.
    """
    fused = work / "model-fused.onnx"
    with _quiet():
        keep = outlier_matmuls(source, fused)
        _quantise(fused, work / model_file, keep_float=keep)
    return len(keep)
