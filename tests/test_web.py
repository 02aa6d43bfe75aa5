"""The web app (``tropeml serve``) and the timeline, with the tiny hashing model (no browser).

The API's answers are compared with what the CLI and the Python API give for the same fic;
bad uploads get the CLI's one-line message as a 4xx and the server keeps serving; requests
in parallel each get their own fic's tags; ``tropeml serve`` itself runs as a process.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi")
from ao3_fixtures import download_html
from conftest import make_passage
from fastapi.testclient import TestClient

import tropeml
from tropeml.cli.app import app as cli_app
from tropeml.io.readers import parse_bytes
from tropeml.serve.tagger import Tagger
from tropeml.serve.web import create_app, listen, url_of

SCENES = [["rain"], [], ["cake"], ["rain", "cake"], [], ["sword"], ["sword"], ["rain"]]


def fic(seed: int = 0, scenes: list[list[str]] = SCENES) -> str:
    rng = random.Random(seed)
    return "\n\n\n".join(make_passage(rng, tags, 60) for tags in scenes) + "\n"


@pytest.fixture
def tagger(tiny_model: Path) -> Tagger:
    return tropeml.load(tiny_model, cache=False)


@pytest.fixture
def client(tagger: Tagger) -> Iterator[TestClient]:
    with TestClient(create_app(tagger, max_bytes=50_000)) as c:
        yield c


def upload(client: TestClient, data: bytes | str, name: str = "fic.txt", **kw: Any) -> Any:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return client.post("/api/tag", files={"file": (name, data)}, **kw)


def lines(response: Any) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in response.text.splitlines() if ln.strip()]


def assert_serving(client: TestClient) -> None:
    """The server still tags a good fic."""
    r = upload(client, fic(7))
    assert r.status_code == 200, r.text
    assert r.json()["n_passages"] == len(SCENES)


# --------------------------------------------------------------------------- the timeline


def test_timeline_has_one_series_per_tag_over_the_passages(tagger: Tagger) -> None:
    work = parse_bytes(fic().encode(), "fic.txt")
    result = tagger.tag(work)
    passages = tagger.passages(work)
    timeline = result.timeline()
    assert [s.id for s in timeline.series] == [t.id for t in result.tags]
    assert timeline.starts == tuple(p.start for p in passages)
    assert timeline.ends == tuple(p.end for p in passages)
    assert timeline.length == passages[-1].end
    for s in timeline.series:
        assert len(s.scores) == len(passages)
        tag = next(t for t in result.tags if t.id == s.id)
        assert s.threshold == tag.threshold
        # the best evidence passage is the passage with this score
        best = tag.evidence[0]
        assert s.scores[timeline.starts.index(best.start)] == pytest.approx(best.score)
    assert timeline.chapter_marks() == ()
    assert all(0 < p < 1 for p in timeline.positions)
    # any tag of the model, in the order asked, even under its threshold
    every = result.timeline(list(result.scores))
    assert [s.id for s in every.series] == list(result.scores)
    with pytest.raises(KeyError):
        result.timeline(["no_such_tag"])


def test_timeline_leaves_the_json_schema_alone_and_follows_spoiler_hiding(tagger: Tagger) -> None:
    result = tagger.tag(parse_bytes(fic().encode(), "fic.txt"))
    assert set(result.to_dict()) <= {"source", "n_passages", "model", "scores", "tags"}
    assert "sword" in [t.id for t in result.tags]
    hidden = result.without_spoilers()
    assert "sword" not in [s.id for s in hidden.timeline().series]
    assert result.timeline()["sword"].spoiler
    assert "passage_scores" not in repr(result)


def test_timeline_marks_chapters(tagger: Tagger) -> None:
    work = parse_bytes(download_html().encode(), "weather.html")
    timeline = tagger.tag(work).timeline()
    marks = timeline.chapter_marks()
    assert [title for _, title in marks] == [r.chapter for r in work.regions]
    assert [start for start, _ in marks] == [r.start for r in work.regions]
    data = timeline.to_dict()
    assert [c["title"] for c in data["chapters"]] == [r.chapter for r in work.regions]
    assert len(data["passages"]) == len(timeline.starts)


# --------------------------------------------------------------------------- the API


def test_api_tag_gives_the_cli_json(client: TestClient, tagger: Tagger, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    path = tmp_path / "fic.txt"
    path.write_text(fic(), encoding="utf-8")
    r = upload(client, fic(), name="fic.txt")
    assert r.status_code == 200, r.text
    got = r.json()
    model = str(client.app.state.tagger.name)  # type: ignore[attr-defined]
    assert got["model"] == model
    cli = CliRunner().invoke(
        cli_app, ["tag", str(path), "--json", "--model", str(_model_dir(tagger)), "--no-cache"]
    )
    assert cli.exit_code == 0, cli.output
    expected = json.loads(next(ln for ln in cli.stdout.splitlines() if ln.startswith("{")))
    expected["source"] = "fic.txt"
    assert got == expected
    assert got["hidden_spoilers"] == ["sword"]


def _model_dir(tagger: Tagger) -> Path:
    return Path(os.environ["TINY_MODEL_DIR"])


@pytest.fixture(autouse=True)
def _model_env(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINY_MODEL_DIR", str(tiny_model))


def test_api_tag_takes_text_and_keeps_spoilers_when_asked(client: TestClient) -> None:
    r = client.post("/api/tag", data={"text": fic()}, params={"spoilers": "true"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["source"] == "pasted text"
    sword = next(t for t in got["tags"] if t["id"] == "sword")
    assert sword["spoiler"] is True
    assert "hidden_spoilers" not in got
    for t in got["tags"]:
        for ev in t["evidence"]:
            assert fic()[ev["start"] : ev["end"]] == ev["text"]


def test_api_tropes_lists_the_models_tags(client: TestClient, tagger: Tagger) -> None:
    r = client.get("/api/tropes")
    assert r.status_code == 200
    rows = r.json()
    assert [row["id"] for row in rows] == tagger.tags
    sword = next(row for row in rows if row["id"] == "sword")
    assert sword["spoiler"] is True and sword["name"] == "Sword Fighting"
    assert all(0 < row["threshold"] < 1 for row in rows)


def test_api_audit_matches_audit_work(client: TestClient, tagger: Tagger) -> None:
    page = download_html()
    r = client.post("/api/audit", files={"file": ("weather.html", page.encode())})
    assert r.status_code == 200, r.text
    expected = tropeml.audit_work(tagger, parse_bytes(page.encode(), "weather.html")).to_dict()
    assert r.json() == json.loads(json.dumps(expected))
    r = client.post("/api/audit", files={"file": ("plain.txt", fic().encode())})
    assert r.status_code == 422
    assert r.json() == {"error": "plain.txt: no author tags to audit"}


def test_analyse_streams_progress_then_the_view(tagger: Tagger) -> None:
    many = [["rain"], ["cake"], [], ["sword"]] * 12  # 48 passages: several progress steps
    text = fic(3, many)
    with TestClient(create_app(tagger)) as client:
        r = client.post("/api/analyse", files={"file": ("long.txt", text.encode())})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    events = lines(r)
    progress = [e for e in events if e["event"] == "progress"]
    assert len(progress) >= 3
    assert [e["done"] for e in progress] == sorted(e["done"] for e in progress)
    assert progress[-1]["done"] == progress[-1]["total"] == len(many)
    assert events[-1]["event"] == "result"
    view = events[-1]["view"]
    expected = tagger.tag(parse_bytes(text.encode(), "long.txt"))
    assert view["result"] == json.loads(json.dumps(expected.to_dict()))
    assert view["text"] == text
    assert view["audit"] is None
    n_visible = len([t for t in expected.tags if not t.spoiler])
    assert view["timeline_svg"].count('class="series"') == n_visible
    assert view["timeline_svg_spoilers"].count('class="series"') == len(expected.tags)
    assert len(view["timeline"]["series"]) == len(expected.tags)


def test_analyse_shows_chapters_and_the_audit_of_an_ao3_download(client: TestClient) -> None:
    r = client.post("/api/analyse", files={"file": ("weather.html", download_html().encode())})
    assert r.status_code == 200
    view = lines(r)[-1]["view"]
    assert view["title"] == "Weather Report"
    assert [x["chapter"] for x in view["regions"]] == [
        "Chapter 1: Storm",
        "Chapter 2: Flour",
        "Chapter 3: Quiet",
    ]
    assert view["timeline_svg"].count('class="chapter-mark"') == 3
    assert view["audit"]["author_tags"]["mapped"]
    assert view["meta"]["freeform"][0] == "Alternate Universe - Rain"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("picture.png", b"\x89PNG\r\n\x1a\n" + bytes(300), "picture.png: looks like a binary file"),
        ("empty.txt", b"", "empty.txt: file is empty"),
        ("blank.txt", b" \n\n\t ", "blank.txt: file holds only whitespace"),
        ("broken.epub", b"PK\x03\x04 not a zip at all" * 4, "broken.epub"),
    ],
)
def test_bad_upload_gets_the_cli_line_and_the_server_keeps_serving(
    client: TestClient, tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    from typer.testing import CliRunner

    for endpoint in ("/api/tag", "/api/analyse", "/api/audit"):
        r = client.post(endpoint, files={"file": (name, data)})
        assert 400 <= r.status_code < 500, (endpoint, r.status_code, r.text)
        error = r.json()["error"]
        assert error.startswith(message), error
        assert "\n" not in error and "Traceback" not in r.text
    # the same line as the CLI prints
    path = tmp_path / name
    path.write_bytes(data)
    cli = CliRunner().invoke(cli_app, ["tag", str(path), "--model", os.environ["TINY_MODEL_DIR"]])
    assert f"tropeml: error: {upload(client, data, name).json()['error']}".replace(
        name, str(path), 1
    ) in (cli.stderr if hasattr(cli, "stderr") else cli.output)
    assert_serving(client)


def test_requests_without_a_fic_or_with_bad_options_get_one_line(client: TestClient) -> None:
    r = client.post("/api/tag")
    assert r.status_code == 422
    assert r.json() == {"error": "send a fic: a file in the form field 'file', or text in 'text'"}
    r = client.post("/api/tag", data={"text": "x"}, params={"spoilers": "perhaps"})
    assert r.status_code == 422 and r.json()["error"].startswith("spoilers:")
    r = client.get("/no/such/page")
    assert r.status_code == 404 and r.json() == {"error": "not found: /no/such/page"}
    r = client.get("/api/tag")
    assert r.status_code == 405 and set(r.json()) == {"error"}
    assert_serving(client)


def test_uploads_over_the_limit_get_413(client: TestClient) -> None:
    big = fic() * 40
    assert len(big) > 50_000
    for endpoint in ("/api/tag", "/api/analyse"):
        r = (
            upload(client, big)
            if endpoint == "/api/tag"
            else client.post(endpoint, files={"file": ("big.txt", big.encode())})
        )
        assert r.status_code == 413, r.text
        assert "over the 50,000-byte limit" in r.json()["error"]
    # a body sent without a length is counted as it arrives
    boundary = "tropemltestboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()

    def chunks() -> Iterator[bytes]:
        yield head
        for _ in range(20):
            yield b"rain and cake " * 500
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post(
        "/api/tag",
        content=chunks(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 413, r.text
    assert "over the 50,000-byte limit" in r.json()["error"]
    # just under the limit is fine
    r = upload(client, big[:45_000])
    assert r.status_code == 200
    assert_serving(client)


def test_an_internal_error_is_one_line_and_the_server_keeps_serving(
    tagger: Tagger, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = tagger.tag

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom at /secret/path")
        return real(*args, **kwargs)

    monkeypatch.setattr(tagger, "tag", flaky)
    with TestClient(create_app(tagger), raise_server_exceptions=False) as client:
        r = upload(client, fic())
        assert r.status_code == 500
        assert r.json() == {"error": "internal error (see the server's log)"}
        assert_serving(client)


# --------------------------------------------------------------------------- the page and docs


def test_page_and_assets_come_from_the_server_only(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sorted(assets) == ["static/app.css", "static/app.js"]
    for asset in assets:
        a = client.get("/" + asset)
        assert a.status_code == 200
        assert "http://" not in a.text and "https://" not in a.text and "//cdn" not in a.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"


def test_docs_page_documents_the_api_without_a_cdn(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/api/tag", "/api/tropes", "/api/audit", "/api/analyse"} <= set(spec["paths"])
    assert "WorkOut" in spec["components"]["schemas"]
    r = client.get("/docs")
    assert r.status_code == 200
    assert "/api/tag" in r.text and "/api/tropes" in r.text and "spoilers" in r.text
    assert "<script" not in r.text
    assert not re.search(r'(?:src|href)="https?://', r.text)


# --------------------------------------------------------------------------- a real server


class _ThreadSpy:
    """An encoder that records the threads it runs in."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.threads: set[str] = set()
        self.dimension = getattr(inner, "dimension", None)

    def embed(self, texts: list[str]) -> Any:
        self.threads.add(threading.current_thread().name)
        time.sleep(0.01)  # long enough for requests to overlap
        return self.inner.embed(texts)


