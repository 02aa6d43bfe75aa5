"""The ``tropeml`` command line: a thin typer layer over the Python API."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from tropeml._version import __version__
from tropeml.errors import TropemlError

if TYPE_CHECKING:
    from tropeml.evaluation import EvalReport
    from tropeml.types import WorkResult

app = typer.Typer(
    name="tropeml",
    help="Tag the tropes of fan fiction, with the passages that justify each tag.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rendering it with rich doubles `tropeml --help` time
)

F = TypeVar("F", bound=Callable[..., Any])
_state = {"debug": False}


def _err(message: str) -> None:
    typer.echo(f"tropeml: error: {message}", err=True)


def friendly_errors(func: F) -> F:
    """Turn :class:`TropemlError` into a one-line message and exit code 1 (not with --debug)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except TropemlError as exc:
            if _state["debug"]:
                raise
            _err(str(exc))
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            _err("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tropeml {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    _state["debug"] = debug


ModelOpt = Annotated[
    Path | None,
    typer.Option("--model", "-m", help="Model folder (default: the shipped model)."),
]
PathsArg = Annotated[
    list[str],
    typer.Argument(help="Files (text, HTML, EPUB), folders (every fic inside) or - for stdin."),
]
MaxBytesOpt = Annotated[int, typer.Option("--max-bytes", help="Refuse files larger than this.")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Do not cache embeddings.")]
JsonLinesOpt = Annotated[
    bool, typer.Option("--json", help="Print JSON Lines, one object per work.")
]
DataOpt = Annotated[
    Path, typer.Option("--data", help="Folder with tropes.toml, labels/ and exemplars/.")
]
RootOpt = Annotated[
    Path, typer.Option("--root", help="Folder that label files' paths are relative to.")
]
BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend",
        help="Encoder backend: fast (int8 ONNX, no torch), float (float32 ONNX, no torch: "
        "torch's vectors), torch, or auto (fast if it can be built, else torch).",
    ),
]


def _each_work(paths: list[str], max_bytes: int) -> Iterator[tuple[str, Any]]:
    """Yield (source, Work) per fic; a bad one prints its error line and is skipped.

    Raises ``typer.Exit(1)`` at the end if any was bad.
    """
    from tropeml.readers import expand_paths, read_work

    failed = 0
    for path in paths:
        try:
            sources = expand_paths([path])
        except TropemlError as exc:
            failed += _report(exc)
            continue
        for source in sources:
            try:
                work = read_work(source, max_bytes=max_bytes)
            except TropemlError as exc:
                failed += _report(exc)
                continue
            yield source, work
    if failed:
        raise typer.Exit(1)


def _report(exc: TropemlError) -> int:
    """Print one error line for a bad input (re-raise with --debug); return 1."""
    if _state["debug"]:
        raise exc
    _err(str(exc))
    return 1


EncoderOpt = Annotated[
    str | None,
    typer.Option(
        "--encoder",
        help="Encoder: a sentence-transformers model name or local folder, or hashing-<d> "
        "(fast, meaning-blind; for tests). Default: all-MiniLM-L6-v2. Kept in the model.",
    ),
]


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
    backend: BackendOpt = "auto",
    engine: Annotated[
        str, typer.Option("--engine", help="local (this process) or ray (Ray Data).")
    ] = "local",
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster address (default: start one).")
    ] = None,
    actors: Annotated[int, typer.Option("--actors", help="Ray actors (model copies).")] = 2,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Works per batch.")] = 16,
    text_column: Annotated[
        str, typer.Option("--text-column", help="Text column of table files.")
    ] = "text",
    id_column: Annotated[
        str | None, typer.Option("--id-column", help="Id column of table files (default: id).")
    ] = None,
) -> None:
    """Tag fics (text, HTML, EPUB) or a corpus: a table per work, or JSON Lines."""
    from tropeml.corpus import iter_records, tag_records

    if engine not in {"local", "ray"}:
        raise TropemlError(f"unknown engine {engine!r}: choose local or ray")
    if engine == "ray":
        from tropeml.ray import tag_with_ray

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
        )
    else:
        records = iter_records(paths, text_column, id_column, max_bytes)
        outcomes = tag_records(
            _LazyTagger(model, backend, not no_cache, spoilers),
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
            if as_json:
                typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))
            else:
                _print_result(result)
    if failed:
        raise typer.Exit(1)


