"""The cache keeps a work's passage split and names too, so re-tagging skips them."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_passage

import tropeml
from tropeml.core.types import Region, Work
from tropeml.model.cache import CachedEncoder, EmbeddingCache
from tropeml.model.encoders import HashingEncoder
from tropeml.serve.tagger import Tagger


class Counting(HashingEncoder):
    """The hashing encoder, counting its calls to count_tokens."""

    def __init__(self) -> None:
        super().__init__(64)
        self.counted = 0

    def count_tokens(self, texts: list[str]) -> list[int]:
        self.counted += 1
        return super().count_tokens(texts)


def _story(seed: int = 3) -> str:
    rng = random.Random(seed)
    names = "Derek ran in. Then Derek sat, and Mara watched Derek. "
    return "\n\n\n".join(names + make_passage(rng, tags, 50) for tags in (["rain"], ["cake"], []))


def _tagger(tiny_model: Path, cache: Path) -> tuple[Tagger, Counting]:
    inner = Counting()
    tagger = tropeml.load(tiny_model, encoder=inner, cache=False)
    tagger.encoder = CachedEncoder(inner, cache)
    return tagger, inner


def test_second_tag_reads_split_and_names_from_the_cache(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tagger, inner = _tagger(tiny_model, tmp_path / "c.sqlite3")
    text = _story()
    first = tagger.tag(text)
    assert inner.counted > 0
    counted = inner.counted
    found: list[Any] = []

    def work_names(work: Work) -> dict[str, str]:
        found.append(work)
        return {}

    monkeypatch.setattr("tropeml.serve.reading.work_names", work_names)
    second = tagger.tag(text)
    assert inner.counted == counted  # no tokenising for the split
    assert found == []  # no name finding
    assert second == first
    assert tagger.passages(text) == tropeml.split_passages(text, inner.count_tokens, 180)


def test_split_key_covers_text_regions_and_budget(tiny_model: Path, tmp_path: Path) -> None:
    tagger, _ = _tagger(tiny_model, tmp_path / "c.sqlite3")
    text = _story()
    whole = tagger.passages(Work(text=text))
    cut = len(text) // 2
    halves = tagger.passages(
        Work(text=text, regions=(Region(0, cut, "One"), Region(cut, len(text), "Two")))
    )
    assert whole != halves
    assert {p.chapter for p in halves} == {"One", "Two"}
    assert tagger.passages(Work(text=text + " More.")) != whole
    fresh = Tagger.from_pretrained(tiny_model, encoder=HashingEncoder(64), cache=False)
    assert tagger.passages(Work(text=text)) == whole == fresh.passages(text)


def test_changed_code_or_corrupt_entries_are_recomputed(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.sqlite3"
    tagger, inner = _tagger(tiny_model, path)
    text = _story()
    want = tagger.passages(text)
    counted = inner.counted
    monkeypatch.setattr("tropeml.serve.reading.code_key", lambda module: "another version")
    assert tagger.passages(text) == want
    assert inner.counted > counted  # a new splitter: split again
    monkeypatch.undo()
    tagger._flush()
    db = EmbeddingCache(path)._db()
    with db:
        db.execute("UPDATE derived SET value = '[[5, 2, null]]' WHERE kind = 'passages'")
        db.execute("UPDATE derived SET value = 'not json' WHERE kind = 'names'")
    counted = inner.counted
    assert tagger.passages(text) == want
    assert inner.counted > counted
    plain = tropeml.load(tiny_model, encoder=HashingEncoder(64), cache=False)
    assert tagger.tag(text).scores == pytest.approx(plain.tag(text).scores, abs=1e-6)


def test_no_cache_means_nothing_is_stored(tiny_model: Path, tmp_path: Path) -> None:
    tagger = tropeml.load(tiny_model, encoder=HashingEncoder(64), cache=False)
    tagger.tag(_story())
    assert not list(tmp_path.iterdir())


def test_derived_values_ride_with_the_next_write(tiny_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    cache = EmbeddingCache(path)
    cache.put_json("names", "k", [["Derek", "Alex"]])
    assert cache.get_json("names", "k") == [["Derek", "Alex"]]  # this process sees it at once
    assert EmbeddingCache(path).get_json("names", "k") is None  # not written yet: no sync
    cache.put("enc", {"t": np.ones(3, dtype=np.float32)})  # one transaction for both
    assert EmbeddingCache(path).get_json("names", "k") == [["Derek", "Alex"]]
    tagger, _ = _tagger(tiny_model, tmp_path / "t.sqlite3")
    tagger.tag(_story())  # tag() flushes what it derived
    db = EmbeddingCache(tmp_path / "t.sqlite3")._db()
    kinds = dict(db.execute("SELECT kind, count(*) FROM derived GROUP BY kind").fetchall())
    assert kinds == {"names": 1, "passages": 1}


def test_pending_values_are_written_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    code = (
        "from tropeml.model.cache import EmbeddingCache\n"
        f"cache = EmbeddingCache({str(path)!r})\n"
        "assert cache.get_json('passages', 'k') is None\n"  # as the tagger does: look first
        "cache.put_json('passages', 'k', [[0, 1, None]])\n"  # then exit without a flush
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert EmbeddingCache(path).get_json("passages", "k") == [[0, 1, None]]
    dropped = EmbeddingCache(path)
    dropped.put_json("names", "k", [])
    del dropped  # dropped without a flush: written then
    assert EmbeddingCache(path).get_json("names", "k") == []


def test_left_overs_never_create_a_cache_file(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "gone" / "c.sqlite3")
    cache.put_json("names", "k", [])
    del cache
    assert not (tmp_path / "gone").exists()
