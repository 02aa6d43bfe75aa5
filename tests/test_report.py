"""``tropeml report`` and the timeline plots, with the tiny hashing model (no browser).

The report is one HTML file with everything inline and a policy that forbids any request;
its data is the ``tag --json --spoilers`` object of each work. The timeline SVG is valid XML
with one series per tag and a mark per chapter.
"""

from __future__ import annotations

import json
import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from ao3_fixtures import download_html
from conftest import make_passage
from typer.testing import CliRunner

import tropeml
from tropeml.cli.app import app
from tropeml.core.types import Timeline
from tropeml.io.readers import parse_bytes
from tropeml.serve.report import analyse, render_report, timeline_svg, write_plot

SVG = "{http://www.w3.org/2000/svg}"
SCENES = [["rain"], [], ["cake"], ["rain", "cake"], [], ["sword"], ["sword"], ["rain"]]


def fic(seed: int = 0) -> str:
    rng = random.Random(seed)
    return "\n\n\n".join(make_passage(rng, tags, 60) for tags in SCENES) + "\n"


def run(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def stderr_of(result: Any) -> str:
    try:
        return str(result.stderr)
    except ValueError:
        return str(result.output)


def report_data(page: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="tropeml-data">(.*?)</script>', page)
    assert match
    return dict(json.loads(match.group(1)))


@pytest.fixture
def fics(tmp_path: Path) -> tuple[Path, Path]:
    text = tmp_path / "storm.txt"
    text.write_text(fic(), encoding="utf-8")
    page = tmp_path / "weather.html"
    page.write_text(download_html(), encoding="utf-8")
    return text, page


def test_report_is_one_self_contained_file_with_the_cli_json(
    tiny_model: Path, fics: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    r = run("report", *fics, "-o", out, "--model", tiny_model, "--no-cache")
    assert r.exit_code == 0, r.output
    assert f"wrote {out} (2 works)" in stderr_of(r)
    page = out.read_text(encoding="utf-8")
    # nothing to fetch: no src/href, a policy that forbids requests, no URL but the SVG namespace
    assert not re.search(r"\s(?:src|href)=", page)
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert set(re.findall(r"https?://[^\s\"'<>\\]+", page)) <= {"http://www.w3.org/2000/svg"}
    data = report_data(page)
    assert data["mode"] == "report"
    tagged = run("tag", *fics, "--json", "--spoilers", "--model", tiny_model, "--no-cache")
    expected = [json.loads(ln) for ln in tagged.stdout.splitlines() if ln.startswith("{")]
    assert [w["result"] for w in data["works"]] == expected
    storm, weather = data["works"]
    assert storm["text"] == fics[0].read_text(encoding="utf-8")
    assert weather["title"] == "Weather Report"
    assert weather["audit"] is not None and storm["audit"] is None
    assert weather["timeline_svg"].count('class="chapter-mark"') == 3


def test_report_escapes_text_that_looks_like_markup(tiny_model: Path, tmp_path: Path) -> None:
    evil = tmp_path / "evil.txt"
    evil.write_text(
        fic() + "\n</script><script>alert(1)</script><!-- \u2028 <b>bold</b>\n", encoding="utf-8"
    )
    out = tmp_path / "r.html"
    r = run("report", evil, "-o", out, "--model", tiny_model, "--no-cache")
    assert r.exit_code == 0, r.output
    page = out.read_text(encoding="utf-8")
    assert "alert(1)" in page  # the text is there ...
    assert "<script>alert" not in page and "</script><script>" not in page  # ... inert
    assert report_data(page)["works"][0]["text"] == evil.read_text(encoding="utf-8")


def test_plot_svg_has_a_series_per_tag_and_chapter_marks(
    tiny_model: Path, fics: tuple[Path, Path], tmp_path: Path
) -> None:
    plot = tmp_path / "timeline.svg"
    r = run("report", fics[1], "--plot", plot, "--model", tiny_model, "--no-cache")
    assert r.exit_code == 0, r.output
    root = ET.parse(plot).getroot()
    assert root.tag == f"{SVG}svg"
    series = [g for g in root.iter(f"{SVG}g") if g.get("class") == "series"]
    tagger = tropeml.load(tiny_model, cache=False)
    result = tagger.tag(parse_bytes(fics[1].read_bytes(), str(fics[1]))).without_spoilers()
    assert [g.get("data-tag") for g in series] == [t.id for t in result.tags]
    marks = [ln for ln in root.iter(f"{SVG}line") if ln.get("class") == "chapter-mark"]
    assert len(marks) == 3
    assert not list(root.iter(f"{SVG}script"))
    # spoilers only when asked
    r = run("report", fics[0], "--plot", plot, "--model", tiny_model, "--no-cache")
    assert 'data-tag="sword"' not in plot.read_text()
    r = run("report", fics[0], "--plot", plot, "--spoilers", "--model", tiny_model, "--no-cache")
    assert 'data-tag="sword"' in plot.read_text()


def test_plot_png_and_several_works(
    tiny_model: Path, fics: tuple[Path, Path], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    plot = tmp_path / "t.png"
    r = run("report", *fics, "--plot", plot, "--model", tiny_model, "--no-cache")
    assert r.exit_code == 0, r.output
    for name in ("t-1.png", "t-2.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
    assert not plot.exists()


def test_a_bad_file_is_one_line_and_the_others_are_reported(
    tiny_model: Path, fics: tuple[Path, Path], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(64))
    out = tmp_path / "r.html"
    r = run("report", fics[0], bad, "-o", out, "--model", tiny_model, "--no-cache")
    assert r.exit_code == 1
    assert f"tropeml: error: {bad}: looks like a binary file, not text" in stderr_of(r)
    assert "Traceback" not in r.output
    assert len(report_data(out.read_text(encoding="utf-8"))["works"]) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "say where to write: -o report.html, --plot timeline.svg, or both"),
        (["--plot", "t.jpg"], "t.jpg: a plot is written as .svg or .png"),
        (["-o", "/no/such/folder/r.html"], "/no/such/folder/r.html: cannot write"),
    ],
)
def test_report_option_errors_are_one_line(
    tiny_model: Path, fics: tuple[Path, Path], args: list[str], message: str
) -> None:
    r = run("report", fics[0], *args, "--model", tiny_model, "--no-cache")
    assert r.exit_code == 1
    lines = [ln for ln in stderr_of(r).splitlines() if ln.startswith("tropeml: error:")]
    assert len(lines) == 1 and lines[0].startswith(f"tropeml: error: {message}"), r.output


def test_timeline_svg_of_nothing_and_write_plot_endings(tmp_path: Path) -> None:
    empty = Timeline((), (), (), ())
    svg = timeline_svg(empty)
    assert "No tag over its threshold." in svg
    ET.fromstring(svg)
    with pytest.raises(tropeml.TropemlError, match=r"written as \.svg or \.png"):
        write_plot(empty, tmp_path / "t.pdf")


def test_render_report_of_an_api_view_matches_the_tagger(tiny_model: Path) -> None:
    tagger = tropeml.load(tiny_model, cache=False)
    work = parse_bytes(download_html().encode(), "weather.html")
    view = analyse(tagger, work)
    assert view.result == tagger.tag(work)
    assert view.audit is not None
    assert view.audit.to_dict() == tropeml.audit_work(tagger, work).to_dict()
    data = report_data(render_report([view]))
    assert data["works"][0]["result"] == json.loads(json.dumps(view.result.to_dict()))
