"""The local web app (``tropeml serve``): upload a fic, see its tags in the text.

:func:`create_app` builds a FastAPI app around one loaded :class:`~tropeml.serve.tagger.Tagger`:

- ``GET /``: the page (upload or paste a fic; its tags, evidence in the text, the timeline,
  the audit); its CSS and JavaScript are served from ``/static`` (shipped in the wheel:
  nothing comes from the internet);
- ``POST /api/tag``: the ``tropeml tag --json`` object of one fic; ``POST /api/audit``: the
  ``tropeml audit --json`` object; ``GET /api/tropes``: the model's tropes;
- ``POST /api/analyse``: what the page uses: JSON lines of progress, then the view;
- ``GET /docs``: the API's reference, drawn from ``GET /openapi.json`` (no CDN).

One model serves every request. Every call on it runs in one worker thread, in turn: the
embedding cache's SQLite connection belongs to the thread that opened it, and the encoder
uses every core for one batch anyway. Reading an upload (HTML, EPUB) runs beside it, in the
thread pool. A bad upload gets the CLI's one-line message with a 4xx status; an upload over
the size limit gets 413 before it is read.
"""

from __future__ import annotations

import asyncio
import functools
import html
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from tropeml._version import __version__
from tropeml.core.errors import TropemlError
from tropeml.core.types import Work
from tropeml.io.readers import parse_bytes
from tropeml.serve.audit import audit_work
from tropeml.serve.report import Progress, WorkView, analysis, static_text

if TYPE_CHECKING:
    from tropeml.serve.tagger import Tagger

DEFAULT_UPLOAD_BYTES = 20_000_000
"""Largest upload the server reads by default (20 MB: a long novel as EPUB)."""

_FORM_SLACK = 64 * 1024  # multipart framing around the file, allowed on top of the limit
_DRAIN_LIMIT = 1 << 30  # an oversized body up to this is read and dropped, so clients see 413
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

log = logging.getLogger("tropeml.serve")
T = TypeVar("T")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# --------------------------------------------------------------------------- API schemas


class EvidenceOut(BaseModel):
    """An evidence passage (``text`` is the work's text from ``start`` to ``end``)."""

    start: int
    end: int
    score: float
    text: str
    chapter: str | None = Field(None, description="Present for works with chapters.")


class TagOut(BaseModel):
    """A tag over its threshold."""

    id: str
    name: str
    score: float = Field(description="Work-level probability (mean of the best passages).")
    threshold: float
    prominence: float = Field(description="Share of the text where the trope shows (0..1).")
    evidence: list[EvidenceOut]
    spoiler: bool | None = Field(None, description="Present (true) for spoiler tags only.")


class WorkOut(BaseModel):
    """One work's tags: the ``tropeml tag --json`` object."""

    source: str
    n_passages: int
    model: str
    scores: dict[str, float] = Field(description="A score for every tag of the model.")
    tags: list[TagOut] = Field(description="The tags over their thresholds, best first.")
    hidden_spoilers: list[str] | None = Field(
        None, description="Spoiler tags left out of tags (present only when there are some)."
    )


class TropeOut(BaseModel):
    """A trope the model tags."""

    id: str
    name: str
    synonyms: list[str]
    definition: str
    related: list[str]
    spoiler: bool
    threshold: float


class ErrorOut(BaseModel):
    """A one-line error, as ``tropeml`` prints it after ``tropeml: error:``."""

    error: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorOut, "description": "The upload is over the size limit."},
    422: {"model": ErrorOut, "description": "The fic cannot be read (empty, binary, ...)."},
}

_FILE = File(None, description="The fic: text, an AO3 HTML download, a saved work page or an EPUB.")
_TEXT = Form(None, description="Or the fic's text (up to 1 MB in this field; send more as file).")


# --------------------------------------------------------------------------- the model thread


class ModelWorker:
    """Runs calls on the model one at a time, in one thread of its own.

    Args:
        tagger: The model every request shares.
    """

    def __init__(self, tagger: Tagger) -> None:
        self.tagger = tagger
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tropeml-model")

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the model's thread and return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    def run_now(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the model's thread, waiting here for its result."""
        return self._pool.submit(fn, *args).result()

    def close(self) -> None:
        """Stop the thread (calls not yet started are dropped)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------- ASGI guard


