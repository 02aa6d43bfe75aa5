"""``tropeml write``: tags into EPUB subjects in place, and into a copy of an HTML download.

Runs the CLI with the tiny hashing model on AO3-style (EPUB 3, from ebooklib) and
FanFicFare-style (EPUB 2, built by hand) EPUBs.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest
from ao3_fixtures import download_html, write_epub
from epub_fixtures import (
    CAKE,
    FFF_SUBJECTS,
    RAIN,
    SWORD,
    write_drm_epub,
    write_fff_epub,
    write_font_obfuscated_epub,
)
from test_cli import all_text, json_lines, run, stderr_of, stdout_of

from tropeml.core.errors import TropemlError
from tropeml.io.epub_meta import ID_PREFIX, META_NAME, read_subjects, write_subjects
from tropeml.io.html_meta import copy_path
from tropeml.io.readers import read_work


def entries(path: Path) -> list[tuple[str, int, bytes]]:
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        return [(i.filename, i.compress_type, zf.read(i)) for i in zf.infolist()]


def assert_valid_epub(path: Path) -> None:
    """mimetype first and stored, without extra field; the OPF parses; ebooklib reads it."""
    from ebooklib import epub

    data = path.read_bytes()
    assert data[30:38] == b"mimetype" and data[38:58] == b"application/epub+zip"
    first = entries(path)[0]
    assert first[:2] == ("mimetype", zipfile.ZIP_STORED)
    epub.read_epub(str(path), options={"ignore_ncx": True})
    read_work(path)


def canonical(xml: bytes) -> bytes:
    from lxml import etree

    out: bytes = etree.tostring(etree.fromstring(xml), method="c14n")
    return out


def subjects_ebooklib(path: Path) -> list[str]:
    from ebooklib import epub

    book = epub.read_epub(str(path), options={"ignore_ncx": True})
    return [s for s, _ in book.get_metadata("DC", "subject")]


# --------------------------------------------------------------------------- EPUB


def test_ao3_epub_gets_marked_subjects_and_stays_valid(tiny_model: Path, tmp_path: Path) -> None:
    path = write_epub(tmp_path / "fic.epub")
    before = entries(path)
    result = run("write", path, "--model", tiny_model, "--json")
    assert result.exit_code == 0, all_text(result)
    (obj,) = json_lines(stdout_of(result))
    assert obj["written"]["subjects"] == ["Rainy Day"] and obj["written"]["changed"]
    assert [t["name"] for t in obj["tags"]] == ["Rainy Day"]
    assert_valid_epub(path)
    assert read_subjects(path) == ([], ["Rainy Day"])
    assert subjects_ebooklib(path) == ["Rainy Day"]
    after = entries(path)
    # every entry but the OPF is the same name, compression and bytes, in the same order
    assert [e[0] for e in after] == [e[0] for e in before]
    changed = [a[0] for a, b in zip(after, before, strict=True) if a != b]
    assert changed == ["EPUB/content.opf"]
    opf = after[2][2].decode()
    assert f'id="{ID_PREFIX}1"' in opf and f'property="{META_NAME}"' in opf  # EPUB 3 refinement
    assert 'prefix="rendition: http://www.idpf.org/vocab/rendition/# tropeml: ' in opf


def test_min_score_writes_only_the_surer_tags(tiny_model: Path, tmp_path: Path) -> None:
    probe = write_fff_epub(tmp_path / "probe.epub", texts=(RAIN, SWORD))
    (full,) = json_lines(
        stdout_of(run("write", probe, "--model", tiny_model, "--json", "--spoilers"))
    )
    scores = sorted(t["score"] for t in full["tags"])
    assert len(scores) >= 2 and scores[0] < scores[-1], "the fic should give two tags"
    least = (scores[0] + scores[-1]) / 2
    path = write_fff_epub(tmp_path / "fic.epub", texts=(RAIN, SWORD))
    args = ("write", path, "--model", tiny_model, "--json", "--spoilers", "--min-score", least)
    result = run(*args)
    assert result.exit_code == 0, all_text(result)
    (kept,) = json_lines(stdout_of(result))
    names = [t["name"] for t in full["tags"] if t["score"] >= least]
    assert 0 < len(names) < len(full["tags"])
    assert kept["written"]["subjects"] == names == [t["name"] for t in kept["tags"]]
    assert read_subjects(path) == (FFF_SUBJECTS, names)
    assert run("write", path, "--model", tiny_model, "--min-score", "2").exit_code == 2


def test_running_twice_changes_nothing(tiny_model: Path, tmp_path: Path) -> None:
    path = write_fff_epub(tmp_path / "fff.epub", texts=(RAIN, CAKE))
    assert run("write", path, "--model", tiny_model).exit_code == 0
    first, mtime = path.read_bytes(), path.stat().st_mtime_ns
    again = run("write", path, "--model", tiny_model)
    assert again.exit_code == 0, all_text(again)
    assert "unchanged: Rainy Day" in stdout_of(again)
    assert path.read_bytes() == first and path.stat().st_mtime_ns == mtime


def test_fanficfare_subjects_are_kept_and_only_ours_replaced(
    tiny_model: Path, tmp_path: Path
) -> None:
    path = write_fff_epub(tmp_path / "fff.epub", texts=(RAIN, SWORD))
    assert run("write", path, "--model", tiny_model).exit_code == 0
    assert read_subjects(path) == (FFF_SUBJECTS, ["Rainy Day"])  # sword is a spoiler
    opf = dict((n, d) for n, _, d in entries(path))["content.opf"].decode()
    assert "refines" not in opf and "prefix=" not in opf  # EPUB 2: no refinements
    assert f'<meta name="{META_NAME}" content="tiny-' in opf.replace("opf:meta", "meta")
    assert '<meta name="calibre:series" content="A Series"/>' in opf

    result = run("write", path, "--model", tiny_model, "--prefix", "trope: ", "--spoilers")
    assert result.exit_code == 0, all_text(result)
    own, ours = read_subjects(path)
    assert own == FFF_SUBJECTS
    assert sorted(ours) == ["trope: Rainy Day", "trope: Sword Fighting"]
    assert subjects_ebooklib(path) == FFF_SUBJECTS + ours
    assert_valid_epub(path)


def test_removing_our_subjects_restores_the_package(tmp_path: Path) -> None:
    path = write_fff_epub(tmp_path / "fff.epub")
    original = dict((n, d) for n, _, d in entries(path))
    write_subjects(path, ["A", "B/C"], "m-1")
    edit = write_subjects(path, [], "m-1")
    assert edit.changed and edit.subjects == ()
    now = dict((n, d) for n, _, d in entries(path))
    assert now.keys() == original.keys()
    c14n = [canonical(now["content.opf"]), canonical(original["content.opf"])]
    assert c14n[0] == c14n[1]  # the same document (attribute order may differ)
    assert all(now[k] == original[k] for k in original if k != "content.opf")


def test_a_subject_the_epub_already_has_is_not_repeated(tiny_model: Path, tmp_path: Path) -> None:
    path = write_fff_epub(tmp_path / "fff.epub", subjects=["Slow Burn", "rainy day"])
    result = run("write", path, "--model", tiny_model)
    assert result.exit_code == 0, all_text(result)
    assert read_subjects(path) == (["Slow Burn", "rainy day"], [])


def test_backup_keeps_the_original_and_permissions_are_kept(
    tiny_model: Path, tmp_path: Path
) -> None:
    path = write_epub(tmp_path / "fic.epub")
    path.chmod(0o640)
    original = path.read_bytes()
    result = run("write", path, "--model", tiny_model, "--backup", "--json")
    assert result.exit_code == 0, all_text(result)
    (obj,) = json_lines(stdout_of(result))
    bak = Path(obj["written"]["backup"])
    assert bak == tmp_path / "fic.epub.bak" and bak.read_bytes() == original
    assert path.read_bytes() != original
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fic.epub", "fic.epub.bak"]


def test_font_obfuscation_is_not_drm(tiny_model: Path, tmp_path: Path) -> None:
    path = write_font_obfuscated_epub(tmp_path / "fonts.epub")
    result = run("write", path, "--model", tiny_model)
    assert result.exit_code == 0, all_text(result)
    assert read_subjects(path)[1] == ["Rainy Day"]
    assert dict((n, d) for n, _, d in entries(path))["fonts/a.otf"] == b"\x00font"


@pytest.mark.skipif(shutil.which("ebook-meta") is None, reason="Calibre's ebook-meta not installed")
def test_calibre_ebook_meta_reads_the_tags(tiny_model: Path, tmp_path: Path) -> None:
    path = write_fff_epub(tmp_path / "fff.epub", texts=(RAIN, SWORD))
    assert run("write", path, "--model", tiny_model, "--spoilers").exit_code == 0
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run(
        ["ebook-meta", str(path)], capture_output=True, text=True, env=env, check=True
    ).stdout
    (line,) = [ln for ln in out.splitlines() if ln.startswith("Tags")]
    tags = [t.strip() for t in line.split(":", 1)[1].split(",")]
    assert tags[: len(FFF_SUBJECTS)] == FFF_SUBJECTS
    assert sorted(tags[len(FFF_SUBJECTS) :]) == ["Rainy Day", "Sword Fighting"]


# --------------------------------------------------------------------------- HTML and folders


def test_html_download_gets_a_tagged_copy(tiny_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "fic.html"
    path.write_text(download_html(), encoding="utf-8")
    original = path.read_bytes()
    result = run("write", path, "--model", tiny_model)
    assert result.exit_code == 0, all_text(result)
    copy = copy_path(path)
    assert copy == tmp_path / "fic.tropeml.html"
    assert f"-> {copy}: wrote: Rainy Day" in stdout_of(result)
    assert path.read_bytes() == original
    text = copy.read_text(encoding="utf-8")
    assert '<meta name="keywords" content="Rainy Day"/>' in text
    assert '<dt class="tropeml">Tropes (tropeml):</dt><dd class="tropeml">Rainy Day</dd>' in text
    assert read_work(copy).text == read_work(path).text  # the story is untouched
    data = copy.read_bytes()
    assert "unchanged" in stdout_of(run("write", path, "--model", tiny_model))
    assert copy.read_bytes() == data


def test_folder_writes_epub_and_html_and_skips_text_and_copies(
    tiny_model: Path, tmp_path: Path
) -> None:
    lib = tmp_path / "lib"
    write_epub(lib / "a.epub")
    (lib / "b.html").write_text(download_html(), encoding="utf-8")
    (lib / "notes.txt").write_text("Rain and storm and thunder.", encoding="utf-8")
    result = run("write", lib, "--model", tiny_model, "--json")
    assert result.exit_code == 0, all_text(result)
    assert [Path(o["source"]).name for o in json_lines(stdout_of(result))] == ["a.epub", "b.html"]
    again = run("write", lib, "--model", tiny_model, "--json")  # b.tropeml.html is not tagged
    assert [o["written"]["changed"] for o in json_lines(stdout_of(again))] == [False, False]
    assert sorted(p.name for p in lib.iterdir()) == [
        "a.epub",
        "b.html",
        "b.tropeml.html",
        "notes.txt",
    ]


def test_plain_text_named_explicitly_is_one_line(tiny_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "fic.txt"
    path.write_text("Rain and storm and thunder.", encoding="utf-8")
    result = run("write", path, "--model", tiny_model)
    assert result.exit_code == 1
    message = "plain text has no metadata to write tags into (EPUB and HTML only)"
    assert stderr_of(result).strip() == f"tropeml: error: {path}: {message}"


# --------------------------------------------------------------------------- bad EPUBs


def test_bad_epubs_get_one_line_each_and_the_others_are_written(
    tiny_model: Path, tmp_path: Path
) -> None:
    good = write_epub(tmp_path / "1-good.epub")
    corrupt = tmp_path / "2-corrupt.epub"
    corrupt.write_bytes(write_epub(tmp_path / "whole.epub").read_bytes()[:3000])
    (tmp_path / "whole.epub").unlink()
    drm = write_drm_epub(tmp_path / "3-drm.epub")
    read_only = write_fff_epub(tmp_path / "4-read-only.epub")
    read_only.chmod(0o444)
    last = write_fff_epub(tmp_path / "5-last.epub")
    before = {p: p.read_bytes() for p in (corrupt, drm, read_only)}
    result = run("write", tmp_path, "--model", tiny_model, "--json")
    assert result.exit_code == 1
    assert "Traceback" not in all_text(result)
    errors = [ln for ln in stderr_of(result).splitlines() if ln.startswith("tropeml: error:")]
    assert len(errors) == 3, all_text(result)
    assert f"{corrupt}: not a readable EPUB" in errors[0]
    assert f"{drm}: DRM-protected EPUB" in errors[1]
    assert f"{read_only}: file is read-only" in errors[2]
    assert [Path(o["source"]) for o in json_lines(stdout_of(result))] == [good, last]
    assert read_subjects(good)[1] == read_subjects(last)[1] == ["Rainy Day"]
    assert {p: p.read_bytes() for p in before} == before


def test_api_refuses_drm_and_read_only(tmp_path: Path) -> None:
    drm = write_drm_epub(tmp_path / "drm.epub")
    with pytest.raises(TropemlError, match="DRM-protected"):
        write_subjects(drm, ["A"], "m")
    ro = write_fff_epub(tmp_path / "ro.epub")
    ro.chmod(0o400)
    with pytest.raises(TropemlError, match="read-only"):
        write_subjects(ro, ["A"], "m")


def test_a_symlinked_epub_changes_its_target(tmp_path: Path) -> None:
    real = write_fff_epub(tmp_path / "real" / "fic.epub")
    link = tmp_path / "link.epub"
    link.symlink_to(real)
    edit = write_subjects(link, ["A"], "m")
    assert edit.changed and link.is_symlink()
    assert read_subjects(real) == (FFF_SUBJECTS, ["A"])
