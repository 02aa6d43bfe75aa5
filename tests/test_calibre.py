"""``tropeml calibre``: a real Calibre library, built with ``calibredb add`` and read back.

The library holds FanFicFare-style EPUBs (whose subjects Calibre imports as tags) and an AO3
EPUB, all made in the test. Skipped where Calibre is not installed (CI installs it, see
scripts/apt-packages.txt); the missing-calibredb case runs everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ao3_fixtures import write_epub
from conftest import edit_config
from epub_fixtures import CAKE, FFF_SUBJECTS, RAIN, SWORD, write_drm_epub, write_fff_epub
from test_cli import all_text, assert_one_line_error, json_lines, run, stderr_of, stdout_of

from tropeml.serve.calibre import Book, plan

needs_calibre = pytest.mark.skipif(
    shutil.which("calibredb") is None, reason="Calibre (calibredb) not installed"
)
ENV = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}


def calibredb(library: Path, *args: str) -> str:
    cmd = ["calibredb", args[0], "--with-library", str(library), *args[1:]]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, check=True).stdout


def books(library: Path, fields: str = "id,title,tags,identifiers") -> dict[str, dict[str, Any]]:
    rows = json.loads(calibredb(library, "list", "--for-machine", "--fields", fields))
    return {row["title"]: row for row in rows}


@pytest.fixture(scope="module")
def library_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Calibre library of three fics (made once per module; tests work on copies)."""
    if shutil.which("calibredb") is None:
        pytest.skip("Calibre (calibredb) not installed")
    tmp = tmp_path_factory.mktemp("calibre")
    fics = [
        write_fff_epub(tmp / "fics" / "puddles.epub", "Puddles", texts=(RAIN, CAKE)),
        write_fff_epub(tmp / "fics" / "duel.epub", "Duel", ["Slow Burn"], texts=(RAIN, SWORD)),
        write_epub(tmp / "fics" / "weather.epub"),
    ]
    library = tmp / "library"
    calibredb(library, "add", *map(str, fics))
    return library


