"""Shared fixtures: a tiny taxonomy, data folder and model built in code (no downloads)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

import pytest
from numpy.typing import ArrayLike

from tropeml.model.encoders import HashingEncoder
from tropeml.model.persistence import (
    CONFIG_FILE,
    HASHED_FILES,
    HEAD_FILE,
    content_hash,
    sha256_file,
)
from tropeml.model.training import train

ROOT = Path(__file__).resolve().parent.parent

TINY_TOML = """
schema_version = 1

[[trope]]
id = "rain"
name = "Rainy Day"
synonyms = ["Rain", "Alternate Universe - Rain"]
definition = "It rains: storms, umbrellas, wet streets, puddles and thunder."
related = ["cake"]

[[trope]]
id = "cake"
name = "Baking"
synonyms = ["Baking", "Cake"]
definition = "Someone bakes: flour, ovens, icing, sugar and cake."

[[trope]]
id = "sword"
name = "Sword Fighting"
synonyms = ["Swordfights"]
definition = "A fight with swords: blades, parries, duels and steel."
spoiler = true
"""

VOCAB = {
    "rain": ["rain", "storm", "umbrella", "puddle", "thunder", "drizzle", "soaked", "cloud", "wet"],
    "cake": ["flour", "oven", "icing", "sugar", "cake", "whisk", "batter", "baking", "frosting"],
    "sword": ["sword", "blade", "parry", "duel", "steel", "hilt", "lunge", "scabbard", "fencing"],
}
FILLER = [
    "the",
    "a",
    "and",
    "then",
    "she",
    "he",
    "they",
    "walked",
    "said",
    "looked",
    "at",
    "it",
    "was",
    "over",
    "into",
]


class ClassifierSettings(TypedDict, total=False):
    """:class:`TropeClassifier`'s keyword arguments other than its tags and prototypes."""

    C: float
    kernel: str
    gamma_scale: float
    lexical_C: float
    class_weight: str | None
    embedding_weight: float
    lexical_weight: float
    prototype_weight: float
    stack_C: float | None
    ngram_range: tuple[int, int]
    max_features: int | None
    min_df: int
    min_positives: int
    threshold_folds: int
    default_threshold: float
    max_iter: int


class ClassifierParams(ClassifierSettings, total=False):
    """All of :class:`TropeClassifier`'s keyword arguments, for tests that pass a dict of them."""

    tags: list[str] | None
    prototypes: ArrayLike | None


def make_passage(rng: random.Random, tags: list[str], words: int = 40) -> str:
    """A sentence soup of filler plus the vocabulary of ``tags``."""
    pool = FILLER * 3 + [w for t in tags for w in VOCAB[t]] * 2
    text = " ".join(rng.choice(pool) for _ in range(words))
    return text.capitalize() + "."


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the fast backend's int8 model, so a test session builds it at most once."""
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(autouse=True)
def _isolated(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory, onnx_dir: Path
) -> None:
    """Every test gets its own embedding cache and never touches the network."""
    monkeypatch.setenv("TROPEML_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("TROPEML_ONNX_DIR", str(onnx_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def fake_encoder() -> HashingEncoder:
    return HashingEncoder(64)


TINY_TAGS = ("rain", "cake", "sword")


def write_tiny_data(root: Path, n_exemplars: int = 12) -> Path:
    """Write a data folder (taxonomy, span labels of one fic, exemplars) under ``root``."""
    rng = random.Random(0)
    data = root / "data"
    (data / "labels").mkdir(parents=True)
    (data / "exemplars").mkdir()
    (data / "tropes.toml").write_text(TINY_TOML, encoding="utf-8")
    scenes = [["rain"], [], ["cake"], ["rain", "cake"], [], ["sword"]]
    text, spans = "", []
    for tags in scenes:
        start = len(text)
        text += make_passage(rng, tags, 60)
        spans.append((start, len(text), tags))
        text += "\n\n\n"
    (root / "fics").mkdir()
    (root / "fics" / "one.txt").write_text(text, encoding="utf-8")
    with (data / "labels" / "fics.jsonl").open("w") as fh:
        for s, e, tags in spans:
            row = {"file": "fics/one.txt", "start": s, "end": e, "quote": text[s : s + 30]}
            fh.write(json.dumps({**row, "tags": tags}) + "\n")
    for name, combos in {
        "a": [["rain"], ["cake"], []],
        "b": [["sword"], ["rain", "sword"], []],
    }.items():
        with (data / "exemplars" / f"{name}.jsonl").open("w") as fh:
            for i in range(n_exemplars):
                tags = combos[i % len(combos)]
                row = {"id": f"{name}-{i}", "text": make_passage(rng, tags), "tags": tags}
                judged = [t for t in TINY_TAGS if t not in tags]  # every other tag judged absent
                fh.write(json.dumps({**row, "near_miss": judged, "source": "written"}) + "\n")
    return data


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder trained in code on the tiny data with the hashing encoder."""
    root = tmp_path_factory.mktemp("tiny")
    data = write_tiny_data(root)
    out = root / "models" / "tiny"
    train(data, root=root, out=out, encoder=HashingEncoder(64), cache=False, name="tiny")
    return out


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    write_tiny_data(tmp_path)
    return tmp_path


def edit_config(
    folder: Path, change: Callable[[dict[str, Any]], None], reseal: bool = True
) -> None:
    """Edit config.json; ``reseal`` records fresh hashes, as a deliberate forger would."""
    config = json.loads((folder / CONFIG_FILE).read_text())
    change(config)
    if reseal:
        seal(folder, config)
    (folder / CONFIG_FILE).write_text(json.dumps(config))


def seal(folder: Path, config: dict[str, Any]) -> None:
    """Record the current files' hashes and the content hash in ``config`` (if it has them)."""
    if isinstance(config.get("head"), dict) and (folder / HEAD_FILE).is_file():
        config["head"]["sha256"] = sha256_file(folder / HEAD_FILE)
    if isinstance(config.get("files"), dict):
        for name in HASHED_FILES:
            if (folder / name).is_file():
                config["files"][name] = sha256_file(folder / name)
        config["content_sha256"] = content_hash(config)


def rewrite_arrays(folder: Path, change: dict[str, Any], pickle: bool = False) -> Path:
    """Rewrite a model's head.npz with some arrays changed, recording honest hashes for it."""
    import io
    import zipfile

    import numpy as np

    from tropeml.model.persistence import ARRAYS_FILE

    path = folder / ARRAYS_FILE
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays.update(change)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(a), allow_pickle=pickle)
            zf.writestr(f"{name}.npy", buf.getvalue())
    path.write_bytes(out.getvalue())
    edit_config(folder, lambda c: None)
    return path
