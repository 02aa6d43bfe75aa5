"""Local encoder folders: cache ids follow the files' content; sentence-transformers 6 pooling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tropeml.core.errors import TropemlError
from tropeml.model.encoders import SentenceTransformerEncoder
from tropeml.model.onnx_export import check_pooling


def _folder(tmp_path: Path, weights: bytes, pooling: dict[str, object]) -> Path:
    folder = tmp_path / "enc"
    (folder / "1_Pooling").mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "tokenizer.json").write_text("{}")
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return folder


def test_a_model_re_saved_in_place_gets_a_new_cache_id(tmp_path: Path) -> None:
    folder = _folder(tmp_path, b"a" * 64, {"pooling_mode_mean_tokens": True})
    before = SentenceTransformerEncoder(str(folder)).id
    (folder / "model.safetensors").write_bytes(b"b" * 64)  # fine-tuned: same size, new weights
    assert SentenceTransformerEncoder(str(folder)).id != before


@pytest.mark.parametrize(
    "pooling",
    [
        {"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False},
        {"pooling_mode": "mean", "word_embedding_dimension": 384},  # sentence-transformers 6
    ],
)
def test_mean_pooling_is_recognised_in_both_formats(
    tmp_path: Path, pooling: dict[str, object]
) -> None:
    check_pooling(_folder(tmp_path, b"x", pooling))


@pytest.mark.parametrize("pooling", [{"pooling_mode_cls_token": True}, {"pooling_mode": "cls"}, {}])
def test_other_pooling_is_refused(tmp_path: Path, pooling: dict[str, object]) -> None:
    with pytest.raises(TropemlError, match="mean-pooled"):
        check_pooling(_folder(tmp_path, b"x", pooling))
