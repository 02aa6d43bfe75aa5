"""``tropeml tag``, ``audit`` and ``label``: tag fics, compare with author tags, label."""

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
    PathsArg,
    RootOpt,
    TrustEncoderOpt,
    _each_work,
    _err,
    _state,
    app,
    backend_from,
    friendly_errors,
)
from tropeml.core.errors import TropemlError

if TYPE_CHECKING:
    from tropeml.core.types import WorkResult


@app.command()
@friendly_errors
def tag(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Files (text, HTML, EPUB), folders (every fic inside), - for stdin, or a "
            "JSONL/CSV/Parquet file with a text column."
        ),
    ],
    model: ModelOpt = None,
    as_json: JsonLinesOpt = False,
    max_bytes: MaxBytesOpt = 50_000_000,
    no_cache: NoCacheOpt = False,
    spoilers: Annotated[
        bool,
        typer.Option(
            "--spoilers",
            help="Show tags marked as spoilers (e.g. fake_death); hidden by default, "
            "their scores stay in --json.",
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Append JSON Lines here as works finish; a rerun resumes."
        ),
    ] = None,
    backend: BackendOpt = None,
    engine: Annotated[
        str, typer.Option("--engine", help="local (this process) or ray (Ray Data).")
    ] = "local",
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster address (default: start one).")
    ] = None,
    actors: Annotated[
        int | None,
        typer.Option(
            "--actors",
            help="Ray actors (model copies). Default: 2, or 1 on a cluster with under 3 CPUs "
            "(one CPU stays free for Ray Data's read tasks).",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Works per batch.")] = 16,
    text_column: Annotated[
        str, typer.Option("--text-column", help="Text column of table files.")
    ] = "text",
    id_column: Annotated[
        str | None, typer.Option("--id-column", help="Id column of table files (default: id).")
    ] = None,
    trust_encoder: TrustEncoderOpt = False,
    screen: Annotated[
        bool,
        typer.Option(
            "--screen",
            help="Run the full encoder only on passages that can change a work's tags "
            "(1.34x the words per second on 10,000-word works, nothing on short ones; 1 of "
            "1,674 decisions differed on the dev works).",
        ),
    ] = False,
    min_score: MinScoreOpt = 0.0,
) -> None:
    """Tag fics (text, HTML, EPUB) or a corpus: a table per work, or JSON Lines."""
    from tropeml.io.corpus import iter_records, tag_records

    if engine not in {"local", "ray"}:
        raise TropemlError(f"unknown engine {engine!r}: choose local or ray")
    backend = backend_from(backend, "auto")
    if engine == "ray":
        from tropeml.serve.ray import tag_with_ray

        outcomes = tag_with_ray(
            paths,
            model,
            backend,
            out,
            address=address,
            actors=actors,
            batch_size=batch_size,
            cache=not no_cache,
            text_column=text_column,
            id_column=id_column,
            max_bytes=max_bytes,
            spoilers=spoilers,
            trust_encoder=trust_encoder,
            screen=screen,
            min_score=min_score,
        )
    else:
        records = iter_records(paths, text_column, id_column, max_bytes)
        outcomes = tag_records(
            _LazyTagger(model, backend, not no_cache, spoilers, trust_encoder, screen, min_score),
            records,
            out=out,
            batch_size=batch_size if out is not None else 1,
            progress=out is not None,
        )
    failed = 0
    for outcome in outcomes:
        if outcome.result is None:
            if _state["debug"]:
                raise TropemlError(str(outcome.error))
            _err(str(outcome.error))
            failed += 1
        elif out is None:
            result = outcome.result if spoilers else outcome.result.without_spoilers()
            result = result.at_least(min_score)
            if as_json:
                typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))
            else:
                _print_result(result)
    if failed:
        raise typer.Exit(1)


class _LazyTagger:
    """Loads the model only when the first readable work arrives."""

    def __init__(
        self,
        model: Path | None,
        backend: str,
        cache: bool,
        spoilers: bool,
        trust: bool,
        screen: bool = False,
        min_score: float = 0.0,
    ) -> None:
        self.args = (model, backend, cache, trust, screen)
        self.spoilers = spoilers
        self.min_score = min_score
        self._tagger: Any = None

    def tag_many(self, works: Any, sources: Any) -> Any:
        if self._tagger is None:
            from tropeml.serve.tagger import load

            model, backend, cache, trust, screen = self.args
            self._tagger = load(
                model, cache=cache, backend=backend, trust_encoder=trust, screen=screen
            )
        results = self._tagger.tag_many(works, sources)
        results = results if self.spoilers else [r.without_spoilers() for r in results]
        return [r.at_least(self.min_score) for r in results]


def _print_result(result: WorkResult) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{result.source}  ({result.n_passages} passages, model {result.model})",
        title_justify="left",
        show_lines=True,
    )
    table.add_column("tag")
    table.add_column("score", justify="right")
    table.add_column("shown in", justify="right")
    table.add_column("best evidence [start-end]", overflow="fold")
    for t in result.tags:
        best = t.evidence[0]
        quote = " ".join(best.text.split())
        quote = quote if len(quote) <= 160 else quote[:157] + "..."
        where = f"[{best.start}-{best.end}]" + (f" {best.chapter}" if best.chapter else "")
        table.add_row(
            f"{t.name}\n[dim]{t.id}[/dim]",
            f"{t.score:.2f}",
            f"{t.prominence:.0%}",
            f"{where} {quote}",
        )
    if not result.tags:
        table.add_row("[dim](no tag over its threshold)[/dim]", "", "", "")
    if result.hidden_spoilers:
        n = len(result.hidden_spoilers)
        table.caption = f"{n} spoiler tag{'s' if n > 1 else ''} hidden (--spoilers shows them)"
    Console().print(table)