class _TooLargeError(Exception):
    """A request body went over the limit while it was read."""


def _too_large_message(size: int | None, limit: int) -> str:
    what = f"upload of {size:,} bytes is" if size is not None else "upload is"
    return f"{what} over the {limit:,}-byte limit (tropeml serve --max-bytes raises it)"


class Guard:
    """ASGI middleware: refuses bodies over ``limit`` bytes (413), adds security headers.

    A ``Content-Length`` over the limit is answered at once (after reading and dropping the
    body, up to 1 GiB, so that browsers see the answer); a body without one is counted as
    it is read.

    Args:
        app: The wrapped ASGI app.
        limit: The largest body accepted, in bytes.
        shown: The limit that error messages name (the file's; the body adds form framing).
    """

    def __init__(self, app: ASGIApp, limit: int, shown: int | None = None) -> None:
        self.app = app
        self.limit = limit
        self.shown = limit if shown is None else shown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                nonlocal started
                started = True
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", _CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            size = int(length)
            if size <= _DRAIN_LIMIT:
                more = True
                while more:
                    message = await receive()
                    more = message.get("more_body", False) and message["type"] == "http.request"
            await _send_error(send_with_headers, 413, _too_large_message(size, self.shown))
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLargeError
            return message

        try:
            await self.app(scope, counted, send_with_headers)
        except _TooLargeError:
            if not started:
                await _send_error(send_with_headers, 413, _too_large_message(None, self.shown))


