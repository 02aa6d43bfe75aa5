from __future__ import annotations

import codecs
import io
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tropeml.core.errors import TropemlError
from tropeml.core.types import Region, Work
from tropeml.io.readers import decode_bytes, expand_paths, parse_text, read_work

PNG_HEADER = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10"


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# decode_bytes


def test_empty_bytes_refused() -> None:
    with pytest.raises(TropemlError, match=r"^f\.txt: file is empty"):
        decode_bytes(b"", "f.txt")


@pytest.mark.parametrize("data", [b" ", b"\n\n\t  \r\n", "\u00a0\u2003\n".encode()])
def test_whitespace_only_refused(data: bytes) -> None:
    with pytest.raises(TropemlError, match="only whitespace"):
        decode_bytes(data, "f.txt")


@pytest.mark.parametrize(
    "data",
    [b"hello\x00world", PNG_HEADER, b"\x89PNG\r\n\x1a\n", b"\x7fELF\x02\x01\x01" + b"\x00" * 9],
)
def test_binary_refused(data: bytes) -> None:
    with pytest.raises(TropemlError, match=r"^img\.png: looks like a binary file"):
        decode_bytes(data, "img.png")


def test_many_control_characters_refused() -> None:
    with pytest.raises(TropemlError, match="binary"):
        decode_bytes(b"text\x01\x02\x03\x04 more text", "f")


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_with_bom(codec: str) -> None:
    bom = {"utf-16": b"", "utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE}
    data = bom[codec] + "Café “quoted”\r\nline two 日本".encode(codec)
    assert decode_bytes(data, "f") == "Café “quoted”\nline two 日本"


def test_utf16_truncated_is_an_error() -> None:
    data = "hello".encode("utf-16") + b"\x41"
    with pytest.raises(TropemlError, match=r"^f: not readable as text"):
        decode_bytes(data, "f")


def test_utf8_bom_stripped() -> None:
    assert decode_bytes(codecs.BOM_UTF8 + "naïve".encode(), "f") == "naïve"


def test_utf8() -> None:
    assert decode_bytes("Ζεύς — 🙂".encode(), "f") == "Ζεύς — 🙂"


def test_cp1252_fallback() -> None:
    assert decode_bytes(b"caf\xe9 \x93quoted\x94 \x85", "f") == "café “quoted” …"


def test_undecodable_bytes_are_an_error() -> None:
    # 0x81 is undefined in Windows-1252 and not valid UTF-8 here
    with pytest.raises(TropemlError, match=r"^f\.txt: not readable as text"):
        decode_bytes(b"abc \x81 def", "f.txt")


def test_newlines_normalised() -> None:
    assert decode_bytes(b"a\r\nb\rc\nd\r\n\r\ne\r", "f") == "a\nb\nc\nd\n\ne\n"


# parse_text


def test_parse_plain_text() -> None:
    work = parse_text("Just a story.\n", source="x.txt")
    assert work == Work("Just a story.\n", "x.txt", (Region(0, 14),), None)


AO3 = (
    "Work Header\n"
    "\n"
    "  The Long Night  \n"
    "Rating: Teen And Up Audiences\n"
    "Fandom: Original Work\n"
    "Summary:\n"
    "A storm. Two people.\n"
    "\n"
    "Work Text:\n"
    "The storm broke at midnight.\n"
)


def test_ao3_header_detected() -> None:
    work = parse_text(AO3, source="a.txt")
    assert work.title == "The Long Night"
    (region,) = work.regions
    assert region.start == AO3.index("The storm")
    assert region.end == len(AO3)
    assert work.text[region.start : region.end] == "The storm broke at midnight.\n"
    assert work.story_regions() == work.regions


def test_ao3_header_with_leading_whitespace_and_crlf(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", ("\n  \n" + AO3).replace("\n", "\r\n").encode())
    work = read_work(path)
    assert work.title == "The Long Night"
    assert work.text[work.regions[0].start :] == "The storm broke at midnight.\n"


def test_ao3_header_needs_work_text_line() -> None:
    text = "Work Header\n\nTitle\nRating: Teen\n\nThe story, but no Work Text line.\n"
    work = parse_text(text)
    assert work.title is None
    assert work.regions == (Region(0, len(text)),)


def test_work_header_not_at_start_is_story() -> None:
    text = "Story first.\nWork Header\nTitle\nWork Text:\nmore\n"
    work = parse_text(text)
    assert work.title is None
    assert work.regions == (Region(0, len(text)),)


def test_empty_ao3_header_has_no_title() -> None:
    work = parse_text("Work Header\nWork Text:\nStory.")
    assert work.title is None
    assert work.text[work.regions[0].start :] == "Story."


# read_work


def test_read_work(tmp_path: Path) -> None:
    path = write(tmp_path / "fic.txt", b"caf\xe9\r\nau lait")
    work = read_work(path)
    assert work.text == "café\nau lait"
    assert work.source == str(path)
    assert work.regions == (Region(0, len(work.text)),)


def test_read_work_accepts_str_path(tmp_path: Path) -> None:
    path = write(tmp_path / "fic.txt", b"hello")
    assert read_work(str(path)).source == str(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "file is empty"),
        (b"  \n \n", "only whitespace"),
        (PNG_HEADER, "binary"),
        (b"\x00\x01binary", "binary"),
    ],
)
def test_read_work_bad_content(tmp_path: Path, data: bytes, message: str) -> None:
    path = write(tmp_path / "bad.txt", data)
    with pytest.raises(TropemlError, match=message) as info:
        read_work(path)
    assert str(path) in str(info.value)


