from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_passage

import tropeml
from tropeml.core.errors import TropemlError
from tropeml.core.types import WorkResult
from tropeml.io.readers import parse_text
from tropeml.model.cache import CachedEncoder, EmbeddingCache, default_cache_path
from tropeml.model.encoders import HashingEncoder
from tropeml.model.training import train
from tropeml.serve.tagger import Tagger

TAGS = ["rain", "cake", "sword"]


def story(seed: int = 5) -> str:
    rng = random.Random(seed)
    scenes = [["rain"], [], ["cake"], ["rain"], ["rain", "sword"]]
    return "\n\n\n".join(make_passage(rng, tags, 60) for tags in scenes)


@pytest.fixture(scope="module")
def tagger(tiny_model: Path) -> Tagger:
    return Tagger.from_pretrained(tiny_model, cache=False)


def check_result(result: WorkResult, text: str, tagger: Tagger) -> None:
    assert isinstance(result, WorkResult)
    assert list(result.scores) == TAGS
    assert all(0.0 <= s <= 1.0 for s in result.scores.values())
    scores = [t.score for t in result.tags]
    assert scores == sorted(scores, reverse=True)
    for tag in result.tags:
        assert tag.score == result.scores[tag.id]
        assert tag.threshold is not None
        assert tag.score >= tag.threshold
        assert tag.name == tagger.taxonomy[tag.id].name
        assert 0.0 <= tag.prominence <= 1.0
        assert 1 <= len(tag.evidence) <= tagger.max_evidence
        ev_scores = [e.score for e in tag.evidence]
        assert ev_scores == sorted(ev_scores, reverse=True)
        for e in tag.evidence:
            assert text[e.start : e.end] == e.text
    json.dumps(result.to_dict())


def test_tag_text(tagger: Tagger) -> None:
    text = story()
    result = tagger.tag(text, source="story.txt")
    check_result(result, text, tagger)
    assert result.source == "story.txt"
    assert result.model == "tiny"
    assert result.n_passages == len(tagger.passages(text)) == 5
    assert result.scores["rain"] > result.scores["cake"]
    assert "rain" in [t.id for t in result.tags]
    rain = next(t for t in result.tags if t.id == "rain")
    assert rain.name == "Rainy Day"
    assert rain.prominence > 0


def test_source_defaults(tagger: Tagger) -> None:
    assert tagger.tag(story()).source == "<text>"
    work = parse_text(story(), source="from/work.txt")
    assert tagger.tag(work).source == "from/work.txt"


def test_tag_work_with_header_offsets_index_the_whole_text(tagger: Tagger) -> None:
    text = "Work Header\n\nStorm Story\nRating: Teen\n\nWork Text:\n" + story(7)
    work = parse_text(text)
    result = tagger.tag(work)
    check_result(result, text, tagger)
    for tag in result.tags:
        assert all(e.start >= work.regions[0].start for e in tag.evidence)


def test_chapters_reach_the_evidence(tagger: Tagger) -> None:
    rng = random.Random(3)
    text = "Chapter 1: Storm\n\n" + "\n\n\n".join(make_passage(rng, ["rain"], 60) for _ in range(3))
    result = tagger.tag(text)
    rain = next(t for t in result.tags if t.id == "rain")
    assert {e.chapter for e in rain.evidence} == {"Chapter 1: Storm"}
    assert rain.to_dict()["evidence"][0]["chapter"] == "Chapter 1: Storm"


@pytest.mark.parametrize("text", ["***", "   \n\n  ", ""])
def test_tag_text_without_passages(tagger: Tagger, text: str) -> None:
    result = tagger.tag(text)
    assert result.n_passages == 0
    assert result.scores == dict.fromkeys(TAGS, 0.0)
    assert result.tags == ()


def test_precomputed_embeddings_give_the_same_result(tagger: Tagger) -> None:
    work = parse_text(story(11))
    passages = tagger.passages(work)
    X = tagger.embed(passages, work)
    assert X.shape == (len(passages), 64)
    assert tagger.tag(work, embeddings=X) == tagger.tag(work)
    assert tagger.tag(work, embeddings=X.tolist()) == tagger.tag(work)


def test_wrong_number_of_embeddings(tagger: Tagger) -> None:
    work = parse_text(story())
    X = tagger.embed(tagger.passages(work), work)
    with pytest.raises(TropemlError, match="got 4 embeddings for 5 passages"):
        tagger.tag(work, embeddings=X[:4])


def test_encoder_of_the_wrong_dimension(tiny_model: Path) -> None:
    with pytest.raises(TropemlError, match="expects 64-d embeddings but encoder 'hashing-32'"):
        Tagger.from_pretrained(tiny_model, encoder=HashingEncoder(32), cache=False)


def test_encoder_that_does_not_say_its_dimension(tiny_model: Path) -> None:
    class Quiet:
        def embed(self, texts: list[str]) -> np.ndarray:
            return HashingEncoder(32).embed(texts)

    tagger = Tagger.from_pretrained(tiny_model, encoder=Quiet(), cache=False)
    with pytest.raises(TropemlError, match="32-d embeddings; the model expects 64-d"):
        tagger.tag(story())


def test_tagging_is_deterministic(tiny_model: Path, tagger: Tagger) -> None:
    other = Tagger.from_pretrained(tiny_model, cache=False)
    assert other.tag(story(2)) == tagger.tag(story(2))


def test_thresholds_come_from_the_config(tiny_model: Path, tagger: Tagger) -> None:
    config = json.loads((tiny_model / "config.json").read_text())
    assert tagger.tags == TAGS
    assert tagger.thresholds.tolist() == [config["thresholds"][t] for t in TAGS]
    assert tagger.top_k == config["rollup"]["top_k"]


