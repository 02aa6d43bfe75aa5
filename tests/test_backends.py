"""Encoder backends: selection, cache namespaces, the fast (int8 ONNX) build and its fidelity."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ao3_fixtures import download_html
from test_cli import all_text, assert_one_line_error, json_lines, run, stderr_of, stdout_of

import tropeml
from tropeml.core.errors import TropemlError
from tropeml.model import onnx_backend, onnx_export
from tropeml.model.backends import BackendError, load_encoder
from tropeml.model.cache import CachedEncoder, EmbeddingCache
from tropeml.model.encoders import HashingEncoder, SentenceTransformerEncoder
from tropeml.model.onnx_backend import OnnxEncoder

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "seeds" / "002_1ddad86479ad2531.txt"


# --------------------------------------------------------------------------- selection


def test_hashing_encoder_ignores_the_backend() -> None:
    for backend in ("auto", "fast", "torch"):
        assert isinstance(load_encoder("hashing-64", backend=backend), HashingEncoder)


def test_torch_backend_gives_sentence_transformers() -> None:
    enc = load_encoder(None, backend="torch")
    assert isinstance(enc, SentenceTransformerEncoder)
    assert "torch" not in sys.modules or enc._st is None  # nothing loaded yet


def test_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(TropemlError, match="unknown backend 'gpu'"):
        load_encoder(None, backend="gpu")


def test_backend_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TROPEML_BACKEND", "torch")
    assert isinstance(load_encoder(None), SentenceTransformerEncoder)
    monkeypatch.setenv("TROPEML_BACKEND", "nope")
    with pytest.raises(TropemlError, match="unknown backend"):
        load_encoder(None)


# --------------------------------------------------------------------------- issue 16, point 7


@pytest.fixture
def loaded_with(monkeypatch: pytest.MonkeyPatch, tiny_model: Path) -> list[str | None]:
    """Record the backend each ``tropeml tag`` loads its model with."""
    from tropeml.serve import tagger

    seen: list[str | None] = []
    real = tagger.load

    def load(path: object = None, **kwargs: Any) -> tagger.Tagger:
        seen.append(kwargs.get("backend"))
        return real(tiny_model, **kwargs)

    monkeypatch.setattr(tagger, "load", load)
    return seen


def test_cli_backend_default_honours_the_environment(
    monkeypatch: pytest.MonkeyPatch, loaded_with: list[str | None], tmp_path: Path
) -> None:
    fic = tmp_path / "fic.txt"
    fic.write_text("Rain fell on the roof. She baked a cake.", encoding="utf-8")
    monkeypatch.delenv("TROPEML_BACKEND", raising=False)
    assert run("tag", fic, "--json").exit_code == 0
    monkeypatch.setenv("TROPEML_BACKEND", "torch")
    assert run("tag", fic, "--json").exit_code == 0
    assert run("tag", fic, "--json", "--backend", "float").exit_code == 0  # the flag wins
    assert loaded_with == ["auto", "torch", "float"]


def test_eval_backend_default_honours_the_environment(
    monkeypatch: pytest.MonkeyPatch, tiny_root: Path
) -> None:
    from tropeml.model import backends, training

    seen: list[str | None] = []
    monkeypatch.setattr(backends, "load_encoder", lambda name, backend=None: seen.append(backend))
    monkeypatch.setattr(training, "evaluate", lambda *a, **k: (_ for _ in ()).throw(SystemExit))
    monkeypatch.setenv("TROPEML_BACKEND", "float")
    run("eval", "--data", tiny_root / "data")
    monkeypatch.delenv("TROPEML_BACKEND")
    run("eval", "--data", tiny_root / "data")  # the serving default, as training uses it
    assert seen == ["float", "auto"]


@pytest.mark.parametrize("command", ["tag", "audit", "label"])
def test_bogus_backend_variable_is_one_line_naming_it(
    command: str, monkeypatch: pytest.MonkeyPatch, tiny_model: Path, tmp_path: Path
) -> None:
    fic = tmp_path / "fic.txt"
    fic.write_text(download_html(["Rain"]), encoding="utf-8")
    monkeypatch.setenv("TROPEML_BACKEND", "gpu")
    result = run(command, fic, "--model", tiny_model)
    line = assert_one_line_error(result, "unknown backend 'gpu' ($TROPEML_BACKEND)")
    assert "auto, fast, float, torch" in line and "config.json" not in line
    with pytest.raises(TropemlError, match=r"\$TROPEML_BACKEND"):
        tropeml.load(tiny_model)


@pytest.mark.parametrize("command", ["tag", "eval"])
def test_bogus_backend_flag_names_the_option_and_the_choices(
    command: str, tiny_model: Path, tmp_path: Path
) -> None:
    fic = tmp_path / "fic.txt"
    fic.write_text("Rain fell.", encoding="utf-8")
    args: list[str | Path] = (
        [fic, "--model", tiny_model] if command == "tag" else ["--data", tmp_path]
    )
    line = assert_one_line_error(run(command, *args, "--backend", "gpu"), "(--backend)")
    assert line == (
        "tropeml: error: unknown backend 'gpu' (--backend): choose auto, fast, float, torch"
    )
    with pytest.raises(TropemlError) as info:  # the API blames the argument, not the model
        tropeml.load(tiny_model, backend="gpu")
    assert str(info.value) == "unknown backend 'gpu': choose auto, fast, float, torch"


@pytest.fixture
def onnx_dir_is_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    afile = tmp_path / "afile"
    afile.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("TROPEML_ONNX_DIR", str(afile))
    return afile


def test_unwritable_onnx_folder_falls_back_to_torch(
    onnx_dir_is_a_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    enc = load_encoder(None, backend="auto")
    assert isinstance(enc, SentenceTransformerEncoder)
    (line,) = capsys.readouterr().err.strip().splitlines()  # no build was tried
    assert line.startswith(f"tropeml: warning: fast backend: cannot write {onnx_dir_is_a_file}")
    assert line.endswith("; using the torch backend")


def test_unwritable_onnx_folder_with_fast_is_one_line(
    onnx_dir_is_a_file: Path, fic_of_the_default_model: Path
) -> None:
    with pytest.raises(BackendError, match="fast backend: cannot write"):
        load_encoder(None, backend="fast")
    result = run("tag", fic_of_the_default_model, "--backend", "fast", "--no-cache")
    line = assert_one_line_error(result, "cannot write", str(onnx_dir_is_a_file))
    assert "TROPEML_ONNX_DIR" in line and "config.json" not in line


@pytest.fixture
def fic_of_the_default_model(tmp_path: Path) -> Path:
    fic = tmp_path / "fic.txt"
    fic.write_text("Rain fell on the roof. She baked a cake.", encoding="utf-8")
    return fic


@pytest.mark.integration
def test_unwritable_onnx_folder_tags_on_torch_from_the_cli(
    onnx_dir_is_a_file: Path, fic_of_the_default_model: Path
) -> None:
    result = run("tag", fic_of_the_default_model, "--json", "--no-cache")
    assert result.exit_code == 0, all_text(result)
    (line,) = [x for x in stderr_of(result).splitlines() if x.startswith("tropeml:")]
    assert "cannot write" in line and line.endswith("using the torch backend")
    (obj,) = json_lines(stdout_of(result))
    assert obj["model"] == "default"


def _no_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name == "onnxruntime" else real(name, package)

    monkeypatch.setattr("tropeml.model.backends.importlib.util.find_spec", find_spec)


def test_fast_without_onnxruntime_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_onnxruntime(monkeypatch)
    with pytest.raises(TropemlError, match="onnxruntime is not installed"):
        load_encoder(None, backend="fast")


def test_auto_falls_back_to_torch_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_onnxruntime(monkeypatch)
    enc = load_encoder(None, backend="auto")
    assert isinstance(enc, SentenceTransformerEncoder)
    assert "using the torch backend" in capsys.readouterr().err


def test_missing_model_without_build_says_how_to_build(tmp_path: Path) -> None:
    enc = OnnxEncoder(cache_dir=tmp_path, build=False)
    assert not enc.is_built()
    with pytest.raises(TropemlError, match="tropeml setup"):
        enc.embed(["text"])


def test_fast_and_torch_share_name_budget_and_tokens_but_not_the_cache_id(tmp_path: Path) -> None:
    fast, float_ = OnnxEncoder(cache_dir=tmp_path, build=False), SentenceTransformerEncoder()
    assert fast.name == float_.name  # what a model folder's config records
    assert fast.id != float_.id  # int8 vectors never mix with float ones in the cache
    assert fast.max_tokens == float_.max_tokens and fast.dimension == float_.dimension
    texts = ["Hello there, Alex.", "A longer sentence about rain and umbrellas."]
    assert fast.count_tokens(texts) == float_.count_tokens(texts)


class _Named(HashingEncoder):
    def __init__(self, id: str, shift: float) -> None:
        super().__init__(16)
        self.id, self.shift, self.calls = id, shift, 0

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        return super().embed(texts) + self.shift


def test_cache_keeps_each_backends_vectors_apart(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "e.sqlite3")
    a, b = _Named("m@1", 0.0), _Named("m@1#tropeml-onnx-int8-v1", 1.0)
    va = CachedEncoder(a, cache).embed(["same text"])
    vb = CachedEncoder(b, cache).embed(["same text"])
    assert a.calls == b.calls == 1  # the second backend did not get the first one's vector
    assert not np.allclose(va, vb)
    CachedEncoder(b, cache).embed(["same text"])
    assert b.calls == 1


def test_failed_export_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def boom(*paths: Path) -> None:
        raise RuntimeError("exporter exploded\nwith details")

    monkeypatch.setattr(onnx_export, "_export", boom)
    with pytest.raises(TropemlError, match="building the ONNX model failed") as info:
        OnnxEncoder(cache_dir=tmp_path).ensure_built()
    assert "\n" not in str(info.value)


def test_outdated_meta_means_rebuild(tmp_path: Path) -> None:
    (tmp_path / "meta.json").write_text(json.dumps({"format": onnx_backend.FORMAT}))
    assert onnx_backend.read_meta(tmp_path) is None
    (tmp_path / "meta.json").write_text("{torn")
    assert onnx_backend.read_meta(tmp_path) is None


# --------------------------------------------------------------------------- the real thing


@pytest.fixture(scope="module")
def fast(onnx_dir: Path) -> Iterator[OnnxEncoder]:
    """The real int8 model, built once per session into the shared ONNX folder."""
    enc = OnnxEncoder(cache_dir=onnx_dir)
    enc.ensure_built()
    yield enc


@pytest.mark.integration
def test_fast_backend_is_faithful_to_the_float_encoder(fast: OnnxEncoder) -> None:
    meta = fast.ensure_built()
    assert meta["mean_cosine"] >= onnx_export.MIN_MEAN_COSINE
    assert meta["min_cosine"] >= onnx_export.MIN_COSINE
    texts = [
        "The kettle clicked off and neither of them moved to pour.",
        "He came back from the war with one boot and no name.",
        "short",
    ]
    a, b = fast.embed(texts), SentenceTransformerEncoder().embed(texts)
    assert a.shape == b.shape == (3, 384) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(a * b, axis=1))) > 0.97
    # batching and ordering do not change a text's vector
    np.testing.assert_allclose(fast.embed(texts[::-1])[::-1], a, atol=1e-5)
    assert fast.embed([]).shape == (0, 384)


@pytest.mark.integration
def test_fast_vectors_do_not_depend_on_the_batch(fast: OnnxEncoder) -> None:
    """Dynamic int8 quantisation scales by the whole input: each text runs alone, bit for bit."""
    rng = np.random.default_rng(0)
    words = "the rain kept on and she would not let go of his hand until morning came".split()
    texts = [" ".join(rng.choice(words, size=int(n))) for n in rng.integers(3, 120, size=24)]
    together = fast.embed(texts)
    for i in (0, 7, 23):
        assert np.array_equal(fast.embed([texts[i]])[0], together[i])
        mixed = fast.embed([texts[i], *texts[:5], "x " * 200])
        assert np.array_equal(mixed[0], together[i])


@pytest.mark.integration
def test_fast_cold_tag_never_imports_torch_or_sklearn(fast: OnnxEncoder, tmp_path: Path) -> None:
    """Tagging on the fast backend reads the head from head.npz: no torch, sklearn or skops."""
    code = (
        "import sys\n"
        f"sys.argv = ['tropeml', 'tag', '--json', '--backend', 'fast', {str(SEED)!r}]\n"
        "from tropeml.cli.app import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = sorted(m for m in ('torch', 'sentence_transformers', 'transformers',"
        " 'sklearn', 'skops', 'scipy') if m in sys.modules)\n"
        "print('heavy', heavy)\n"
    )
    env = {**os.environ, "TROPEML_CACHE_DIR": str(tmp_path / "cache"), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "heavy []", proc.stdout
    assert json.loads(lines[0])["source"] == str(SEED)


@pytest.mark.integration
def test_float_backend_gives_torchs_vectors_without_torch(onnx_dir: Path) -> None:
    enc = load_encoder(None, backend="float")
    assert isinstance(enc, OnnxEncoder) and enc.precision == "fp32" and enc.backend == "float"
    meta = enc.ensure_built()
    assert meta["min_cosine"] >= onnx_export.MIN_COSINE_FP32
    assert enc.model_file.name == "model-fp32.onnx"
    fast = OnnxEncoder(cache_dir=onnx_dir)
    assert len({enc.id, fast.id, SentenceTransformerEncoder().id}) == 3  # three cache namespaces
    assert enc.folder != fast.folder
    texts = ["The kettle clicked off and neither of them moved to pour.", "short"]
    a, b = enc.embed(texts), SentenceTransformerEncoder().embed(texts)
    assert float(np.min(np.sum(a * b, axis=1))) > 0.9999


def test_unknown_precision_is_a_clear_error() -> None:
    with pytest.raises(TropemlError, match="unknown precision"):
        OnnxEncoder(precision="int4")
