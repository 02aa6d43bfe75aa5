"""The real page in a real browser: Debian's headless Chromium driven by Playwright.

The server runs the shipped model (torch backend, no download) in a thread on a free port of
127.0.0.1; every request the page makes elsewhere is blocked and counted. The test uploads a
seed fic (as an AO3 HTML download with three chapters and author tags), waits for the tags,
clicks a tag and checks that the highlighted text is exactly its evidence, reveals the
spoiler tag, checks the timeline (a series per tag, a mark per chapter), uploads a binary
file and sees the CLI's error, and tags another fic after it. Then the static report opens
offline in the same browser and shows the same tags.

Skipped (with the reason) where Chromium or Playwright is missing; ``make test`` installs
Chromium (scripts/apt-packages.txt) and Playwright (the dev extra).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from ao3_fixtures import chapter_blocks

import tropeml
from tropeml.core.types import WorkResult
from tropeml.io.readers import parse_bytes

if TYPE_CHECKING:
    from playwright.sync_api import Route

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")

ROOT = Path(__file__).resolve().parent.parent
SEEDS = sorted((ROOT / "seeds").glob("*.txt"))
CHROMIUM = os.environ.get("TROPEML_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHAPTERS = ("Chapter 1: The Call", "Chapter 2: The Loft", "Chapter 3: After")
AUTHOR_TAGS = ["Hurt/Comfort", "Fluff", "Soft Boys"]
WAIT_MS = 180_000  # the first upload loads nothing (warm model) but embeds on 2 busy cores

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"),
]


def seed_as_ao3_download() -> bytes:
    """Seed 000 as an AO3 HTML download: three chapters, author tags, an astral character."""
    from ao3_fixtures import preface

    paragraphs = [p.strip() for p in SEEDS[0].read_text(encoding="utf-8").split("\n\n")]
    paragraphs = [p for p in paragraphs if p]
    paragraphs[0] = "\U0001f43a " + paragraphs[0]  # offsets count code points, JS UTF-16 units
    third = len(paragraphs) // 3
    parts = [paragraphs[:third], paragraphs[third : 2 * third], paragraphs[2 * third :]]
    body = chapter_blocks(list(zip(CHAPTERS, parts, strict=True)))
    page = f"""<!DOCTYPE html><html><head><meta charset="UTF-8"/><title>Seed</title></head>
<body>{preface(AUTHOR_TAGS)}<div id="chapters" class="userstuff">{body}</div></body></html>"""
    return page.encode("utf-8")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """The shipped model behind a real uvicorn server on a free loopback port."""
    import uvicorn

    from tropeml.serve.web import create_app, listen, url_of

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setenv("TROPEML_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        tagger = tropeml.load(cache=False, backend="torch")
        app = create_app(tagger, warm_up=True)
        sock = listen("127.0.0.1", 0)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        for _ in range(400):
            if server.started:
                break
            time.sleep(0.05)
        assert server.started
        try:
            yield url_of(sock), app
        finally:
            server.should_exit = True
            thread.join(20)
            sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--headless",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        try:
            yield b
        finally:
            b.close()


def tag_on_server(app: Any, data: bytes, name: str) -> WorkResult:
    """The tags the server's own model gives (in its model thread)."""
    tagger = app.state.tagger
    return app.state.worker.run_now(tagger.tag, parse_bytes(data, name))  # type: ignore[no-any-return]


def names(page: Any, selector: str) -> list[str]:
    return list(page.eval_on_selector_all(selector, "els => els.map(e => e.textContent)"))


def marks(page: Any) -> list[str]:
    """The highlighted passages' texts, in evidence order."""
    found = page.eval_on_selector_all(
        "#text mark.evidence", "ms => ms.map(m => [Number(m.dataset.i), m.textContent])"
    )
    return [text for _, text in sorted(found)]