def test_lower_threshold_adds_tags(tagger: Tagger) -> None:
    low = Tagger(tagger.classifier, tagger.taxonomy, tagger.encoder, dict.fromkeys(TAGS, 0.0))
    result = low.tag(story())
    assert [t.id for t in result.tags] == sorted(TAGS, key=lambda t: -result.scores[t])


def test_tag_paths(tagger: Tagger, tmp_path: Path) -> None:
    (tmp_path / "fics").mkdir()
    (tmp_path / "fics" / "b.txt").write_text(story(1))
    (tmp_path / "fics" / "a.txt").write_text(story(2))
    results = list(tagger.tag_paths([tmp_path / "fics"]))
    assert [r.source for r in results] == [
        str(tmp_path / "fics" / "a.txt"),
        str(tmp_path / "fics" / "b.txt"),
    ]
    assert results[0] == tagger.tag(story(2), source=str(tmp_path / "fics" / "a.txt"))


def test_tag_paths_missing(tagger: Tagger, tmp_path: Path) -> None:
    with pytest.raises(TropemlError, match="no such file"):
        list(tagger.tag_paths([tmp_path / "missing.txt"]))


def test_load_alias_and_default_cache(tiny_model: Path) -> None:
    tagger = tropeml.load(tiny_model)
    assert isinstance(tagger.encoder, CachedEncoder)
    assert isinstance(tagger.encoder.encoder, HashingEncoder)
    tagger.tag(story())
    assert default_cache_path().is_file()  # under the test's TROPEML_CACHE_DIR


def test_from_pretrained_refuses_a_broken_folder(tiny_model: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_model, tmp_path / "m"))
    (folder / "head.skops").write_bytes(b"garbage")
    with pytest.raises(TropemlError, match="hash"):
        Tagger.from_pretrained(folder)
    with pytest.raises(TropemlError, match="model folder not found"):
        Tagger.from_pretrained(tmp_path / "nope")


# the embedding cache


class SpyEncoder(HashingEncoder):
    def __init__(self, dimension: int = 16) -> None:
        super().__init__(dimension)
        self.seen: list[str] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.seen.extend(texts)
        return super().embed(texts)


TEXTS = ["the rain fell", "a cake", "the rain fell", "swords clash", "a cake"]


def test_cached_encoder_embeds_each_distinct_text_once(tmp_path: Path) -> None:
    spy = SpyEncoder()
    cached = CachedEncoder(spy, tmp_path / "cache.sqlite3")
    X = cached.embed(TEXTS)
    assert X.shape == (5, 16)
    assert X.dtype == np.float32
    assert np.allclose(X, HashingEncoder(16).embed(TEXTS))
    assert sorted(spy.seen) == sorted(set(TEXTS))
    assert cached.misses == 3
    Y = cached.embed([*TEXTS[::-1], "new text"])
    assert np.array_equal(Y[:5], X[::-1])
    assert spy.seen[3:] == ["new text"]
    assert cached.misses == 4
    assert cached.hits == 5


def test_second_instance_on_the_same_file_embeds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    first = CachedEncoder(SpyEncoder(), path)
    X = first.embed(TEXTS)
    spy = SpyEncoder()
    second = CachedEncoder(spy, EmbeddingCache(path))
    assert np.array_equal(second.embed(TEXTS), X)
    assert spy.seen == []
    assert (second.hits, second.misses) == (5, 0)


def test_cache_is_per_encoder(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    CachedEncoder(HashingEncoder(16), path).embed(TEXTS)
    other = CachedEncoder(SpyEncoder(32), path)
    assert other.embed(TEXTS).shape == (5, 32)
    assert other.misses == 3


def test_cached_encoder_passes_attributes_through(tmp_path: Path) -> None:
    cached = CachedEncoder(HashingEncoder(16), tmp_path / "c.sqlite3")
    assert cached.dimension == 16
    assert cached.max_tokens == 254
    assert cached.count_tokens(["a b c"]) == [3]
    assert cached.id == "hashing-16"
    with pytest.raises(AttributeError):
        cached.no_such_attribute  # noqa: B018


def test_default_cache_file(tmp_path: Path) -> None:
    cached = CachedEncoder(HashingEncoder(16))
    cached.embed(["x"])
    assert cached.cache.path == default_cache_path()
    assert default_cache_path().is_file()


def test_corrupt_cache_file(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(TropemlError, match="embedding cache"):
        CachedEncoder(HashingEncoder(16), path).embed(["x"])


# training


def test_training_is_deterministic_and_reuses_the_cache(tiny_root: Path) -> None:
    data = tiny_root / "data"
    cache = tiny_root / "cache.sqlite3"
    runs = [
        train(
            data,
            root=tiny_root,
            out=tiny_root / out,
            encoder=HashingEncoder(64),
            cache=cache,
            name="tiny",  # the name defaults to the folder's, which differs here
        )
        for out in ("m1", "m2")
    ]
    for name in ("head.skops", "config.json", "tropes.toml", "README.md"):
        assert (tiny_root / "m1" / name).read_bytes() == (tiny_root / "m2" / name).read_bytes()
    first, second = runs
    assert first.embedded > 0
    assert second.embedded == 0
    assert second.reused >= first.embedded + first.reused
    assert first.folder == tiny_root / "m1"
    X = np.random.default_rng(0).normal(size=(3, 64)).astype(np.float32)
    texts = ["rain", "cake and rain", "a sword"]
    assert np.array_equal(
        first.classifier.predict_proba(X, texts), second.classifier.predict_proba(X, texts)
    )
