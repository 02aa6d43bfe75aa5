"""The array head: the classifier's prediction from head.npz, without scikit-learn."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import FILLER, VOCAB, ClassifierSettings, edit_config, make_passage, rewrite_arrays
from hypothesis import given, settings
from hypothesis import strategies as st

import tropeml
from tropeml.core.errors import TropemlError
from tropeml.model.classifier import TropeClassifier
from tropeml.model.head import ArrayHead
from tropeml.model.head_export import export_arrays, npz_bytes
from tropeml.model.persistence import ARRAYS_FILE, load_head, load_model

TAGS = ["rain", "cake", "sword", "never"]


def _data(n: int = 80, d: int = 16, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    texts, rows = [], []
    for _ in range(n):
        tags = [t for t in TAGS[:3] if rng.random() < 0.35]
        texts.append(make_passage(rng, tags, 30))
        rows.append([1 if t in tags else 0 for t in TAGS[:3]] + [-1])  # "never": zero-shot
    Y = np.array(rows, dtype=np.int8)
    X = nrng.normal(size=(n, d)).astype(np.float32) + Y[:, :3].repeat(6, axis=1)[:, :d]
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    P = nrng.normal(size=(len(TAGS), d)).astype(np.float32)
    P /= np.linalg.norm(P, axis=1, keepdims=True)
    groups = np.repeat(np.arange(n // 8), 8)[:n]
    return X, Y, groups, texts, P


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"ngram_range": (1, 2)},
        {"lexical_weight": 0.0},
        {"prototype_weight": 0.0, "embedding_weight": 1.0},
        {"stack_C": None},
    ],
    ids=["default", "bigrams", "no-lexical", "no-prototype-weight", "fixed-weights"],
)
def test_array_head_scores_as_the_classifier_does(
    params: ClassifierSettings, tmp_path: Path
) -> None:
    X, Y, groups, texts, P = _data()
    clf = TropeClassifier(tags=TAGS, prototypes=P, **params).fit(X, Y, groups, texts=texts)
    arrays = export_arrays(clf)
    assert arrays is not None
    (tmp_path / "head.npz").write_bytes(npz_bytes(arrays))
    head = ArrayHead.load(tmp_path / "head.npz")
    Xn, _, _, tn, _ = _data(40, seed=1)
    use = tn if clf.uses_texts else None
    assert head.uses_texts == clf.uses_texts
    np.testing.assert_allclose(
        head.decision_function(Xn, use), clf.decision_function(Xn, use), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        head.predict_proba(Xn, use), clf.predict_proba(Xn, use), rtol=1e-6, atol=1e-7
    )
    assert list(head.classes_) == TAGS
    np.testing.assert_array_equal(head.thresholds_, clf.thresholds_)
    assert head.n_features_in_ == clf.n_features_in_


def test_version_1_arrays_with_one_weight_per_view_still_load(tmp_path: Path) -> None:
    """Heads saved before per-tag view weights (version 1, weights of shape (3,)) still load."""
    X, Y, groups, texts, P = _data()
    clf = TropeClassifier(tags=TAGS, prototypes=P, stack_C=None).fit(X, Y, groups, texts=texts)
    arrays = export_arrays(clf)
    assert arrays is not None and arrays["weights"].shape == (3, len(TAGS))
    arrays.update(version=np.asarray(1), weights=np.array([0.5, 1.0, 1.0]))
    (tmp_path / "head.npz").write_bytes(npz_bytes(arrays))
    head = ArrayHead.load(tmp_path / "head.npz")
    np.testing.assert_allclose(
        head.decision_function(X, texts), clf.decision_function(X, texts), rtol=1e-5, atol=1e-5
    )


_PIECES = [*FILLER[:4], *VOCAB["rain"][:3], "Rain", "RAIN", "é", "ß", "İ", "'", "-", "\n", ".", " "]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=3)), max_size=30).map(
            " ".join
        ),
        min_size=1,
        max_size=5,
    )
)
def test_array_head_tokenises_any_text_as_tfidf_does(texts: list[str]) -> None:
    clf = _fitted_lexical()
    head = ArrayHead.from_arrays(export_arrays(clf) or {})
    X = np.zeros((len(texts), clf.n_features_in_), dtype=np.float32)
    X[:, 0] = 1.0
    np.testing.assert_allclose(
        head.decision_function(X, texts), clf.decision_function(X, texts), rtol=1e-5, atol=1e-5
    )


_CACHE: dict[str, TropeClassifier] = {}


def _fitted_lexical() -> TropeClassifier:
    if "clf" not in _CACHE:
        X, Y, groups, texts, P = _data()
        _CACHE["clf"] = TropeClassifier(tags=TAGS, prototypes=P, ngram_range=(1, 3)).fit(
            X, Y, groups, texts=texts
        )
    return _CACHE["clf"]


def test_head_needs_texts_when_it_has_a_lexical_view() -> None:
    head = ArrayHead.from_arrays(export_arrays(_fitted_lexical()) or {})
    with pytest.raises(ValueError, match="pass texts="):
        head.decision_function(np.zeros((1, 16), dtype=np.float32))
    with pytest.raises(ValueError, match="expects"):
        head.decision_function(np.zeros((1, 3), dtype=np.float32), ["a"])


def test_npz_bytes_are_reproducible() -> None:
    arrays = export_arrays(_fitted_lexical()) or {}
    assert npz_bytes(arrays) == npz_bytes(export_arrays(_fitted_lexical()) or {})


def test_unsupported_vectorizer_settings_mean_no_arrays() -> None:
    clf = _fitted_lexical()
    vectorizer = clf.vectorizer_
    old = vectorizer.strip_accents
    vectorizer.strip_accents = "unicode"
    try:
        assert export_arrays(clf) is None
    finally:
        vectorizer.strip_accents = old


def test_model_folder_serves_tagging_from_the_arrays(tiny_model: Path) -> None:
    head, config, _ = load_head(tiny_model)
    clf, _, _ = load_model(tiny_model)
    assert isinstance(head, ArrayHead)
    assert ARRAYS_FILE in config["files"]
    tagger = tropeml.load(tiny_model, cache=False)
    assert isinstance(tagger.classifier, ArrayHead)
    work = tropeml.read_work(tiny_model.parent.parent / "fics" / "one.txt")
    passages = tagger.passages(work)
    texts = tagger.texts(passages, work)
    X = tagger.embed_texts(texts)
    np.testing.assert_allclose(
        head.predict_proba(X, texts), clf.predict_proba(X, texts), rtol=1e-6, atol=1e-7
    )


def test_folder_without_arrays_is_served_from_skops(tiny_model: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "old"
    shutil.copytree(tiny_model, folder)
    (folder / ARRAYS_FILE).unlink()
    edit_config(folder, lambda c: c["files"].pop(ARRAYS_FILE))
    head, _, _ = load_head(folder)
    assert isinstance(head, TropeClassifier)
    assert tropeml.load(folder, cache=False).tag("Rain on the window.").n_passages == 1


@pytest.mark.parametrize(
    ("change", "pickle", "message"),
    [
        ({"classes": np.array([1, 2], dtype=object)}, True, "cannot load head arrays"),
        ({"scale": np.zeros(3)}, False, "incomplete or malformed"),
        ({"version": np.asarray(99)}, False, "unknown version"),
        ({"vocabulary": np.arange(3)}, False, "incomplete or malformed"),
    ],
    ids=["pickled-objects", "wrong-shape", "newer-version", "vocabulary-not-text"],
)
def test_forged_arrays_are_refused(
    tiny_model: Path, tmp_path: Path, change: dict[str, np.ndarray], pickle: bool, message: str
) -> None:
    import shutil

    folder = tmp_path / "forged"
    shutil.copytree(tiny_model, folder)
    rewrite_arrays(folder, change, pickle)
    with pytest.raises(TropemlError, match=message):
        load_head(folder)


def test_edited_arrays_fail_the_hash(tiny_model: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "edited"
    shutil.copytree(tiny_model, folder)
    data = bytearray((folder / ARRAYS_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / ARRAYS_FILE).write_bytes(bytes(data))
    with pytest.raises(TropemlError, match="does not match the hash"):
        load_head(folder)


def test_shipped_model_has_arrays_that_match_its_head() -> None:
    root = Path(__file__).resolve().parent.parent / "models" / "default"
    config = json.loads((root / "config.json").read_text())
    assert ARRAYS_FILE in config["files"]
    head, _, _ = load_head(root)
    clf, _, _ = load_model(root)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(20, 384)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    texts = ["She held him while the rain came down and the sirens faded."] * 20
    np.testing.assert_allclose(
        head.predict_proba(X, texts), clf.predict_proba(X, texts), rtol=1e-6, atol=1e-7
    )
