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

import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from tropeml._version import __version__
from tropeml.core.errors import TropemlError
from tropeml.core.types import Work
from tropeml.io.readers import parse_bytes
from tropeml.serve.audit import audit_work
from tropeml.serve.report import Progress, WorkView, analysis, static_text
from tropeml.serve.web_api import (
    DEFAULT_UPLOAD_BYTES,
    ERRORS,
    FILE_FIELD,
    FORM_SLACK,
    TEXT_FIELD,
    ErrorOut,
    EvidenceOut,
    Guard,
    ModelWorker,
    TagOut,
    TooLargeError,
    TropeOut,
    WorkOut,
    api_reference,
    too_large_message,
)

if TYPE_CHECKING:
    from tropeml.serve.tagger import Tagger

__all__ = [
    "DEFAULT_UPLOAD_BYTES",
    "ErrorOut",
    "EvidenceOut",
    "Guard",
    "ModelWorker",
    "TagOut",
    "TropeOut",
    "WorkOut",
    "api_reference",
    "create_app",
    "listen",
    "run",
    "url_of",
]

log = logging.getLogger("tropeml.serve")


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
        if isinstance(exc.__cause__, TooLargeError):  # FastAPI wraps errors of reading a form
            return JSONResponse(
                {"error": too_large_message(None, max_bytes)},
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
            raise StarletteHTTPException(413, f"{name}: {too_large_message(None, max_bytes)}")
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
        responses={200: {"model": WorkOut}, **ERRORS},
    )
    async def tag(
        file: UploadFile | None = FILE_FIELD,
        text: str | None = TEXT_FIELD,
        spoilers: bool = Query(False, description="Keep spoiler tags in tags."),
    ) -> JSONResponse:
        """Tag one fic, sent as a file or as text. The answer is ``tropeml tag --json``'s."""
        work = await read_upload(file, text)
        result = await worker.call(tagger.tag, work)
        return JSONResponse((result if spoilers else result.without_spoilers()).to_dict())

    @app.post(
        "/api/audit",
        summary="Audit a fic's author tags (the tropeml audit --json object)",
        responses=ERRORS,
    )
    async def audit(
        file: UploadFile | None = FILE_FIELD, text: str | None = TEXT_FIELD
    ) -> JSONResponse:
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
            **ERRORS,
        },
    )
    async def analyse(
        file: UploadFile | None = FILE_FIELD, text: str | None = TEXT_FIELD
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

    app.add_middleware(Guard, limit=max_bytes + FORM_SLACK, shown=max_bytes)
    return app


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