def test_read_work_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.txt"
    with pytest.raises(TropemlError, match="no such file") as info:
        read_work(path)
    assert str(path) in str(info.value)


def test_read_work_path_with_a_nul_byte(tmp_path: Path) -> None:
    # found by test_fuzz: a label file naming "\u0000" reached os.stat, which raises ValueError
    with pytest.raises(TropemlError, match="cannot contain a NUL byte") as info:
        read_work(tmp_path / "a\x00b.txt")
    assert "\n" not in str(info.value)


def test_label_file_naming_a_nul_byte_path_is_a_clean_error(tmp_path: Path) -> None:
    from tropeml.core.taxonomy import Taxonomy
    from tropeml.io.labels import load_span_labels

    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        '{"file": "\\u0000", "start": 0, "end": 1, "quote": "x", "tags": []}\n',
        encoding="utf-8",
    )
    with pytest.raises(TropemlError, match=r"labels\.jsonl:1: .*NUL byte"):
        load_span_labels(labels, Taxonomy.load(), tmp_path)


def test_read_work_directory(tmp_path: Path) -> None:
    with pytest.raises(TropemlError, match="is a directory"):
        read_work(tmp_path)


def test_read_work_over_max_bytes(tmp_path: Path) -> None:
    path = write(tmp_path / "big.txt", b"word " * 100)
    with pytest.raises(TropemlError, match="over the 100-byte limit"):
        read_work(path, max_bytes=100)
    assert read_work(path, max_bytes=500).text.startswith("word")
    assert read_work(path, max_bytes=500).text == read_work(path, max_bytes=500).text


def test_read_work_exactly_max_bytes(tmp_path: Path) -> None:
    path = write(tmp_path / "f.txt", b"x" * 100)
    assert read_work(path, max_bytes=100).text == "x" * 100


def test_read_work_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("from stdin ✓\r\n".encode())))
    work = read_work("-")
    assert work.text == "from stdin ✓\n"
    assert work.source == "-"


def test_read_work_stdin_over_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"x" * 50)))
    with pytest.raises(TropemlError, match=r"^-: input is over the 10-byte limit"):
        read_work("-", max_bytes=10)


def test_read_work_stdin_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    with pytest.raises(TropemlError, match="empty"):
        read_work("-")


# expand_paths


def test_expand_directory_sorted_recursive_hidden_skipped(tmp_path: Path) -> None:
    d = tmp_path / "fics"
    for name in [
        "z.txt",
        "a.txt",
        "sub/m.txt",
        "sub/deeper/b.txt",
        ".hidden.txt",
        ".git/x.txt",
        "sub/.secret/y.txt",
        "notes.md",
        "sub/readme.TXT.bak",
    ]:
        write(d / name, b"text")
    (d / "folder.txt").mkdir()  # a directory named like a text file is not a file
    assert expand_paths([d]) == [
        str(d / "a.txt"),
        str(d / "sub/deeper/b.txt"),
        str(d / "sub/m.txt"),
        str(d / "z.txt"),
    ]


def test_expand_passes_files_and_stdin_through_in_order(tmp_path: Path) -> None:
    b = write(tmp_path / "b.md", b"x")
    a = write(tmp_path / "a.txt", b"x")
    d = tmp_path / "dir"
    write(d / "c.txt", b"x")
    assert expand_paths([str(b), "-", a, d]) == [str(b), "-", str(a), str(d / "c.txt")]


def test_expand_hidden_parent_given_explicitly_is_fine(tmp_path: Path) -> None:
    d = tmp_path / ".config"
    write(d / "a.txt", b"x")
    assert expand_paths([d]) == [str(d / "a.txt")]


def test_expand_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(TropemlError, match=r"holds no \.txt, .*\.epub files"):
        expand_paths([tmp_path / "empty"])


def test_expand_directory_with_only_hidden_files(tmp_path: Path) -> None:
    write(tmp_path / "d" / ".a.txt", b"x")
    with pytest.raises(TropemlError, match=r"holds no \.txt, .*\.epub files"):
        expand_paths([tmp_path / "d"])


def test_expand_missing(tmp_path: Path) -> None:
    with pytest.raises(TropemlError, match="no such file or directory") as info:
        expand_paths([tmp_path / "missing.txt"])
    assert "missing.txt" in str(info.value)


def test_expand_nothing() -> None:
    assert expand_paths([]) == []


# fuzz

texts = st.text(max_size=200)
encoded = st.tuples(texts, st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"])).map(
    lambda te: te[0].encode(te[1], errors="replace")
)
prefixes = st.sampled_from([b"", codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE])
arbitrary_bytes = st.one_of(
    st.binary(max_size=300),
    encoded,
    st.tuples(prefixes, st.binary(max_size=100)).map(lambda t: t[0] + t[1]),
)


def _check_work(work: Work) -> None:
    assert isinstance(work, Work)
    assert "\r" not in work.text
    assert work.text.strip()
    for region in work.story_regions():
        assert 0 <= region.start <= region.end == len(work.text)


@settings(max_examples=300, deadline=None)
@given(data=arbitrary_bytes)
def test_arbitrary_bytes_give_work_or_tropeml_error(data: bytes) -> None:
    try:
        work = parse_text(decode_bytes(data, "fuzz"), source="fuzz")
    except TropemlError as exc:
        assert str(exc).startswith("fuzz: ")
    else:
        _check_work(work)


@settings(max_examples=50, deadline=None)
@given(data=arbitrary_bytes)
def test_arbitrary_files_give_work_or_tropeml_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.txt"
        path.write_bytes(data)
        try:
            work = read_work(path, max_bytes=250)
        except TropemlError as exc:
            assert str(exc).startswith(str(path))
        else:
            _check_work(work)