@pytest.fixture
def library(library_template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "library"
    shutil.copytree(library_template, copy)
    return copy


@needs_calibre
def test_tags_merge_into_calibre_and_a_rerun_skips_everything(
    tiny_model: Path, library: Path
) -> None:
    assert sorted(books(library)["Puddles"]["tags"]) == sorted(FFF_SUBJECTS)  # imported by Calibre
    result = run("calibre", library, "--model", tiny_model, "--no-progress")
    assert result.exit_code == 0, all_text(result)
    out = stdout_of(result)
    assert "'Puddles': tagged: + Rainy Day" in out
    after = books(library)
    assert sorted(after["Puddles"]["tags"]) == sorted([*FFF_SUBJECTS, "Rainy Day"])
    assert sorted(after["Duel"]["tags"]) == ["Rainy Day", "Slow Burn"]  # no spoiler tag
    assert after["Weather Report"]["tags"] == ["Rainy Day"]
    mark = after["Puddles"]["identifiers"]["tropeml"]
    assert mark.startswith("tiny-") and mark.endswith("+Rainy%20Day")

    again = run("calibre", library, "--model", tiny_model, "--no-progress")
    assert again.exit_code == 0, all_text(again)
    assert stdout_of(again) == ""
    assert "3 skipped" in stderr_of(again)
    assert books(library) == after


@needs_calibre
def test_dry_run_lists_changes_and_writes_nothing(tiny_model: Path, library: Path) -> None:
    before = books(library)
    result = run("calibre", library, "--model", tiny_model, "--dry-run", "--json", "--spoilers")
    assert result.exit_code == 0, all_text(result)
    rows = {o["title"]: o for o in json_lines(stdout_of(result))}
    assert rows["Duel"]["status"] == "would-tag"
    assert sorted(rows["Duel"]["added"]) == ["Rainy Day", "Sword Fighting"]
    assert books(library) == before


@needs_calibre
def test_a_new_model_version_replaces_only_its_own_tags(
    tiny_model: Path, library: Path, tmp_path: Path
) -> None:
    assert run("calibre", library, "--model", tiny_model, "--spoilers").exit_code == 0
    assert sorted(books(library)["Duel"]["tags"]) == ["Rainy Day", "Slow Burn", "Sword Fighting"]
    calibredb(
        library, "set_metadata", "--field", "tags:Slow Burn,Rainy Day,Sword Fighting,Mine", "2"
    )
    stricter = tmp_path / "stricter"
    shutil.copytree(tiny_model, stricter)
    edit_config(stricter, lambda c: c["thresholds"].update(sword=0.999), reseal=False)
    result = run("calibre", library, "--model", stricter, "--spoilers", "--prefix", "trope: ")
    assert result.exit_code == 0, all_text(result)
    duel = books(library)["Duel"]
    assert sorted(duel["tags"]) == ["Mine", "Slow Burn", "trope: Rainy Day"]
    assert duel["identifiers"]["tropeml"].endswith("+trope%3A%20Rainy%20Day")


@needs_calibre
def test_min_score_writes_only_the_surer_tags_and_marks_the_bar(
    tiny_model: Path, library: Path, tmp_path: Path
) -> None:
    probe = write_fff_epub(tmp_path / "probe.epub", texts=(RAIN, SWORD))
    (full,) = json_lines(
        stdout_of(run("tag", probe, "--model", tiny_model, "--json", "--spoilers"))
    )
    scores = {t["name"]: t["score"] for t in full["tags"]}
    assert sorted(scores) == ["Rainy Day", "Sword Fighting"] and len(set(scores.values())) == 2
    least = sum(scores.values()) / 2
    surer = [name for name, score in scores.items() if score >= least]
    args = ("calibre", library, "--model", tiny_model, "--spoilers", "--no-progress")
    result = run(*args, "--min-score", least)
    assert result.exit_code == 0, all_text(result)
    duel = books(library)["Duel"]
    assert sorted(duel["tags"]) == sorted(["Slow Burn", *surer])
    assert f"-min{least:g}+" in duel["identifiers"]["tropeml"]
    again = run(*args)  # another bar is another version: retagged, not skipped
    assert again.exit_code == 0, all_text(again)
    assert sorted(books(library)["Duel"]["tags"]) == ["Rainy Day", "Slow Burn", "Sword Fighting"]


@needs_calibre
def test_custom_column(tiny_model: Path, library: Path) -> None:
    missing = run("calibre", library, "--model", tiny_model, "--column", "#tropes")
    assert_one_line_error(missing, "no custom column #tropes", "add_custom_column")
    calibredb(library, "add_custom_column", "--is-multiple", "tropes", "Tropes", "text")
    before = books(library)
    result = run("calibre", library, "--model", tiny_model, "--column", "#tropes", "--spoilers")
    assert result.exit_code == 0, all_text(result)
    after = books(library, "id,title,tags,*tropes")
    assert sorted(after["Duel"]["*tropes"]) == ["Rainy Day", "Sword Fighting"]
    assert all(after[t]["tags"] == before[t]["tags"] for t in before)  # tags untouched


@needs_calibre
def test_a_bad_book_is_one_line_and_the_others_are_tagged(
    tiny_model: Path, library: Path, tmp_path: Path
) -> None:
    drm = write_drm_epub(tmp_path / "locked.epub")
    calibredb(library, "add", str(drm), "--title", "Locked")
    result = run("calibre", library, "--model", tiny_model, "--no-progress")
    assert result.exit_code == 1
    errors = [ln for ln in stderr_of(result).splitlines() if ln.startswith("tropeml: error:")]
    assert len(errors) == 1 and "DRM-protected EPUB" in errors[0], all_text(result)
    assert "Traceback" not in all_text(result)
    after = books(library)
    assert "tropeml" not in after["Locked"]["identifiers"]
    assert after["Weather Report"]["tags"] == ["Rainy Day"]


@needs_calibre
def test_not_a_library_is_one_line(tiny_model: Path, tmp_path: Path) -> None:
    result = run("calibre", tmp_path, "--model", tiny_model)
    assert_one_line_error(result, f"{tmp_path}: not a Calibre library")
    assert not (tmp_path / "metadata.db").exists()  # calibredb was not left to create one


def test_missing_calibredb_says_how_to_install(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("TROPEML_CALIBREDB", raising=False)
    result = run("calibre", tmp_path, "--model", tiny_model)
    assert_one_line_error(result, "calibredb not found on the PATH", "install Calibre")


def test_plan_keeps_the_readers_tags() -> None:
    book = Book(
        1,
        "t",
        tags=("Angst", "Fluff", "Old One"),
        identifiers={"isbn": "1", "tropeml": "m-old+Old%20One"},
    )
    fields, added, removed = plan(book, ["angst", "New, One"], "m-new", None)
    assert added == ("New; One",) and removed == ("Old One",)
    assert fields == {
        "tags": "Angst,Fluff,New; One",
        "identifiers": "isbn:1,tropeml:m-new+New%3B%20One",
    }
    same = Book(1, "t", tags=("Angst", "X"), identifiers={"tropeml": "m+X"})
    assert plan(same, ["X"], "m", None) == ({}, (), ())
