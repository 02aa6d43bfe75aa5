from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import skops.io as sio
from conftest import edit_config
from sklearn.linear_model import LogisticRegression

from tropeml.core.errors import TropemlError
from tropeml.core.fileio import append_line, atomic_write_bytes
from tropeml.core.taxonomy import Taxonomy
from tropeml.model.card import _embedding_view
from tropeml.model.classifier import TropeClassifier
from tropeml.model.persistence import (
    CARD_FILE,
    CONFIG_FILE,
    CONFIG_SCHEMA,
    FORMAT_VERSION,
    HASHED_FILES,
    HEAD_FILE,
    TAXONOMY_FILE,
    content_hash,
    load_model,
    read_config,
    reproducible_skops,
    save_model,
    sha256_file,
)


def texts(n: int) -> list[str]:
    """Passage texts for a classifier with a lexical view."""
    return [f"the rain fell on the cake and the sword, day {i}" for i in range(n)]


class Evil:
    """Stands for a malicious payload: restoring its state writes a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["marker"]).write_text("pwned")
        self.__dict__.update(state)


@pytest.fixture
def model(tiny_model: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_model, tmp_path / "model"))


def replace_head(folder: Path, data: bytes) -> None:
    """Write a new head and record its hash, so only the checks after the hash can stop it."""
    (folder / HEAD_FILE).write_bytes(data)
    edit_config(folder, lambda c: None)


def fitted_classifier(tags: list[str], d: int = 16) -> TropeClassifier:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, d)).astype(np.float32)
    Y = (X[:, : len(tags)] > 0).astype(np.int8)
    return TropeClassifier(tags=tags).fit(X, Y, groups=np.arange(40) % 4)


@pytest.fixture(scope="module")
def clf() -> TropeClassifier:
    return fitted_classifier(["rain", "cake", "sword"])


def config_for(clf: TropeClassifier) -> dict[str, Any]:
    tags = [str(t) for t in clf.classes_]
    return {
        "name": "test",
        "tags": tags,
        "thresholds": {t: float(x) for t, x in zip(tags, clf.thresholds_, strict=True)},
        "encoder": {"name": "hashing-16", "dimension": int(clf.n_features_in_)},
        "rollup": {"top_k": 2, "max_evidence": 3},
    }


# loading the tiny model


def test_load_tiny_model(model: Path) -> None:
    clf, config, taxonomy = load_model(model)
    assert isinstance(clf, TropeClassifier)
    assert isinstance(taxonomy, Taxonomy)
    assert list(clf.classes_) == config["tags"] == ["rain", "cake", "sword"]
    assert clf.n_features_in_ == config["encoder"]["dimension"] == 64
    assert config["format_version"] == FORMAT_VERSION
    assert set(config["thresholds"]) == set(config["tags"])
    assert config["head"]["sha256"] == sha256_file(model / HEAD_FILE)
    assert {p.name for p in model.iterdir()} >= {CONFIG_FILE, HEAD_FILE, TAXONOMY_FILE, CARD_FILE}


def test_card_names_the_embedding_view(tiny_model: Path) -> None:
    """The card says which embedding view the head has (it once said logistic regression
    for an RBF support-vector machine)."""
    clf, _, _ = load_model(tiny_model)
    assert _embedding_view(clf) in (tiny_model / CARD_FILE).read_text()
    assert "RBF support-vector machine" in _embedding_view(TropeClassifier(kernel="rbf"))
    assert "logistic regression" in _embedding_view(TropeClassifier(kernel="linear"))


def test_model_folder_files(tiny_model: Path) -> None:
    config = json.loads((tiny_model / CONFIG_FILE).read_text(), parse_constant=_no_nan)
    assert config["name"] == "tiny"
    assert "tiny" in (tiny_model / CARD_FILE).read_text()
    assert Taxonomy.load(tiny_model / TAXONOMY_FILE).ids == config["tags"]


def _no_nan(name: str) -> None:
    raise AssertionError(f"config.json holds {name}, which is not JSON")


def test_loading_twice_gives_identical_predictions(model: Path) -> None:
    X = np.random.default_rng(3).normal(size=(7, 64)).astype(np.float32)
    a, _, _ = load_model(model)
    b, _, _ = load_model(model)
    assert np.array_equal(a.predict_proba(X, texts(7)), b.predict_proba(X, texts(7)))
    assert np.array_equal(a.thresholds_, b.thresholds_)


def test_save_load_round_trip(tmp_path: Path, tiny_model: Path, clf: TropeClassifier) -> None:
    folder = save_model(
        tmp_path / "m", clf, config_for(clf), tiny_model / TAXONOMY_FILE, "# card\n"
    )
    assert folder == tmp_path / "m"
    loaded, config, taxonomy = load_model(folder)
    X = np.random.default_rng(1).normal(size=(9, 16)).astype(np.float32)
    assert np.array_equal(loaded.predict_proba(X, texts(9)), clf.predict_proba(X, texts(9)))
    assert np.array_equal(loaded.predict(X, texts(9)), clf.predict(X, texts(9)))
    assert np.array_equal(loaded.thresholds_, clf.thresholds_)
    assert loaded.get_params()["tags"] == clf.get_params()["tags"]
    assert config["name"] == "test"
    assert config["packages"]["tropeml"]
    assert taxonomy.ids == ["rain", "cake", "sword"]
    assert (folder / CARD_FILE).read_text() == "# card\n"
    assert (folder / TAXONOMY_FILE).read_bytes() == (tiny_model / TAXONOMY_FILE).read_bytes()


def test_saving_twice_gives_identical_bytes(
    tmp_path: Path, tiny_model: Path, clf: TropeClassifier
) -> None:
    taxonomy = tiny_model / TAXONOMY_FILE
    a = save_model(tmp_path / "a", clf, config_for(clf), taxonomy, "card")
    b = save_model(tmp_path / "b", clone_by_skops(clf), config_for(clf), taxonomy, "card")
    for name in (HEAD_FILE, CONFIG_FILE, TAXONOMY_FILE, CARD_FILE):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def clone_by_skops(clf: TropeClassifier) -> TropeClassifier:
    data = sio.dumps(clf)
    return cast(TropeClassifier, sio.loads(data, trusted=sio.get_untrusted_types(data=data)))


def test_reproducible_skops(clf: TropeClassifier) -> None:
    first, second = sio.dumps(clf), sio.dumps(clone_by_skops(clf))
    assert reproducible_skops(first) == reproducible_skops(second)
    fixed = reproducible_skops(first)
    assert reproducible_skops(fixed) == fixed
    with zipfile.ZipFile(io.BytesIO(fixed)) as z:
        assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in z.infolist())
    assert sio.get_untrusted_types(data=fixed) == sio.get_untrusted_types(data=first)
    loaded = sio.loads(fixed, trusted=sio.get_untrusted_types(data=fixed))
    X = np.random.default_rng(2).normal(size=(4, 16)).astype(np.float32)
    assert np.array_equal(loaded.predict_proba(X, texts(4)), clf.predict_proba(X, texts(4)))


def test_save_over_existing_folder_replaces_it(
    tmp_path: Path, tiny_model: Path, clf: TropeClassifier
) -> None:
    folder = tmp_path / "models" / "m"
    save_model(folder, clf, config_for(clf), tiny_model / TAXONOMY_FILE, "old card")
    (folder / "stale.txt").write_text("from the old model")
    config = config_for(clf) | {"name": "second"}
    save_model(folder, clf, config, tiny_model / TAXONOMY_FILE, "new card")
    assert not (folder / "stale.txt").exists()
    assert (folder / CARD_FILE).read_text() == "new card"
    assert load_model(folder)[1]["name"] == "second"
    # no temporary folders; the lock file stays (deleting a lock file races other lockers)
    assert sorted(p.name for p in folder.parent.iterdir()) == [".m.lock", "m"]


def test_failed_save_keeps_the_old_folder(
    tmp_path: Path, tiny_model: Path, clf: TropeClassifier
) -> None:
    folder = tmp_path / "m"
    save_model(folder, clf, config_for(clf), tiny_model / TAXONOMY_FILE, "old card")
    with pytest.raises(FileNotFoundError):
        save_model(folder, clf, config_for(clf), tmp_path / "missing.toml", "new card")
    assert (folder / CARD_FILE).read_text() == "old card"
    load_model(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.lock", "m"]


def test_saved_folder_is_not_private(
    tmp_path: Path, tiny_model: Path, clf: TropeClassifier
) -> None:
    umask = os.umask(0o022)
    try:
        folder = save_model(tmp_path / "m", clf, config_for(clf), tiny_model / TAXONOMY_FILE, "")
    finally:
        os.umask(umask)
    assert folder.stat().st_mode & 0o777 == 0o755  # not mkdtemp's private 0700


def test_atomic_write_bytes(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["f.bin"]


def test_append_line_completes_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    append_line(path, '{"a": 1}')
    with path.open("ab") as fh:
        fh.write(b'{"torn"')  # a crash mid-write
    append_line(path, '{"b": 2}')
    assert path.read_text().splitlines() == ['{"a": 1}', '{"torn"', '{"b": 2}']
    with pytest.raises(ValueError):
        append_line(path, "two\nlines")


# refusing bad folders


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(TropemlError, match="model folder not found"):
        load_model(tmp_path / "nope")


def test_missing_config(model: Path) -> None:
    (model / CONFIG_FILE).unlink()
    with pytest.raises(TropemlError, match="missing; not a tropeml model folder"):
        load_model(model)


@pytest.mark.parametrize("text", ["{not json", "", "\xff"])
def test_config_not_json(model: Path, text: str) -> None:
    (model / CONFIG_FILE).write_text(text, encoding="latin-1")
    with pytest.raises(TropemlError, match="unreadable config") as info:
        load_model(model)
    assert str(model / CONFIG_FILE) in str(info.value)


@pytest.mark.parametrize("config", ["[]", '"text"', '{"format": "other"}'])
def test_config_not_a_model_config(model: Path, config: str) -> None:
    (model / CONFIG_FILE).write_text(config)
    with pytest.raises(TropemlError, match="not a tropeml model config"):
        load_model(model)


@pytest.mark.parametrize("field", [f for f in CONFIG_SCHEMA["required"] if f != "format"])
def test_config_missing_field(model: Path, field: str) -> None:
    edit_config(model, lambda c: c.pop(field))
    with pytest.raises(TropemlError, match=f"field '{field}' missing"):
        load_model(model)


def test_config_field_of_wrong_type(model: Path) -> None:
    edit_config(model, lambda c: c.update(tags="rain"))
    with pytest.raises(TropemlError, match="'tags' must be a non-empty list"):
        load_model(model)


def test_newer_format_version(model: Path) -> None:
    edit_config(model, lambda c: c.update(format_version=FORMAT_VERSION + 1, tropeml_version="9"))
    with pytest.raises(TropemlError, match="Upgrade tropeml") as info:
        load_model(model)
    assert f"model format {FORMAT_VERSION + 1} was written by tropeml 9" in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(tags=[]), "'tags' must be a non-empty list"),
        (lambda c: c.update(tags=["rain", 2, "sword"]), "'tags' must be a non-empty list"),
        (lambda c: c["thresholds"].pop("rain"), "one threshold per tag"),
        (lambda c: c["thresholds"].update(hail=0.5), "one threshold per tag"),
        (lambda c: c["thresholds"].update(rain="high"), "numbers between 0 and 1"),
        (lambda c: c["thresholds"].update(rain=1.5), "numbers between 0 and 1"),
        (lambda c: c["thresholds"].update(rain=None), "numbers between 0 and 1"),
        (lambda c: c["rollup"].update(top_k="two"), "'rollup.top_k' must be a positive integer"),
        (lambda c: c["rollup"].update(max_evidence=0), "'rollup.max_evidence'"),
        (
            lambda c: c["rollup"].update(calibration={"intercept": 0.1, "slope": 0}),
            "'rollup.calibration' must give a number 'intercept' and a positive 'slope'",
        ),
        (
            lambda c: c["rollup"].update(calibration={"slope": 1}),
            "'rollup.calibration.intercept' missing",
        ),
    ],
)
def test_bad_config_values(
    model: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    edit_config(model, change)
    with pytest.raises(TropemlError, match=message):
        read_config(model)


def test_tampered_head(model: Path) -> None:
    head = model / HEAD_FILE
    data = bytearray(head.read_bytes())
    data[len(data) // 2] ^= 0xFF
    head.write_bytes(bytes(data))
    with pytest.raises(TropemlError, match="hash") as info:
        load_model(model)
    assert str(head) in str(info.value)


def test_missing_head(model: Path) -> None:
    (model / HEAD_FILE).unlink()
    with pytest.raises(TropemlError, match="classifier head missing"):
        load_model(model)


def test_head_that_is_not_skops(model: Path) -> None:
    replace_head(model, b"this is not a zip file")
    with pytest.raises(TropemlError, match="not a readable skops file"):
        load_model(model)


def test_head_holding_another_estimator(model: Path) -> None:
    lr = LogisticRegression().fit(np.eye(4), [0, 1, 0, 1])
    replace_head(model, sio.dumps(lr))
    with pytest.raises(TropemlError, match="holds a LogisticRegression, not a TropeClassifier"):
        load_model(model)


def test_head_with_untrusted_type_is_refused_before_it_is_built(
    model: Path, tmp_path: Path
) -> None:
    clf, _, _ = load_model(model)
    marker = tmp_path / "marker"
    clf.estimators_ = [Evil(marker)]  # hidden inside a genuine classifier
    data = sio.dumps(clf)
    untrusted = sio.get_untrusted_types(data=data)
    evil_type = next(t for t in untrusted if t.endswith(".Evil"))

    # the payload is real: loading it with its type trusted runs its code
    sio.loads(data, trusted=untrusted)
    assert marker.exists()
    marker.unlink()

    replace_head(model, data)
    with pytest.raises(TropemlError, match="refusing to load untrusted type") as info:
        load_model(model)
    assert evil_type in str(info.value)
    assert not marker.exists()


def test_dimension_mismatch(model: Path) -> None:
    edit_config(model, lambda c: c["encoder"].update(dimension=384))
    with pytest.raises(TropemlError, match=r"expects 64-d embeddings but .* gives 384"):
        load_model(model)


def test_tags_that_do_not_match_the_head(model: Path) -> None:
    edit_config(model, lambda c: c.update(tags=c["tags"][::-1]))
    with pytest.raises(TropemlError, match=r"tags do not match config\.json"):
        load_model(model)


def test_missing_taxonomy(model: Path) -> None:
    (model / TAXONOMY_FILE).unlink()
    with pytest.raises(TropemlError, match=r"tropes\.toml: missing from the model folder"):
        load_model(model)


def test_taxonomy_without_a_model_tag(model: Path) -> None:
    toml = (model / TAXONOMY_FILE).read_text()
    start = toml.index('[[trope]]\nid = "sword"')
    (model / TAXONOMY_FILE).write_text(toml[:start])
    edit_config(model, lambda c: None)
    with pytest.raises(TropemlError, match="unknown tag\\(s\\) 'sword'") as info:
        load_model(model)
    assert str(model / CONFIG_FILE) in str(info.value)


# swapping folders, leftovers of killed saves, format 1 folders


@pytest.mark.parametrize("exchange", [True, False], ids=["atomic-exchange", "two-renames"])
def test_save_replaces_with_or_without_atomic_exchange(
    tmp_path: Path,
    tiny_model: Path,
    clf: TropeClassifier,
    monkeypatch: pytest.MonkeyPatch,
    exchange: bool,
) -> None:
    if not exchange:
        monkeypatch.setattr("tropeml.model.persistence._exchange", lambda a, b: False)
    folder = tmp_path / "m"
    save_model(folder, clf, config_for(clf), tiny_model / TAXONOMY_FILE, "old card")
    save_model(folder, clf, config_for(clf), tiny_model / TAXONOMY_FILE, "new card")
    assert (folder / CARD_FILE).read_text() == "new card"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.lock", "m"]


def test_next_save_restores_and_clears_what_a_killed_save_left(
    tmp_path: Path, tiny_model: Path, clf: TropeClassifier
) -> None:
    folder = tmp_path / "m"
    save_model(folder, clf, config_for(clf), tiny_model / TAXONOMY_FILE, "old card")
    (tmp_path / ".m.new-abc").mkdir()  # a half-written new folder
    folder.rename(tmp_path / ".m.old-def")  # killed between the two renames
    with pytest.raises(
        TropemlError, match=r"interrupted save left the previous model in .*old-def"
    ):
        load_model(folder)
    with pytest.raises(FileNotFoundError):  # this save fails too, after the recovery
        save_model(folder, clf, config_for(clf), tmp_path / "missing.toml", "new card")
    assert (folder / CARD_FILE).read_text() == "old card"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.lock", "m"]


def test_format_1_folder_without_content_hash_still_loads(model: Path) -> None:
    def downgrade(config: dict[str, Any]) -> None:
        config.update(format_version=1)
        del config["files"], config["content_sha256"]

    edit_config(model, downgrade)
    assert load_model(model)[1]["format_version"] == 1


def test_format_2_folder_needs_its_hashes(model: Path) -> None:
    edit_config(model, lambda c: c.pop("content_sha256"), reseal=False)
    with pytest.raises(TropemlError, match="field 'content_sha256' missing"):
        load_model(model)


def test_saved_config_fits_the_schema_and_records_hashes(model: Path) -> None:
    config = read_config(model)
    assert config["format_version"] == FORMAT_VERSION == 2
    assert config["files"] == {name: sha256_file(model / name) for name in HASHED_FILES}
    assert config["content_sha256"] == content_hash(config)


def test_thresholds_can_still_be_edited_by_hand(model: Path) -> None:
    edit_config(model, lambda c: c["thresholds"].update(rain=0.9), reseal=False)
    assert load_model(model)[1]["thresholds"]["rain"] == 0.9


def test_a_lexical_head_saves_to_the_same_bytes(tmp_path: Path, tiny_model: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 16)).astype(np.float32)
    Y = (X[:, :3] > 0).astype(np.int8)
    words = ["rain", "cake", "sword"]
    docs = [" ".join(w for w, y in zip(words, row, strict=True) if y) + " and so on" for row in Y]
    groups = np.arange(40) % 4
    heads = []
    for name in ("a", "b"):
        clf = TropeClassifier(tags=words).fit(X, Y, groups=groups, texts=docs)
        clf.predict_proba(X, docs)  # a transform caches id(stop_words) in the vectorizer
        folder = save_model(
            tmp_path / name, clf, config_for(clf), tiny_model / TAXONOMY_FILE, "card"
        )
        heads.append((folder / HEAD_FILE).read_bytes())
        loaded, _, _ = load_model(folder)
        assert np.array_equal(loaded.predict_proba(X, docs), clf.predict_proba(X, docs))
    assert heads[0] == heads[1]
    # id(None) differs from process to process, so the cached id must not be saved
    with zipfile.ZipFile(io.BytesIO(heads[0])) as z:
        assert b"_stop_words_id" not in z.read("schema.json")