class _LazyTagger:
    """Loads the model only when the first readable work arrives."""

    def __init__(self, model: Path | None, backend: str, cache: bool, spoilers: bool) -> None:
        self.args = (model, backend, cache)
        self.spoilers = spoilers
        self._tagger: Any = None

    def tag_many(self, works: Any, sources: Any) -> Any:
        if self._tagger is None:
            from tropeml.tagger import load

            model, backend, cache = self.args
            self._tagger = load(model, cache=cache, backend=backend)
        results = self._tagger.tag_many(works, sources)
        return results if self.spoilers else [r.without_spoilers() for r in results]


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
) -> None:
    """Compare the model's tags with the tags the author wrote (AO3 downloads, work pages)."""
    from tropeml.audit import audit_work
    from tropeml.tagger import Tagger, load

    tagger: Tagger | None = None
    for source, work in _each_work(paths, max_bytes):
        if not work.author_tags:
            typer.echo(f"tropeml: {source}: no author tags to audit", err=True)
            continue
        tagger = tagger or load(model, cache=not no_cache)
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
    root: RootOpt = Path("."),
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder --retrain writes.")] = Path(
        "models/trained"
    ),
    max_bytes: MaxBytesOpt = 50_000_000,
    no_cache: NoCacheOpt = False,
) -> None:
    """Answer yes/no/skip on the passages the model is least sure about; resumes where left."""
    from tropeml.audit import score_work
    from tropeml.labelling import answered_keys, questions_for, run_session
    from tropeml.tagger import load

    if "-" in paths:
        raise TropemlError("label reads your answers from standard input; give files, not -")
    tagger = load(model, cache=not no_cache)
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
        from tropeml.retrain import retrain

        encoder = getattr(tagger.encoder, "encoder", tagger.encoder)
        extra: list[str | Path] = [data, *([answers] if answers.exists() else []), *paths]
        res = retrain(extra, root=root, out=out, encoder=encoder, cache=not no_cache)
        typer.echo(
            f"retrained with {res.n_answers} answers and {len(res.works)} works with author "
            f"tags; embedded {res.embedded} new texts, reused {res.reused}; "
            f"model written to {res.folder}"
        )


def _ask(q: Any, n: int, total: int) -> str:
    from tropeml.labelling import QUIT, REPLIES

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


DataListOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--data",
        help="Repeatable. A data folder (tropes.toml, labels/, exemplars/; default data/), "
        "a folder or file of fics (AO3 downloads: their author tags are work labels), or a "
        "label file (.jsonl: span labels or tropeml label answers).",
    ),
]


@app.command()
@friendly_errors
def train(
    data: DataListOpt = None,
    root: RootOpt = Path("."),
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write.")] = Path(
        "models/trained"
    ),
    name: Annotated[str | None, typer.Option("--name", help="Model name.")] = None,
    no_cache: NoCacheOpt = False,
    overwrite_default: Annotated[
        bool,
        typer.Option("--overwrite-default", help="Allow --out to be the shipped default model."),
    ] = False,
    no_eval: Annotated[
        bool,
        typer.Option(
            "--no-eval", help="Skip the cross-validation (faster; the card has no metrics)."
        ),
    ] = False,
    encoder: EncoderOpt = None,
) -> None:
    """Train a model from labelled data (and AO3 downloads, answers) into a model folder.

    Two trains into the same folder run one after the other: the second waits, and says so.
    """
    from tropeml.encoders import load_encoder
    from tropeml.retrain import is_data_dir, retrain

    enc = load_encoder(encoder) if encoder else None

    paths = list(data or [Path("data")])
    if len(paths) == 1 and is_data_dir(paths[0]) and not no_eval:  # the plain case
        from tropeml.retrain import guard_default
        from tropeml.training import train as run_train

        guard_default(out, root, overwrite_default)
        result = run_train(
            paths[0],
            root,
            out,
            encoder=enc,
            cache=not no_cache,
            name=name or out.name,
            on_lock_wait=lambda message: typer.echo(f"tropeml: {message}", err=True),
        )
        embedded, reused, rows = result.embedded, result.reused, len(result.training_set)
        reports = (result.report, result.exemplar_report)
    else:
        res = retrain(
            paths,
            root=root,
            out=out,
            encoder=enc,
            cache=not no_cache,
            name=name or out.name,
            overwrite_default=overwrite_default,
            evaluate=not no_eval,
        )
        embedded, reused, rows = res.embedded, res.reused, len(res.training_set)
        reports = (res.report, res.exemplar_report)
        typer.echo(
            f"added {len(res.works)} works with author tags, {res.n_answers} answers; "
            f"{len(res.untagged)} works without usable author tags were left out"
        )
        if res.work_checks:
            found = sum(len(c.recovered) for c in res.work_checks)
            total = sum(len(c.tags) for c in res.work_checks)
            typer.echo(f"held-out author-tagged works: {found} of {total} author tags recovered")
    typer.echo(
        f"trained on {rows} rows; embedded {embedded} new texts, reused {reused} from the cache"
    )
    for report in reports:
        if report is not None:
            _print_report(report)
    typer.echo(f"model written to {out}")