async def _send_error(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- the app


def _safe_name(name: str | None) -> str:
    """An upload's file name as a source name: its last part, printable, at most 120 chars."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip()
    return base[:120] or "upload"


def _json_line(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _step(steps: Any) -> Any:
    """The next item of a generator, or ``None`` when it is done (for another thread)."""
    return next(steps, None)


def create_app(
    tagger: Tagger, *, max_bytes: int = DEFAULT_UPLOAD_BYTES, warm_up: bool = False
) -> FastAPI:
    """Build the web app around one loaded model.

    Args:
        tagger: The model; every request shares it (calls run one at a time in one thread).
            Its embedding cache, if any, must not have been used yet: SQLite ties it to the
            thread that first used it, and here that must be the model's thread.
        max_bytes: Largest upload accepted; larger ones get 413.
        warm_up: Embed one text now (in the model's thread), so that the encoder's weights
            are loaded before the first upload.

    Returns:
        The FastAPI app (serve it with uvicorn, or drive it with ``fastapi.testclient``).
    """
    worker = ModelWorker(tagger)
    if warm_up:
        worker.run_now(tagger.embed_texts, ["warm up"])

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        worker.close()

    app = FastAPI(
        title="tropeml",
        version=__version__,
        description=(
            "Tag the tropes of fan fiction, with the passages that justify each tag. "
            f"Model: {tagger.name} ({len(tagger.tags)} tags). Uploads up to "
            f"{max_bytes:,} bytes. Errors are JSON objects with one line in `error`."
        ),
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.tagger = tagger
    app.state.worker = worker
    app.state.max_bytes = max_bytes

    @app.exception_handler(TropemlError)
    async def _bad_input(_: Request, exc: TropemlError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err.get("loc", ()) if x not in {"body", "query"})
            parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg"))
        return JSONResponse({"error": "; ".join(str(p) for p in parts)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, _TooLargeError):  # FastAPI wraps errors of reading a form
            return JSONResponse(
                {"error": _too_large_message(None, max_bytes)},
                status_code=413,
            )
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"not found: {request.url.path}"
        return JSONResponse({"error": message}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.error("internal error", exc_info=exc)
        return JSONResponse({"error": "internal error (see the server's log)"}, status_code=500)

    async def read_upload(file: UploadFile | None, text: str | None) -> Work:
        if file is not None:
            data = await file.read(max_bytes + 1)
            name = _safe_name(file.filename)
        elif text is not None:
            data = text.encode("utf-8")
            name = "pasted text"
        else:
            raise TropemlError("send a fic: a file in the form field 'file', or text in 'text'")
        if len(data) > max_bytes:
            raise StarletteHTTPException(413, f"{name}: {_too_large_message(None, max_bytes)}")
        return await run_in_threadpool(parse_bytes, data, name)

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(static_text("index.html"))

    app.mount(
        "/static",
        StaticFiles(directory=str(Path(__file__).parent / "static")),
        name="static",
    )

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(api_reference(app.openapi()))

    @app.get("/api/health", summary="Whether the server is up, and its model")
    def health() -> dict[str, Any]:
        """Return ``{"status": "ok", "model": NAME, "tags": N}``."""
        return {"status": "ok", "model": tagger.name, "tags": len(tagger.tags)}

    @app.get("/api/tropes", response_model=list[TropeOut], summary="The model's tropes")
    def tropes() -> list[dict[str, Any]]:
        """Every tag the model gives: id, AO3 tag, synonyms, definition, spoiler, threshold."""
        out = []
        for j, tag in enumerate(tagger.tags):
            t = tagger.taxonomy.get(tag)
            out.append(
                {
                    "id": tag,
                    "name": t.name if t else tag,
                    "synonyms": list(t.synonyms) if t else [],
                    "definition": t.definition if t else "",
                    "related": list(t.related) if t else [],
                    "spoiler": bool(t and t.spoiler),
                    "threshold": round(float(tagger.thresholds[j]), 4),
                }
            )
        return out

    @app.post(
        "/api/tag",
        summary="Tag a fic (the tropeml tag --json object)",
        responses={200: {"model": WorkOut}, **_ERRORS},
    )
    async def tag(
        file: UploadFile | None = _FILE,
        text: str | None = _TEXT,
        spoilers: bool = Query(False, description="Keep spoiler tags in tags."),
    ) -> JSONResponse:
        """Tag one fic, sent as a file or as text. The answer is ``tropeml tag --json``'s."""
        work = await read_upload(file, text)
        result = await worker.call(tagger.tag, work)
        return JSONResponse((result if spoilers else result.without_spoilers()).to_dict())

    @app.post(
        "/api/audit",
        summary="Audit a fic's author tags (the tropeml audit --json object)",
        responses=_ERRORS,
    )
    async def audit(file: UploadFile | None = _FILE, text: str | None = _TEXT) -> JSONResponse:
        """Compare the model's tags with the author's (AO3 downloads and work pages)."""
        work = await read_upload(file, text)
        if not work.author_tags:
            raise TropemlError(f"{work.source}: no author tags to audit")
        result = await worker.call(audit_work, tagger, work)
        return JSONResponse(result.to_dict())

    @app.post(
        "/api/analyse",
        summary="Tag a fic for the page: progress, then the view (JSON lines)",
        responses={
            200: {
                "content": {"application/x-ndjson": {}},
                "description": 'Lines of {"event": "progress", "stage", "done", "total"}, '
                'then one {"event": "result", "view": {...}} (the text, its regions, the '
                "tag --json --spoilers object, the timeline as data and SVG, the audit), or "
                '{"event": "error", "error": "..."}.',
            },
            **_ERRORS,
        },
    )
    async def analyse(
        file: UploadFile | None = _FILE, text: str | None = _TEXT
    ) -> StreamingResponse:
        """What the page calls: the fic's view, with progress while it is tagged."""
        work = await read_upload(file, text)
        steps = analysis(tagger, work)
        first = await worker.call(_step, steps)  # splitting: bad input still gets a 4xx

        async def lines() -> AsyncIterator[bytes]:
            item = first
            try:
                while item is not None:
                    if isinstance(item, Progress):
                        yield _json_line(item.to_dict())
                    elif isinstance(item, WorkView):
                        view = await run_in_threadpool(item.to_dict)
                        yield _json_line({"event": "result", "view": view})
                    item = await worker.call(_step, steps)
            except TropemlError as exc:
                yield _json_line({"event": "error", "error": str(exc)})
            except Exception as exc:
                log.error("internal error", exc_info=exc)
                yield _json_line({"event": "error", "error": "internal error (see the log)"})

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    app.add_middleware(Guard, limit=max_bytes + _FORM_SLACK, shown=max_bytes)
    return app


# --------------------------------------------------------------------------- API reference


def _schema_name(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref")
    if ref:
        return str(ref).rsplit("/", 1)[-1]
    if schema.get("type") == "array":
        return f"list of {_schema_name(schema.get('items', {}))}"
    if "anyOf" in schema:
        return " or ".join(_schema_name(s) for s in schema["anyOf"])
    return str(schema.get("type", "object"))


def api_reference(spec: dict[str, Any]) -> str:
    """Render an OpenAPI document as a plain HTML page (served at ``/docs``; no CDN).

    Args:
        spec: The OpenAPI document (``app.openapi()``).

    Returns:
        The HTML page: every operation with its parameters, body fields and responses, and
        the schemas.
    """
    e = html.escape
    info = spec.get("info", {})
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(info.get('title', 'API'))} API</title>",
        '<link rel="stylesheet" href="static/app.css"></head><body><div class="api">',
        f"<h1>{e(info.get('title', ''))} {e(info.get('version', ''))}: API</h1>",
        f"<p>{e(info.get('description', ''))}</p>",
        '<p>The machine-readable document: <a href="openapi.json">/openapi.json</a>. '
        'The page: <a href="./">/</a>.</p>',
    ]
    schemas = spec.get("components", {}).get("schemas", {})
    for path, operations in spec.get("paths", {}).items():
        for method, op in operations.items():
            parts.append(
                f'<h2><span class="method">{e(method.upper())}</span> <code>{e(path)}</code>: '
                f"{e(op.get('summary', ''))}</h2>"
            )
            if op.get("description"):
                parts.append(f"<p>{e(op['description'])}</p>")
            rows = [
                (p["name"], p.get("in", ""), _schema_name(p.get("schema", {})), p)
                for p in op.get("parameters", [])
            ]
            body = op.get("requestBody", {}).get("content", {})
            for media, content in body.items():
                ref = _schema_name(content.get("schema", {}))
                for name, prop in schemas.get(ref, {}).get("properties", {}).items():
                    rows.append((name, media, _schema_name(prop), prop))
            if rows:
                parts.append("<table><tr><th>field</th><th>in</th><th>type</th><th>about</th></tr>")
                for name, where, kind, item in rows:
                    about = item.get("description", "")
                    parts.append(
                        f"<tr><td><code>{e(name)}</code></td><td>{e(where)}</td>"
                        f"<td>{e(kind)}</td><td>{e(about)}</td></tr>"
                    )
                parts.append("</table>")
            parts.append("<ul>")
            for code, response in op.get("responses", {}).items():
                content = response.get("content", {})
                kinds = ", ".join(
                    f"{media} ({_schema_name(c.get('schema', {}))})" if c.get("schema") else media
                    for media, c in content.items()
                )
                parts.append(
                    f"<li><b>{e(str(code))}</b>: {e(response.get('description', ''))}"
                    f"{' ' + e(kinds) if kinds else ''}</li>"
                )
            parts.append("</ul>")
    parts.append("<h2>Schemas</h2>")
    for name, schema in schemas.items():
        parts.append(
            f"<details><summary><code>{e(name)}</code></summary>"
            f"<pre>{e(json.dumps(schema, indent=2))}</pre></details>"
        )
    parts.append("</div></body></html>")
    return "\n".join(parts)


# --------------------------------------------------------------------------- running it


def listen(host: str, port: int) -> Any:
    """Open a listening TCP socket (``port`` 0: a free one).

    Raises:
        TropemlError: If the address cannot be used (in use, not this machine's, ...).
    """
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        raise TropemlError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def url_of(sock: Any) -> str:
    """The ``http://host:port`` a listening socket serves."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(app: FastAPI, sock: Any, log_level: str = "warning") -> None:
    """Serve ``app`` on a listening socket with uvicorn until Ctrl+C or SIGTERM.

    Either signal stops the server gracefully and returns normally (so the caller's
    clean-up runs: the temporary cache folder is removed).
    """
    import signal
    import threading

    import uvicorn

    def _stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = None
    if threading.current_thread() is threading.main_thread():
        # uvicorn re-raises the signal that stopped it once it has shut down
        previous = signal.signal(signal.SIGTERM, _stop)
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on"))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