@pytest.fixture
def live(tiny_model: Path, tmp_path: Path) -> Iterator[tuple[str, Tagger, _ThreadSpy]]:
    """A uvicorn server on a free port of 127.0.0.1, in a thread, with an embedding cache."""
    import uvicorn

    from tropeml.model.encoders import HashingEncoder

    spy = _ThreadSpy(HashingEncoder(64))
    tagger = tropeml.load(tiny_model, encoder=spy, cache=tmp_path / "cache.sqlite3")
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(tagger), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started
    try:
        yield url_of(sock), tagger, spy
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_concurrent_uploads_each_get_their_own_tags(
    live: tuple[str, Tagger, _ThreadSpy], tiny_model: Path
) -> None:
    url, _, spy = live
    texts = [fic(seed) for seed in range(8)]
    reference = tropeml.load(tiny_model, cache=False)
    expected = [
        json.loads(json.dumps(reference.tag(parse_bytes(t.encode(), f"f{i}.txt")).to_dict()))
        for i, t in enumerate(texts)
    ]
    expected = [{**e, "tags": [t for t in e["tags"] if not t.get("spoiler")]} for e in expected]

    def post(i: int) -> dict[str, Any]:
        endpoint = "/api/tag" if i % 2 else "/api/analyse"
        r = httpx.post(url + endpoint, files={"file": (f"f{i}.txt", texts[i].encode())}, timeout=60)
        assert r.status_code == 200, r.text
        if endpoint == "/api/tag":
            return dict(r.json())
        view = lines(r)[-1]["view"]
        out = dict(view["result"])
        out["tags"] = [t for t in out["tags"] if not t.get("spoiler")]
        out["hidden_spoilers"] = [t["id"] for t in view["result"]["tags"] if t.get("spoiler")]
        return out

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(post, range(8)))
    for g, e in zip(got, expected, strict=True):
        assert g["source"] == e["source"]
        assert g["tags"] == e["tags"]
        assert g["scores"] == e["scores"]
    assert len(spy.threads) == 1, spy.threads  # one model, used from one thread
    r = httpx.get(url + "/api/health", timeout=10)
    assert r.json()["status"] == "ok"