@app.command("eval")
@friendly_errors
def evaluate(
    data: DataOpt = Path("data"),
    root: RootOpt = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the report as Markdown.")
    ] = False,
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            help="works: leave one labelled fic out at a time; "
            "exemplars: grouped 5-fold CV x 3 over the written exemplars.",
        ),
    ] = "works",
    no_cache: NoCacheOpt = False,
    backend: BackendOpt = "torch",
    encoder: EncoderOpt = None,
) -> None:
    """Cross-validated evaluation: per-tag precision, recall, F1, AP and support."""
    from tropeml.encoders import load_encoder
    from tropeml.training import evaluate as run_evaluate

    # torch is what training uses; another backend swaps in the same model run differently
    enc = None if backend == "torch" else load_encoder(None, backend=backend)
    enc = load_encoder(encoder) if encoder else enc
    report = run_evaluate(data, root, encoder=enc, protocol=protocol, cache=not no_cache)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    elif markdown:
        typer.echo(report.to_markdown())
    else:
        _print_report(report)


def _print_report(report: EvalReport) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report.scheme} ({report.n_folds} folds), passage level")
    for col in ("tag", "support", "precision", "recall", "F1", "AP"):
        table.add_column(col, justify="left" if col == "tag" else "right")
    for t in report.tags:
        if t.enough_data:
            table.add_row(
                t.tag,
                str(t.support),
                *(f"{v:.2f}" for v in (t.precision, t.recall, t.f1, t.average_precision)),
            )
        else:
            table.add_row(t.tag, str(t.support), f"[dim]{t.note}[/dim]", "", "", "")
    m = report.macro()
    table.add_row("macro", "", *(f"{m[k]:.2f}" for k in ("precision", "recall", "f1", "ap")))
    console = Console()
    console.print(table)
    for w in report.works:
        console.print(
            f"held out {w.work}: missed {', '.join(w.missed) or '-'}; "
            f"extra {', '.join(w.extra) or '-'}"
        )


@app.command()
@friendly_errors
def tropes(
    model: ModelOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the taxonomy as JSON.")] = False,
) -> None:
    """List the tropes the model knows: id, AO3 tag, definition."""
    from tropeml.persistence import TAXONOMY_FILE
    from tropeml.resources import default_model_dir
    from tropeml.taxonomy import Taxonomy

    taxonomy = Taxonomy.load((model or default_model_dir()) / TAXONOMY_FILE)
    if as_json:
        rows = [
            {
                "id": t.id,
                "name": t.name,
                "synonyms": list(t.synonyms),
                "definition": t.definition,
                "related": list(t.related),
                "spoiler": t.spoiler,
            }
            for t in taxonomy.values()
        ]
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=True)
    table.add_column("id")
    table.add_column("AO3 tag")
    table.add_column("definition", overflow="fold")
    for t in taxonomy.values():
        table.add_row(t.id, t.name + (" [dim](spoiler)[/dim]" if t.spoiler else ""), t.definition)
    Console().print(table)


@app.command()
@friendly_errors
def setup(
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Where to put it (default: beside the embedding cache)."),
    ] = None,
    backend: Annotated[
        str,
        typer.Option("--backend", help="fast (int8, the default backend) or float (float32)."),
    ] = "fast",
) -> None:
    """Build the fast backend now (int8 ONNX export of the encoder, checked against it)."""
    from tropeml.onnx_backend import PRECISION_OF, OnnxEncoder

    if backend not in PRECISION_OF:
        raise TropemlError(f"setup builds the fast or the float backend, not {backend!r}")
    encoder = OnnxEncoder(cache_dir=cache_dir, precision=PRECISION_OF[backend])
    meta = encoder.ensure_built()
    typer.echo(
        f"{backend} backend ready: {encoder.model_file} (cosine to the float encoder on "
        f"{meta['probes']} probe texts: mean {meta['mean_cosine']:.4f}, "
        f"min {meta['min_cosine']:.4f})"
    )


def main() -> None:
    """Run the CLI (the ``tropeml`` console script)."""
    app(prog_name="tropeml")


if __name__ == "__main__":  # pragma: no cover
    main()