@app.command()
@friendly_errors
def audit(
    paths: PathsArg,
    model: ModelOpt = None,
    as_json: JsonLinesOpt = False,
    max_bytes: MaxBytesOpt = 50_000_000,
    no_cache: NoCacheOpt = False,
    trust_encoder: TrustEncoderOpt = False,
) -> None:
    """Compare the model's tags with the tags the author wrote (AO3 downloads, work pages)."""
    from tropeml.serve.audit import audit_work
    from tropeml.serve.tagger import Tagger, load

    tagger: Tagger | None = None
    for source, work in _each_work(paths, max_bytes):
        if not work.author_tags:
            typer.echo(f"tropeml: {source}: no author tags to audit", err=True)
            continue
        tagger = tagger or load(model, cache=not no_cache, trust_encoder=trust_encoder)
        result = audit_work(tagger, work, source=source)
        if as_json:
            typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))
        else:
            _print_audit(result)


def _print_audit(result: Any) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    mapped = result.author_tags
    console = Console()
    console.print(f"[bold]{escape(result.source)}[/bold]  (model {escape(result.model)})")
    written = "; ".join(f"{', '.join(v)} -> {k}" for k, v in mapped.ids.items()) or "-"
    console.print(f"author tags mapped: {escape(written)}")
    console.print(f"not in the taxonomy: {escape(', '.join(mapped.unmapped) or '-')}")
    console.print(f"confirmed by the model: {', '.join(result.confirmed) or '-'}")
    table = Table(
        show_lines=True,
        caption="unlisted: the model finds it, the author did not tag it; "
        "unsupported: the author tagged it, the model finds no support",
    )
    for col in ("finding", "tag", "score", "reason", "evidence"):
        table.add_column(col, overflow="fold", justify="right" if col == "score" else "left")
    for finding in (*result.unlisted, *result.unsupported):
        ev = finding.evidence[0] if finding.evidence else None
        quote = ""
        if ev is not None:
            text = " ".join(ev.text.split())
            quote = f"[{ev.start}-{ev.end}] " + (text if len(text) <= 120 else text[:117] + "...")
        table.add_row(
            finding.kind,
            f"{escape(finding.name)}\n[dim]{finding.id}[/dim]",
            f"{finding.score:.2f}",
            escape(finding.reason),
            escape(quote),
        )
    if not result.unlisted and not result.unsupported:
        table.add_row("[dim](the model agrees with the author's tags)[/dim]", "", "", "", "")
    console.print(table)


@app.command()
@friendly_errors
def label(
    paths: PathsArg,
    model: ModelOpt = None,
    answers: Annotated[
        Path,
        typer.Option("--answers", help="Answers file (JSON Lines), appended after each answer."),
    ] = Path("data/answers.jsonl"),
    limit: Annotated[int, typer.Option("--limit", help="Most questions per work.", min=1)] = 10,
    retrain_after: Annotated[
        bool, typer.Option("--retrain", help="Retrain at the end, with the answers.")
    ] = False,
    data: Annotated[
        Path, typer.Option("--data", help="Data folder to retrain from (with --retrain).")
    ] = Path("data"),
    root: RootOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder --retrain writes.")] = Path(
        "models/trained"
    ),
    max_bytes: MaxBytesOpt = 50_000_000,
    no_cache: NoCacheOpt = False,
    trust_encoder: TrustEncoderOpt = False,
) -> None:
    """Answer yes/no/skip on the passages the model is least sure about; resumes where left."""
    from tropeml.serve.audit import score_work
    from tropeml.serve.labelling import answered_keys, questions_for, run_session
    from tropeml.serve.tagger import load

    if "-" in paths:
        raise TropemlError("label reads your answers from standard input; give files, not -")
    tagger = load(model, cache=not no_cache, trust_encoder=trust_encoder)
    questions = []
    for source, work in _each_work(paths, max_bytes):
        questions += questions_for(tagger, score_work(tagger, work, source), source, limit)
    done = answered_keys(answers)
    left = sum(1 for q in questions if q.key not in done)
    typer.echo(
        f"{len(questions)} questions, {len(questions) - left} already answered in {answers}; "
        f"{left} to go. Answers are saved as you give them; q quits."
    )
    stats = run_session(questions, answers, lambda q, n: _ask(q, n, left))
    typer.echo(f"saved {stats.answered} answers to {answers}" + (" (quit)" if stats.quit else ""))
    if retrain_after:
        from tropeml.model.training import train as run_train

        encoder = getattr(tagger.encoder, "encoder", tagger.encoder)
        extra: list[str | Path] = [data, *([answers] if answers.exists() else []), *paths]
        res = run_train(extra, root=root, out=out, encoder=encoder, cache=not no_cache)
        typer.echo(
            f"retrained with {res.n_answers} answers and {len(res.works)} works with author "
            f"tags; embedded {res.embedded} new texts, reused {res.reused}; "
            f"model written to {res.folder}"
        )


def _ask(q: Any, n: int, total: int) -> str:
    from tropeml.serve.labelling import QUIT, REPLIES

    p = q.passage
    where = f"{q.file}" + (f", {p.chapter}" if p.chapter else "") + f", [{p.start}-{p.end}]"
    typer.echo(f"\n[{n}/{total}] {where}\nwhy: {q.reason}\n" + "-" * 60)
    typer.echo(p.text.strip())
    typer.echo("-" * 60 + f"\n{q.name} ({q.tag}): {q.definition[:240]}")
    while True:
        try:
            reply = input(f"Does this passage show {q.name!r}? [y]es/[n]o/[s]kip/[q]uit: ")
        except EOFError:
            return QUIT
        choice = REPLIES.get(reply.strip().casefold())
        if choice is not None:
            return choice
        typer.echo("please answer y, n, s or q")
