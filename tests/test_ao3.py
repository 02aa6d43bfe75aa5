"""AO3 readers (HTML download, work page, EPUB, Work Header text) and author-tag mapping."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from ao3_fixtures import (
    AUTHOR,
    CHAPTERS,
    FREEFORM,
    SUMMARY,
    TITLE,
    download_html,
    work_page_html,
    write_epub,
)
from conftest import TINY_TOML

from tropeml.core.errors import TropemlError
from tropeml.core.taxonomy import Taxonomy
from tropeml.io.ao3 import looks_like_html
from tropeml.io.author_tags import map_author_tags, resolve_tag
from tropeml.io.readers import expand_paths, parse_bytes, parse_text, read_work
from tropeml.text.passages import split_passages

CHAPTER_TITLES = [title for title, _ in CHAPTERS]


def ao3_files(folder: Path) -> dict[str, Path]:
    """The three AO3 formats, written with misleading names to prove sniffing by content."""
    folder.mkdir(parents=True, exist_ok=True)
    dl = folder / "download.html"
    dl.write_text(download_html(), encoding="utf-8")
    page = folder / "page.htm"
    page.write_text(work_page_html(), encoding="utf-8")
    epub = write_epub(folder / "book.epub")
    return {"download": dl, "page": page, "epub": epub}


@pytest.mark.parametrize("kind", ["download", "page", "epub"])
def test_reads_metadata_and_three_chapters(kind: str, tmp_path: Path) -> None:
    work = read_work(ao3_files(tmp_path)[kind])
    meta = work.meta
    assert meta is not None
    assert meta.format == {"download": "ao3-html", "page": "ao3-page", "epub": "ao3-epub"}[kind]
    assert (meta.title, meta.authors, work.title) == (TITLE, (AUTHOR,), TITLE)
    assert meta.freeform == tuple(FREEFORM) == work.author_tags
    assert meta.rating == "General Audiences"
    assert meta.warnings == ("No Archive Warnings Apply",)
    assert meta.fandoms == ("Original Work",)
    assert meta.relationships == ("Alex/Sam",)
    assert meta.characters == ("Alex", "Sam")
    assert meta.summary == SUMMARY
    assert [r.chapter for r in work.regions] == CHAPTER_TITLES
    for region, (_, paras) in zip(work.regions, CHAPTERS, strict=True):
        body = work.text[region.start : region.end]
        assert body.startswith(paras[0]) and body.endswith(paras[-1])
    for junk in ("Notes are not story text", "Afterword", "Chapter Text", "not story text"):
        assert junk not in work.text


@pytest.mark.parametrize("kind", ["download", "page", "epub"])
def test_format_is_picked_by_content_not_name(kind: str, tmp_path: Path) -> None:
    src = ao3_files(tmp_path / "src")[kind]
    renamed = tmp_path / "renamed.txt"
    renamed.write_bytes(src.read_bytes())
    assert read_work(renamed).regions == read_work(src).regions


def test_passages_never_cross_chapters_and_carry_their_chapter(tmp_path: Path) -> None:
    work = read_work(ao3_files(tmp_path)["download"])
    passages = split_passages(work, max_tokens=1000)
    assert [p.chapter for p in passages] == [
        "Chapter 1: Storm",
        "Chapter 1: Storm",  # the empty paragraph is a scene break
        "Chapter 2: Flour",
        "Chapter 3: Quiet",
    ]
    for p in passages:
        assert p.text == work.text[p.start : p.end]
        assert not p.text.startswith("Chapter")


def test_line_breaks_and_hr_inside_a_chapter() -> None:
    html = (
        '<html><body><div id="chapters" class="userstuff">'
        "<p>One line<br/>next   line</p><hr/><p>After the break <em>emphasis</em>.</p>"
        "</div></body></html>"
    )
    work = parse_bytes(html.encode())
    assert work.text == "One line\nnext line\n\n* * *\n\nAfter the break emphasis.\n"
    assert work.regions[0].chapter is None
    assert len(split_passages(work, max_tokens=1000)) == 2


def test_other_html_reads_the_body() -> None:
    work = parse_bytes(b"<html><head><title>T</title></head><body><p>A.</p><p>B.</p></body></html>")
    assert work.text == "A.\n\nB.\n"
    assert work.meta is not None and work.meta.format == "html" and work.meta.title == "T"


def test_html_without_text_is_an_error() -> None:
    with pytest.raises(TropemlError, match="no story text"):
        parse_bytes(b"<!DOCTYPE html><html><body><div id='chapters'></div></body></html>", "x")


def test_corrupt_epub_is_an_error(tmp_path: Path) -> None:
    data = write_epub(tmp_path / "a.epub").read_bytes()
    with pytest.raises(TropemlError, match=r"x\.epub"):
        parse_bytes(data[:400], "x.epub")


def test_epub_without_ao3_markup_uses_its_metadata(tmp_path: Path) -> None:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("x")
    book.set_title("Plain Book")
    book.add_author("Someone")
    doc = epub.EpubHtml(title="One", file_name="one.xhtml")
    doc.content = "<html><body><p>Only a paragraph.</p></body></html>"
    book.add_item(doc)
    book.toc = (doc,)
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = [doc]
    epub.write_epub(str(tmp_path / "p.epub"), book)
    assert zipfile.is_zipfile(tmp_path / "p.epub")
    work = read_work(tmp_path / "p.epub")
    assert work.text == "Only a paragraph.\n"
    assert work.meta is not None and work.meta.title == "Plain Book"
    assert work.meta.authors == ("Someone",)


def test_text_is_not_taken_for_html() -> None:
    assert not looks_like_html("I <3 rain.\n<p> is a tag.")
    assert not looks_like_html("Plain story.")
    assert looks_like_html("\ufeff<!doctype html><p>x")
    assert looks_like_html("<?xml version='1.0'?><html><body></body></html>")
    assert looks_like_html("<div class='userstuff'><p>x</p></div>")


def test_work_header_tags_are_read() -> None:
    text = (
        "Work Header\n\nA Title\nRating:\nMature\nAdditional Tags:\nHurt/Comfort, Angst\n"
        "Fluff\nSummary:\nNot tags, here.\nRelationship: A/B\n\nWork Text:\nStory.\n"
    )
    work = parse_text(text)
    assert work.meta is not None
    assert work.meta.freeform == ("Hurt/Comfort", "Angst", "Fluff")
    assert work.meta.rating == "Mature"
    assert work.meta.relationships == ("A/B",)
    assert work.text[work.regions[0].start :] == "Story.\n"


def test_expand_picks_up_html_and_epub(tmp_path: Path) -> None:
    files = ao3_files(tmp_path / "fics")
    (tmp_path / "fics" / "notes.md").write_text("x")
    assert expand_paths([tmp_path / "fics"]) == sorted(str(p) for p in files.values())


def test_author_tags_map_through_synonyms() -> None:
    taxonomy = Taxonomy.from_dict(__import__("tomllib").loads(TINY_TOML))
    mapped = map_author_tags(FREEFORM, taxonomy)
    assert mapped.ids == {"rain": ("Alternate Universe - Rain",), "cake": ("baking!",)}
    assert mapped.unmapped == ("Soft Boys", "Slow Burn")
    assert mapped.to_dict()["unmapped"] == ["Soft Boys", "Slow Burn"]
    for variant in ("RAIN", "rain au", "AU: Rain", "Alternate Universe – Rain", "Swordfight"):
        assert resolve_tag(variant, taxonomy) in {"rain", "sword"}, variant
    assert resolve_tag("Umbrellas", taxonomy) is None