def _serve(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tropeml", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
        if match:
            return proc, match.group(1)
    proc.kill()
    proc.wait(10)
    raise AssertionError("".join(seen) + (proc.stderr.read() if proc.stderr else ""))


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_tropeml_serve_runs_binds_loopback_and_writes_nothing_outside_tmp(
    tiny_model: Path, tmp_path: Path, stop: signal.Signals
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "TMPDIR": str(tmp),
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    env.pop("TROPEML_CACHE_DIR", None)
    proc, url = _serve(["--port", "0", "--model", str(tiny_model)], env)
    try:
        r = httpx.post(url + "/api/tag", files={"file": ("a.txt", fic().encode())}, timeout=30)
        assert r.status_code == 200, r.text
        assert next(p.name for p in tmp.iterdir()).startswith("tropeml-serve-")
        r = httpx.post(url + "/api/tag", files={"file": ("b.bin", bytes(100))}, timeout=30)
        assert r.status_code == 422
        assert httpx.get(url + "/api/health", timeout=10).status_code == 200
    finally:
        proc.send_signal(stop)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert list(home.iterdir()) == []  # no cache, nothing of the uploads kept
    assert list(tmp.iterdir()) == []  # the temporary folder is gone too


def test_tropeml_serve_on_a_busy_port_says_so_in_one_line(tiny_model: Path) -> None:
    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tropeml", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )
    finally:
        sock.close()
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"tropeml: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
