"""The int8 recipe's fallback: outlier-fed MatMuls found on the probes and kept in float."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tropeml.core.errors import TropemlError
from tropeml.model import onnx_backend, onnx_export
from tropeml.model.onnx_backend import OnnxEncoder

onnx = pytest.importorskip("onnx")
tokenizers = pytest.importorskip("tokenizers")

WIDTH = 4


def _tiny_source(folder: Path) -> Path:
    """A word-level tokenizer and a two-MatMul graph; only "Rain" embeds to an outlier.

    ``spiky`` multiplies the raw embeddings (one value of 1000 among ~N(0, 1)); ``calm``
    multiplies their tanh (never past 1). "Rain" is one token of all the probes.
    """
    from onnx import TensorProto, helper, numpy_helper
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "Rain": 1}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))
    rng = np.random.default_rng(0)
    table = rng.normal(size=(len(vocab), WIDTH)).astype(np.float32)
    table[1, 0] = 1000.0
    # give [UNK] spread so the 99.9th percentile is a normal value: one row per position
    position = rng.normal(size=(512, WIDTH)).astype(np.float32)
    inits = [
        numpy_helper.from_array(table, "table"),
        numpy_helper.from_array(position, "position"),
        numpy_helper.from_array(rng.normal(size=(WIDTH, WIDTH)).astype(np.float32), "w_spiky"),
        numpy_helper.from_array(rng.normal(size=(WIDTH, WIDTH)).astype(np.float32), "w_calm"),
    ]
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["tok"]),
        helper.make_node("Shape", ["input_ids"], ["shape"], start=1, end=2),
        helper.make_node("Squeeze", ["shape"], ["n"]),
        helper.make_node("Range", ["zero", "n", "one"], ["pos_ids"]),
        helper.make_node("Gather", ["position", "pos_ids"], ["pos"]),
        helper.make_node("Add", ["tok", "pos"], ["emb"]),
        helper.make_node("MatMul", ["emb", "w_spiky"], ["a"], name="spiky"),
        helper.make_node("Tanh", ["emb"], ["squashed"]),
        helper.make_node("MatMul", ["squashed", "w_calm"], ["b"], name="calm"),
        helper.make_node("Add", ["a", "b"], ["last_hidden_state"]),
    ]
    inits += [
        numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"),
        numpy_helper.from_array(np.array(1, dtype=np.int64), "one"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, None]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, None]),
        ],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(folder / "model-fused.onnx"))
    return folder


def test_only_the_matmul_fed_outliers_is_named(tmp_path: Path) -> None:
    source = _tiny_source(tmp_path)
    assert onnx_export.outlier_matmuls(source, source / "model-fused.onnx") == ["spiky"]
    # a ratio above the spike's names nothing
    assert onnx_export.outlier_matmuls(source, source / "model-fused.onnx", ratio=1e6) == []


def test_requantise_keeps_the_outlier_matmul_in_float(tmp_path: Path) -> None:
    source = _tiny_source(tmp_path)
    assert onnx_export.requantise(source, tmp_path, "model-int8.onnx") == 1
    graph = onnx.load(str(tmp_path / "model-int8.onnx"))
    kinds = {n.name: n.op_type for n in graph.graph.node}
    assert kinds["spiky"] == "MatMul"  # untouched
    assert "calm" not in kinds and "MatMulInteger" in kinds.values()  # quantised


def _fake_build(monkeypatch: pytest.MonkeyPatch, cosines: list[float]) -> list[int]:
    """Fake every build step; the fidelity probe returns ``cosines`` in turn."""

    def fake_step(*paths: Path) -> None:
        paths[-1].write_bytes(b"not a model")

    for step in ("_export", "_fuse", "_quantise"):
        monkeypatch.setattr(onnx_export, step, fake_step)
    calls: list[int] = []

    def fake_requantise(source: Path, work: Path, model_file: str) -> int:
        calls.append(1)
        (work / model_file).write_bytes(b"still not a model")
        return 5

    monkeypatch.setattr(onnx_backend, "requantise", fake_requantise)
    answers = iter(cosines)

    def fake_fidelity(*args: Any, **kwargs: Any) -> dict[str, float]:
        c = next(answers)
        return {"mean_cosine": c, "min_cosine": c}

    monkeypatch.setattr(onnx_backend, "fidelity", fake_fidelity)
    return calls


def test_an_unfaithful_int8_model_is_quantised_again_and_says_how(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = _fake_build(monkeypatch, [0.04, 0.99])
    meta = OnnxEncoder(cache_dir=tmp_path).ensure_built()
    assert calls == [1]
    assert meta["recipe"] == onnx_export.RECIPES["int8-outliers"]
    assert meta["float_matmuls"] == 5 and meta["mean_cosine"] == 0.99
    assert "quantising again" in capsys.readouterr().err


def test_a_faithful_int8_model_keeps_the_plain_recipe(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = _fake_build(monkeypatch, [0.99])
    meta = OnnxEncoder(cache_dir=tmp_path).ensure_built()
    assert calls == [] and meta["recipe"] == onnx_export.RECIPES["int8"]
    assert "float_matmuls" not in meta


def test_still_unfaithful_after_the_fallback_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = _fake_build(monkeypatch, [0.04, 0.5])
    enc = OnnxEncoder(cache_dir=tmp_path)
    with pytest.raises(TropemlError, match="not faithful enough"):
        enc.ensure_built()
    assert calls == [1]
    assert not enc.folder.exists() or not any(enc.folder.iterdir())
