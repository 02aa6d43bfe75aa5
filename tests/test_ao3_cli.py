"""`tropeml tag` and `tropeml audit` on AO3-style downloads (HTML and EPUB, three chapters).

The tiny hashing model (see conftest) stands in for the real encoder, so these run fast.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ao3_fixtures import CHAPTERS, download_html, write_epub
from test_cli import all_text, json_lines, run

# rain: written and shown (confirmed); sword: written, never shown (unsupported);
# cake: shown in chapter 2, not written (unlisted); "Soft Boys": no trope (unmapped).
AUDIT_TAGS = ["Alternate Universe - Rain", "Swordfights", "Soft Boys"]
CHAPTER_TITLES = {title for title, _ in CHAPTERS}


@pytest.fixture
def audit_model(tiny_model: Path, tmp_path: Path) -> Path:
    """The tiny model with hand-set thresholds (as a user may set them in config.json).

    The hashing encoder's tiny model scores swords on any rainy text; a high sword threshold
    keeps these tests about the audit, not about that model's quality. The fics here are
    four passages long, so one cake passage pools (top-2 mean) to about 0.5: 0.4 lets
    chapter 2 carry the tag.
    """
    folder = tmp_path / "audit-model"
    shutil.copytree(tiny_model, folder)
    config = json.loads((folder / "config.json").read_text())
    config["thresholds"] = {"rain": 0.4, "cake": 0.4, "sword": 0.97}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(params=["html", "epub"])
def download(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "html":
        path = tmp_path / "work.html"
        path.write_text(download_html(AUDIT_TAGS), encoding="utf-8")
        return path
    return write_epub(tmp_path / "work.epub", AUDIT_TAGS)


def test_tag_reports_chapter_aware_evidence(audit_model: Path, download: Path) -> None:
    result = run("tag", download, "--model", audit_model, "--json")
    assert result.exit_code == 0, all_text(result)
    (obj,) = json_lines(result.stdout)
    tags = {t["id"]: t for t in obj["tags"]}
    assert {"rain", "cake"} <= set(tags)
    assert tags["rain"]["evidence"][0]["chapter"] == "Chapter 1: Storm"
    assert tags["cake"]["evidence"][0]["chapter"] == "Chapter 2: Flour"
    for tag in obj["tags"]:
        for ev in tag["evidence"]:
            assert ev["chapter"] in CHAPTER_TITLES
    table = run("tag", download, "--model", audit_model)
    assert table.exit_code == 0, all_text(table)
    assert "Chapter 2: Flour" in table.stdout


def test_audit_reports_both_directions(audit_model: Path, download: Path) -> None:
    result = run("audit", download, "--model", audit_model, "--json")
    assert result.exit_code == 0, all_text(result)
    (obj,) = json_lines(result.stdout)
    assert obj["author_tags"] == {
        "mapped": {"rain": ["Alternate Universe - Rain"], "sword": ["Swordfights"]},
        "unmapped": ["Soft Boys"],
    }
    assert obj["confirmed"] == ["rain"]
    unlisted = {f["id"]: f for f in obj["unlisted"]}
    assert "cake" in unlisted and "rain" not in unlisted
    cake = unlisted["cake"]
    assert cake["evidence"][0]["chapter"] == "Chapter 2: Flour"
    assert cake["prominence"] > 0 and "Chapter 2: Flour" in cake["reason"]
    (sword,) = obj["unsupported"]
    assert sword["id"] == "sword" and sword["author_tags"] == ["Swordfights"]
    assert sword["score"] < sword["threshold"]
    assert "Swordfights" in sword["reason"] and len(sword["evidence"]) == 1
    for finding in obj["unlisted"] + obj["unsupported"]:
        assert "\n" not in finding["reason"]

    table = run("audit", download, "--model", audit_model)
    assert table.exit_code == 0, all_text(table)
    out = table.stdout
    assert "unlisted" in out and "unsupported" in out
    assert "Soft Boys" in out


def test_audit_skips_works_without_author_tags(tiny_model: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("Rain and thunder all day long.", encoding="utf-8")
    result = run("audit", plain, "--model", tiny_model, "--json")
    assert result.exit_code == 0, all_text(result)
    assert json_lines(result.stdout) == []
    assert "no author tags" in all_text(result)


def test_audit_bad_input_is_one_line(tiny_model: Path, tmp_path: Path) -> None:
    result = run("audit", tmp_path / "missing.html", "--model", tiny_model)
    assert result.exit_code == 1
    assert all_text(result).strip().startswith("tropeml: error:")


def test_spoiler_tags_hidden_unless_asked(tiny_model: Path, tmp_path: Path) -> None:
    fic = tmp_path / "duel.txt"  # sword is a spoiler in the tiny taxonomy
    fic.write_text(
        "The sword met the blade; parry, duel, steel, hilt, lunge and scabbard.\n\n" * 3,
        encoding="utf-8",
    )
    shown = run("tag", fic, "--model", tiny_model, "--json", "--spoilers")
    (full,) = json_lines(shown.stdout)
    assert "sword" in {t["id"] for t in full["tags"]}
    assert next(t for t in full["tags"] if t["id"] == "sword")["spoiler"] is True
    hidden = run("tag", fic, "--model", tiny_model, "--json")
    (obj,) = json_lines(hidden.stdout)
    assert "sword" not in {t["id"] for t in obj["tags"]}
    assert obj["hidden_spoilers"] == ["sword"]
    assert obj["scores"]["sword"] == full["scores"]["sword"]
    table = run("tag", fic, "--model", tiny_model)
    assert "Sword Fighting" not in table.stdout and "spoiler tag hidden" in table.stdout
    assert "Sword Fighting" in run("tag", fic, "--model", tiny_model, "--spoilers").stdout


def test_corrupt_epub_is_one_line_and_others_still_tagged(tiny_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.epub"
    bad.write_bytes(b"PK\x03\x04" + b"\x00" * 26 + b"mimetypeapplication/epub+zip" + b"\x01" * 99)
    good = tmp_path / "good.html"
    good.write_text(download_html(AUDIT_TAGS), encoding="utf-8")
    result = run("tag", bad, good, "--model", tiny_model, "--json")
    assert result.exit_code == 1
    errors = [ln for ln in all_text(result).splitlines() if ln.startswith("tropeml: error:")]
    assert len(errors) == 1 and "not a readable EPUB" in errors[0]
    assert "Traceback" not in all_text(result)
    assert [o["source"] for o in json_lines(result.stdout)] == [str(good)]
