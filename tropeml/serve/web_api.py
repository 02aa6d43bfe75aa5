"""The web app's parts: the API's schemas and ``/docs`` page, the model thread, the size guard.

:func:`tropeml.serve.web.create_app` puts them together: the schemas describe the answers in
the OpenAPI document, :func:`api_reference` renders that document as the ``/docs`` page,
:class:`ModelWorker` runs every call on the model in one thread, and :class:`Guard` refuses
bodies over the size limit (413) and adds the security headers.
"""

from __future__ import annotations

import asyncio
import functools
import html
import json
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import File, Form
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from tropeml.serve.tagger import Tagger

DEFAULT_UPLOAD_BYTES = 20_000_000
"""Largest upload the server reads by default (20 MB: a long novel as EPUB)."""

FORM_SLACK = 64 * 1024  # multipart framing around the file, allowed on top of the limit
_DRAIN_LIMIT = 1 << 30  # an oversized body up to this is read and dropped, so clients see 413
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

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
    score: float = Field(description="How likely the work shows the tag (0..1).")
    threshold: float | None = Field(
        description="The score the tag is shown from; null where the chance rule decides "
        "(models with a work calibrator)."
    )
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


ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorOut, "description": "The upload is over the size limit."},
    422: {"model": ErrorOut, "description": "The fic cannot be read (empty, binary, ...)."},
}

FILE_FIELD = File(
    None, description="The fic: text, an AO3 HTML download, a saved work page or an EPUB."
)
TEXT_FIELD = Form(
    None, description="Or the fic's text (up to 1 MB in this field; send more as file)."
)


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


class TooLargeError(Exception):
    """A request body went over the limit while it was read."""


def too_large_message(size: int | None, limit: int) -> str:
    """The one-line 413 message (``size``: the body's length, if known)."""
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
            await _send_error(send_with_headers, 413, too_large_message(size, self.shown))
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise TooLargeError
            return message

        try:
            await self.app(scope, counted, send_with_headers)
        except TooLargeError:
            if not started:
                await _send_error(send_with_headers, 413, too_large_message(None, self.shown))


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
