"""``tropeml serve`` and ``tropeml report``: see the tags in the text, live or as a file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tropeml.cli.common import (
    BackendOpt,
    MaxBytesOpt,
    ModelOpt,
    NoCacheOpt,
    PathsArg,
    _each_work,
    app,
    friendly_errors,
)
from tropeml.core.errors import TropemlError

if TYPE_CHECKING:
    from tropeml.serve.report import WorkView
    from tropeml.serve.tagger import Tagger

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@app.command()
@friendly_errors
def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (default: this machine only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0: any free one).")] = 8000,
    model: ModelOpt = None,
    backend: BackendOpt = "auto",
    max_bytes: Annotated[
        int, typer.Option("--max-bytes", help="Refuse uploads larger than this (413).")
    ] = 20_000_000,
    log_level: Annotated[
        str, typer.Option("--log-level", help="uvicorn's log level (info shows each request).")
    ] = "warning",
) -> None:
    """Serve a local web page: upload a fic, see its tags in the text and on a timeline.

    The page, a JSON API (POST /api/tag, GET /api/tropes) and its reference (/docs). One
    model serves every request. Embeddings are cached in a temporary folder, removed when
    the server stops: nothing of the uploads is kept.
    """
    import tempfile

    from tropeml.serve.tagger import load

    try:
        from tropeml.serve.web import create_app, listen, run, url_of
    except ImportError as exc:
        raise TropemlError(
            f"tropeml serve needs the web extra ({exc.name} is missing): pip install 'tropeml[web]'"
        ) from None

    if max_bytes < 1:
        raise TropemlError(f"--max-bytes must be at least 1, not {max_bytes}")
    sock = listen(host, port)
    with tempfile.TemporaryDirectory(prefix="tropeml-serve-") as tmp:
        tagger = load(model, cache=Path(tmp) / "embeddings.sqlite3", backend=backend)
        web_app = create_app(tagger, max_bytes=max_bytes, warm_up=True)
        url = url_of(sock)
        if host not in _LOOPBACK:
            typer.echo(
                f"tropeml: warning: listening on {host}: other machines can use this server",
                err=True,
            )
        typer.echo(f"tropeml: serving model {tagger.name} at {url}/ (API: {url}/docs)", err=True)
        typer.echo("tropeml: press Ctrl+C to stop", err=True)
        run(web_app, sock, log_level=log_level)


@app.command()
@friendly_errors
def report(
    paths: PathsArg,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write the report here (one self-contained HTML file)."),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="Write the trope timeline alone here: .svg, or .png (needs matplotlib). "
            "With several works, NAME-1.svg, NAME-2.svg, ...",
        ),
    ] = None,
    spoilers: Annotated[
        bool,
        typer.Option(
            "--spoilers", help="Draw spoiler tags in --plot (the report hides them behind a click)."
        ),
    ] = False,
    model: ModelOpt = None,
    backend: BackendOpt = "auto",
    max_bytes: MaxBytesOpt = 50_000_000,
    no_cache: NoCacheOpt = False,
) -> None:
    """Write the web page's view of fics as one HTML file that opens offline (and plots)."""
    from tropeml.serve.report import analyse, write_plot, write_report
    from tropeml.serve.tagger import load

    if out is None and plot is None:
        raise TropemlError("say where to write: -o report.html, --plot timeline.svg, or both")
    if plot is not None and plot.suffix.lower() not in {".svg", ".png"}:
        raise TropemlError(f"{plot}: a plot is written as .svg or .png")
    tagger: Tagger | None = None
    views: list[WorkView] = []
    failed = False
    try:
        for source, work in _each_work(paths, max_bytes):
            tagger = tagger or load(model, cache=not no_cache, backend=backend)
            views.append(analyse(tagger, work, source))
    except typer.Exit:
        failed = True  # each bad file has printed its line; write what was read
    if views and out is not None:
        write_report(views, out)
        n = len(views)
        typer.echo(f"tropeml: wrote {out} ({n} work{'s' if n > 1 else ''})", err=True)
    if views and plot is not None:
        for i, view in enumerate(views, 1):
            result = view.result if spoilers else view.result.without_spoilers()
            name = plot if len(views) == 1 else plot.with_name(f"{plot.stem}-{i}{plot.suffix}")
            write_plot(result.timeline(), name)
            typer.echo(f"tropeml: wrote {name} (timeline of {view.result.source})", err=True)
    if failed:
        raise typer.Exit(1)
