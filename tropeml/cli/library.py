"""``tropeml write`` and ``tropeml calibre``: tags written where readers keep their fics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tropeml.cli.common import (
    BackendOpt,
    JsonLinesOpt,
    MaxBytesOpt,
    MinScoreOpt,
    ModelOpt,
    NoCacheOpt,
    _report,
    app,
    backend_from,
    friendly_errors,
)
from tropeml.core.errors import TropemlError

if TYPE_CHECKING:
    from tropeml.serve.tagger import Tagger

PrefixOpt = Annotated[
    str,
    typer.Option("--prefix", help="Put before each tag, e.g. 'trope: ' for 'trope: Angst'."),
]
SpoilersOpt = Annotated[
    bool, typer.Option("--spoilers", help="Write spoiler tags too (left out by default).")
]
WRITABLE_SUFFIXES = (".epub", ".html", ".htm", ".xhtml")


class _Model:
    """Loads the model on first use, and knows its version."""

    def __init__(self, model: Path | None, backend: str, cache: bool) -> None:
        self.args = (model, backend, cache)
        self._tagger: Tagger | None = None
        self.version = ""

    def get(self) -> Tagger:
        if self._tagger is None:
            from tropeml.serve.tagger import load
            from tropeml.serve.writeback import model_version

            model, backend, cache = self.args
            self._tagger = load(model, cache=cache, backend=backend)
            self.version = model_version(self._tagger, model)
        return self._tagger


def _fics(paths: list[str]) -> tuple[list[str], int]:
    """The files to write: named files as given; in folders, EPUB and HTML (not our copies)."""
    from tropeml.io.html_meta import is_copy
    from tropeml.io.readers import expand_paths

    out, failed = [], 0
    for raw in paths:
        try:
            found = expand_paths([raw])
        except TropemlError as exc:
            failed += _report(exc)
            continue
        if Path(raw).is_dir():
            found = [f for f in found if f.lower().endswith(WRITABLE_SUFFIXES) and not is_copy(f)]
        out.extend(found)
    return out, failed


@app.command()
@friendly_errors
def write(
    paths: Annotated[
        list[str],
        typer.Argument(help="EPUB or HTML fics, or folders (every EPUB and HTML inside)."),
    ],
    model: ModelOpt = None,
    prefix: PrefixOpt = "",
    spoilers: SpoilersOpt = False,
    backup: Annotated[
        bool, typer.Option("--backup", help="Keep each changed EPUB's original as NAME.epub.bak.")
    ] = False,
    as_json: JsonLinesOpt = False,
    max_bytes: MaxBytesOpt = 50_000_000,
    no_cache: NoCacheOpt = False,
    backend: BackendOpt = None,
    min_score: MinScoreOpt = 0.0,
) -> None:
    """Tag fics and write the tags into them: EPUB subjects in place, HTML to NAME.tropeml.html.

    An EPUB keeps its own subjects; tropeml's are marked, so a rerun replaces only them and
    running twice changes nothing. Each file is replaced atomically. HTML originals are never
    changed. A corrupt, DRM-protected or read-only file gets one error line and the others
    are still written.
    """
    from tropeml.serve.writeback import check_writable, write_tags

    sources, failed = _fics(paths)
    loader = _Model(model, backend_from(backend, "auto"), not no_cache)
    for source in sources:
        try:
            check_writable(source)
            tagger = loader.get()
            result, written = write_tags(
                tagger,
                source,
                prefix=prefix,
                spoilers=spoilers,
                backup=backup,
                version=loader.version,
                max_bytes=max_bytes,
                min_score=min_score,
            )
        except TropemlError as exc:
            failed += _report(exc)
            continue
        if as_json:
            obj = {**result.to_dict(), "written": written.to_dict()}
            typer.echo(json.dumps(obj, ensure_ascii=False))
        else:
            names = ", ".join(written.subjects) or "no tags"
            what = "wrote" if written.changed else "unchanged"
            where = f" -> {written.target}" if written.target != source else ""
            typer.echo(f"{source}{where}: {what}: {names}")
    if failed:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def calibre(
    library: Annotated[Path, typer.Argument(help="The Calibre library folder (has metadata.db).")],
    model: ModelOpt = None,
    column: Annotated[
        str | None,
        typer.Option(
            "--column",
            help="Write into this custom column (e.g. '#tropes', a text column with "
            "comma-separated values) instead of merging into the tags.",
        ),
    ] = None,
    prefix: PrefixOpt = "",
    spoilers: SpoilersOpt = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would change; write nothing.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Retag books this model version tagged before.")
    ] = False,
    as_json: JsonLinesOpt = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
    max_bytes: MaxBytesOpt = 50_000_000,
    no_cache: NoCacheOpt = False,
    backend: BackendOpt = None,
    min_score: MinScoreOpt = 0.0,
) -> None:
    """Tag every book of a Calibre library, writing the tags through calibredb.

    Each book's EPUB (else HTML, else TXT) is tagged; the tags are merged into the book's
    tags (tropeml's earlier ones replaced, the rest kept), or written to --column. Books this
    model version tagged before (at the same --min-score) are skipped, so an interrupted
    run resumes. Calibre's database is only ever changed by calibredb.
    """
    from tropeml.serve.calibre import Calibre, tag_library
    from tropeml.serve.writeback import with_min_score

    cal = Calibre(library)
    loader = _Model(model, backend_from(backend, "auto"), not no_cache)
    tagger = loader.get()
    counts: dict[str, int] = {}
    for outcome in tag_library(
        tagger,
        cal,
        loader.version,
        column=column,
        prefix=prefix,
        spoilers=spoilers,
        dry_run=dry_run,
        force=force,
        progress=not no_progress and not as_json,
        max_bytes=max_bytes,
        min_score=min_score,
    ):
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
        if outcome.error is not None:
            _report(TropemlError(outcome.error))
            continue
        if as_json:
            mark = with_min_score(loader.version, min_score)
            typer.echo(json.dumps(_outcome_dict(outcome, mark), ensure_ascii=False))
        elif outcome.status != "skipped":
            change = "; ".join(
                part
                for part in (
                    "+ " + ", ".join(outcome.added) if outcome.added else "",
                    "- " + ", ".join(outcome.removed) if outcome.removed else "",
                )
                if part
            )
            typer.echo(
                f"book {outcome.book.id} {outcome.book.title!r}: {outcome.status}"
                + (f": {change}" if change else "")
            )
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no books"
    typer.echo(f"tropeml: {library}: {summary} (model {loader.version})", err=True)
    if counts.get("error"):
        raise typer.Exit(1)


def _outcome_dict(outcome: Any, version: str) -> dict[str, Any]:
    return {
        "id": outcome.book.id,
        "title": outcome.book.title,
        "status": outcome.status,
        "added": list(outcome.added),
        "removed": list(outcome.removed),
        "model": version,
    }
