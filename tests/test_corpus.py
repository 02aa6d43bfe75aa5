"""Corpora: folder trees and JSONL/CSV/Parquet tables, streamed in batches, JSONL out, resume."""

from __future__ import annotations

import csv
import functools
import json
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import make_passage
from test_cli import json_lines, run, stderr_of

import tropeml
from tropeml.core.errors import TropemlError
from tropeml.io import corpus
from tropeml.io.corpus import Record, done_ids, iter_records, tag_dataset, tag_records

TAGS = [["rain"], ["cake"], ["sword"], ["rain", "cake"], []]


def _texts(n: int) -> list[str]:
    rng = random.Random(1)
    return [
        "\n\n".join(make_passage(rng, TAGS[(i + j) % len(TAGS)], 50) for j in range(3))
        for i in range(n)
    ]


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"id": f"w{i:03d}", "text": t, "extra": i} for i, t in enumerate(_texts(n))]


def write_table(path: Path, rows: list[dict[str, Any]]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def read_out(path: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def tagger(tiny_model: Path) -> tropeml.Tagger:
    return tropeml.load(tiny_model, cache=False)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_tables_stream_to_jsonl(
    suffix: str, tmp_path: Path, tiny_model: Path, tagger: tropeml.Tagger
) -> None:
    rows = _rows(7)
    table = write_table(tmp_path / f"corpus{suffix}", rows)
    out = tmp_path / "out.jsonl"
    result = run("tag", table, "--model", tiny_model, "--out", out, "--batch-size", "3")
    assert result.exit_code == 0, stderr_of(result)
    got = read_out(out)
    assert [r["id"] for r in got] == [r["id"] for r in rows]
    for row, line in zip(rows, got, strict=True):  # same as tagging each text on its own
        # (spoiler tags, here sword, are hidden as in --json unless --spoilers)
        expect = tagger.tag(row["text"], source=row["id"]).without_spoilers().to_dict()
        assert line == {"id": row["id"], **expect}


def test_table_without_id_column_uses_row_numbers(tmp_path: Path, tiny_model: Path) -> None:
    rows = [{"body": r["text"]} for r in _rows(3)]
    table = write_table(tmp_path / "c.jsonl", rows)
    out = tmp_path / "out.jsonl"
    result = run("tag", table, "-m", tiny_model, "--out", out, "--text-column", "body")
    assert result.exit_code == 0, stderr_of(result)
    assert [r["id"] for r in read_out(out)] == [f"{table}#{i}" for i in range(3)]


def test_missing_text_column_is_one_clear_error(tmp_path: Path, tiny_model: Path) -> None:
    table = write_table(tmp_path / "c.jsonl", [{"id": "a", "body": "x"}])
    result = run("tag", table, "-m", tiny_model, "--json")
    assert result.exit_code == 1
    assert "no column 'text'" in stderr_of(result)
    assert "--text-column" in stderr_of(result)


def test_empty_row_is_reported_and_the_rest_are_tagged(tmp_path: Path, tiny_model: Path) -> None:
    rows = _rows(3)
    rows[1]["text"] = "   "
    table = write_table(tmp_path / "c.jsonl", rows)
    out = tmp_path / "out.jsonl"
    result = run("tag", table, "-m", tiny_model, "--out", out)
    assert result.exit_code == 1
    assert "w001: no text" in stderr_of(result)
    assert [r["id"] for r in read_out(out)] == ["w000", "w002"]


def test_folder_tree_streams_every_txt(tmp_path: Path, tiny_model: Path) -> None:
    texts = _texts(5)
    for i, text in enumerate(texts):
        sub = tmp_path / "lib" / f"shelf{i % 2}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"fic{i}.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = run("tag", tmp_path / "lib", "-m", tiny_model, "--out", out, "--batch-size", "2")
    assert result.exit_code == 0, stderr_of(result)
    got = read_out(out)
    assert len(got) == 5 and all(r["id"] == r["source"] for r in got)
    assert [r["id"] for r in got] == sorted(r["id"] for r in got)


class _BoomError(Exception):
    pass


def test_an_interrupted_run_resumes_without_redoing_finished_works(
    tmp_path: Path, tagger: tropeml.Tagger
) -> None:
    rows = _rows(9)
    table = write_table(tmp_path / "c.jsonl", rows)
    out = tmp_path / "out.jsonl"
    tagged: list[str] = []

    class Crashing:
        """Tags two batches, then dies mid-way through the third."""

        def tag_many(self, works: list[Any], sources: list[str]) -> list[Any]:
            if len(tagged) >= 6:
                raise _BoomError
            tagged.extend(sources)
            return tagger.tag_many(works, sources)

    with pytest.raises(_BoomError):
        for _ in tag_records(Crashing(), iter_records([table]), out=out, batch_size=3):
            pass
    assert [r["id"] for r in read_out(out)] == [r["id"] for r in rows[:6]]
    # a torn last line from a kill mid-write is not a finished work
    with out.open("a", encoding="utf-8") as fh:
        fh.write('{"id": "w006", "sour')

    class Counting:
        def tag_many(self, works: list[Any], sources: list[str]) -> list[Any]:
            tagged.extend(sources)
            return tagger.tag_many(works, sources)

    tagged.clear()
    outcomes = list(tag_records(Counting(), iter_records([table]), out=out, batch_size=3))
    assert tagged == ["w006", "w007", "w008"]  # only the unfinished works
    assert [o.id for o in outcomes] == tagged
    assert done_ids(out) == {r["id"] for r in rows}
    lines = out.read_text(encoding="utf-8").splitlines()
    assert sum(1 for ln in lines if ln.startswith("{") and ln.endswith("}")) == 9
    # a third run has nothing left to do
    assert list(tag_records(Counting(), iter_records([table]), out=out)) == []


def test_cli_resume_skips_finished_works(tmp_path: Path, tiny_model: Path) -> None:
    rows = _rows(4)
    table = write_table(tmp_path / "c.jsonl", rows)
    out = tmp_path / "out.jsonl"
    assert run("tag", table, "-m", tiny_model, "--out", out).exit_code == 0
    before = out.read_bytes()
    write_table(table, [*rows, *_rows(6)[4:]])  # the corpus grew
    assert run("tag", table, "-m", tiny_model, "--out", out).exit_code == 0
    after = out.read_bytes()
    assert after.startswith(before)
    assert [r["id"] for r in read_out(out)] == [f"w{i:03d}" for i in range(6)]


def test_records_are_read_lazily(tmp_path: Path) -> None:
    rows = _rows(3)
    table = write_table(tmp_path / "c.jsonl", rows)
    stream = iter_records([table])
    first = next(stream)
    assert isinstance(first, Record) and first.id == "w000"
    assert first.load().text == rows[0]["text"]


def test_batches_bound_what_is_held(tmp_path: Path, tagger: tropeml.Tagger) -> None:
    seen: list[int] = []

    class Spy:
        def tag_many(self, works: list[Any], sources: list[str]) -> list[Any]:
            seen.append(len(works))
            return tagger.tag_many(works, sources)

    records = (
        Record(str(i), functools.partial(corpus.text_work, t, "x")) for i, t in enumerate(_texts(7))
    )
    assert len(list(tag_records(Spy(), records, batch_size=3))) == 7
    assert seen == [3, 3, 1]


def test_tag_many_equals_tag(tagger: tropeml.Tagger) -> None:
    texts = _texts(4)
    works = [corpus.text_work(t, f"s{i}") for i, t in enumerate(texts)]
    many = tagger.tag_many(works)
    assert [r.to_dict() for r in many] == [tagger.tag(w).to_dict() for w in works]


def test_python_api_over_a_datasets_dataset(tmp_path: Path, tagger: tropeml.Tagger) -> None:
    from datasets import Dataset

    rows = _rows(5)
    ds = Dataset.from_list(rows)
    out = tmp_path / "out.jsonl"
    outcomes = list(tag_dataset(tagger, ds, out=out, batch_size=2))
    assert [o.id for o in outcomes] == [r["id"] for r in rows]
    assert all(o.result is not None for o in outcomes)
    assert read_out(out)[0] == outcomes[0].to_dict()
    assert list(tag_dataset(tagger, ds, out=out)) == []  # resumed: all done
    with pytest.raises(TropemlError, match="no column 'body'"):
        list(tag_dataset(tagger, ds, text_column="body"))
    streamed = ds.to_iterable_dataset()
    again = [o.result.to_dict() for o in tag_dataset(tagger, streamed) if o.result]
    assert again == [o.result.to_dict() for o in outcomes if o.result]


def test_json_output_without_out_still_prints(tmp_path: Path, tiny_model: Path) -> None:
    table = write_table(tmp_path / "c.csv", _rows(2))
    result = run("tag", table, "-m", tiny_model, "--json")
    assert result.exit_code == 0, stderr_of(result)
    assert [r["source"] for r in json_lines(result.stdout)] == ["w000", "w001"]