def test_the_page_in_chromium(server: tuple[str, Any], browser: Any, tmp_path: Path) -> None:
    url, app = server
    elsewhere: list[str] = []

    def only_our_server(route: Any) -> None:
        if route.request.url.startswith(url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.route("**/*", only_our_server)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url + "/")

    # upload a seed fic and wait for its tags
    fic = tmp_path / "seed-000.html"
    fic.write_bytes(seed_as_ao3_download())
    expected = tag_on_server(app, fic.read_bytes(), fic.name)
    visible = [t for t in expected.tags if not t.spoiler]
    spoilers = [t for t in expected.tags if t.spoiler]
    assert visible and spoilers, [(t.id, t.spoiler) for t in expected.tags]
    page.set_input_files("#file", str(fic))
    page.click("#go")
    page.wait_for_selector("#tags button.tag", timeout=WAIT_MS)
    assert names(page, "#tags button.tag .name") == [t.name for t in visible]
    assert page.is_hidden("#spoiler-tags") and page.is_visible("#reveal")
    assert names(page, "#text h3.chapter-heading") == list(CHAPTERS)
    assert page.is_visible("#audit")

    # the timeline: one series per visible tag, a mark per chapter
    assert page.locator("#timeline g.series").count() == len(visible)
    assert page.locator("#timeline line.chapter-mark").count() == len(CHAPTERS)

    # click a tag: its evidence is highlighted, exactly; clicking again jumps on
    tag = max(visible, key=lambda t: len(t.evidence))
    page.click(f'#tags button.tag[data-tag="{tag.id}"]')
    assert marks(page) == [e.text for e in tag.evidence]
    assert page.text_content("#text mark.current") == tag.evidence[0].text
    if len(tag.evidence) > 1:
        page.click(f'#tags button.tag[data-tag="{tag.id}"]')
        assert page.text_content("#text mark.current") == tag.evidence[1].text
    assert tag.name in (page.text_content("#jump-text") or "")

    # reveal the spoiler tags: listed, on the timeline, clickable
    page.click("#reveal")
    assert names(page, "#spoiler-tags button.tag .name") == [t.name for t in spoilers]
    assert page.locator("#timeline g.series").count() == len(expected.tags)
    page.click(f'#spoiler-tags button.tag[data-tag="{spoilers[0].id}"]')
    assert marks(page) == [e.text for e in spoilers[0].evidence]
    page.screenshot(path=str(tmp_path / "page.png"))

    # a binary file: the CLI's one-line error, and the page still works after it
    binary = tmp_path / "picture.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2000))
    page.set_input_files("#file", str(binary))
    page.click("#go")
    page.wait_for_selector("#error", state="visible", timeout=30_000)
    assert page.text_content("#error") == "picture.png: looks like a binary file, not text"

    second = SEEDS[1]
    expected2 = tag_on_server(app, second.read_bytes(), second.name)
    page.set_input_files("#file", str(second))
    page.click("#go")
    page.locator("#work-info", has_text=second.name).wait_for(timeout=WAIT_MS)
    assert page.is_hidden("#error")
    assert names(page, "#tags button.tag .name") == [
        t.name for t in expected2.tags if not t.spoiler
    ]
    assert page.locator("#text h3.chapter-heading").count() == 0
    assert page.is_hidden("#audit")
    assert elsewhere == [] and errors == []
    context.close()


def test_the_report_opens_offline_with_the_same_tags(
    server: tuple[str, Any], browser: Any, tmp_path: Path
) -> None:
    from tropeml.serve.report import analyse, write_report

    _, app = server
    data = seed_as_ao3_download()
    work = parse_bytes(data, "seed-000.html")
    view = app.state.worker.run_now(analyse, app.state.tagger, work)
    out = write_report([view], tmp_path / "report.html")
    requests: list[str] = []
    context = browser.new_context(offline=True)

    def offline(route: Route) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            requests.append(route.request.url)
            route.abort()

    context.route("**/*", offline)
    page = context.new_page()
    page.on("request", lambda r: None if r.url.startswith("file:") else requests.append(r.url))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(out.as_uri())
    page.wait_for_selector("#tags button.tag", timeout=30_000)
    result = view.result
    assert names(page, "#tags button.tag .name") == [t.name for t in result.tags if not t.spoiler]
    assert page.is_hidden("#intake")
    assert page.locator("#timeline line.chapter-mark").count() == len(CHAPTERS)
    page.click("#reveal")
    assert page.locator("#timeline g.series").count() == len(result.tags)
    tag = result.tags[0]
    page.click(f'button.tag[data-tag="{tag.id}"]')
    assert marks(page) == [e.text for e in tag.evidence]
    assert requests == [] and errors == []
    context.close()
