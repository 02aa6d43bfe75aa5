"""Take the README's screenshots: the page with a seed fic and a tag clicked, its timeline.

Run from the repository root (needs Debian's chromium and Playwright, as the browser tests)::

    .venv/bin/python docs/screenshots.py

Writes docs/page.png and docs/timeline.png.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    """Serve the shipped model, upload seed 000 as a three-chapter download, screenshot."""
    import uvicorn
    from playwright.sync_api import sync_playwright
    from test_browser import CHROMIUM, seed_as_ao3_download

    import tropeml
    from tropeml.serve.web import create_app, listen, url_of

    tagger = tropeml.load(cache=False)
    app = create_app(tagger, warm_up=True)
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    fic = Path("/tmp/seed-000-chapters.html")
    fic.write_bytes(seed_as_ao3_download())
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--headless", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1350})
        page.goto(url_of(sock) + "/")
        page.set_input_files("#file", str(fic))
        page.click("#go")
        page.wait_for_selector("#tags button.tag", timeout=300_000)
        tags = page.locator("#tags button.tag")
        tags.filter(has_text="Phone Calls").click()  # its scenes open the fic
        page.mouse.wheel(0, -100_000)
        page.screenshot(path=str(ROOT / "docs" / "page.png"))
        page.click("#reveal")
        page.locator("#timeline svg").screenshot(path=str(ROOT / "docs" / "timeline.png"))
        browser.close()
    server.should_exit = True


if __name__ == "__main__":
    main()
