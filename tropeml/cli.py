"""The ``tropeml`` command line: a thin typer layer over the Python API."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
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
        help="Encoder backend: fast (int8 ONNX, no torch), torch, or auto (fast if it can be "
        "built, else torch).",
    ),
]


@app.command()
@friendly_errors
def tag(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Files, folders (every .txt inside), - for stdin, or a JSONL/CSV/Parquet "
            "file with a text column."
        ),
    ],
    model: ModelOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON Lines, one object per work.")
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
    max_bytes: Annotated[
        int, typer.Option("--max-bytes", help="Refuse files larger than this.")
    ] = 50_000_000,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not cache embeddings.")] = False,
) -> None:
    """Tag fics or a corpus: a table per work (tag, score, best evidence), or JSON Lines."""
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
        )
    else:
        records = iter_records(paths, text_column, id_column, max_bytes)
        outcomes = tag_records(
            _LazyTagger(model, backend, not no_cache),
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
            if as_json:
                typer.echo(json.dumps(outcome.result.to_dict(), ensure_ascii=False))
            else:
                _print_result(outcome.result)
    if failed:
        raise typer.Exit(1)


class _LazyTagger:
    """Loads the model only when the first readable work arrives."""

    def __init__(self, model: Path | None, backend: str, cache: bool) -> None:
        self.args = (model, backend, cache)
        self._tagger: Any = None

    def tag_many(self, works: Any, sources: Any) -> Any:
        if self._tagger is None:
            from tropeml.tagger import load

            model, backend, cache = self.args
            self._tagger = load(model, cache=cache, backend=backend)
        return self._tagger.tag_many(works, sources)


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
    Console().print(table)


@app.command()
@friendly_errors
def train(
    data: DataOpt = Path("data"),
    root: RootOpt = Path("."),
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write.")] = Path(
        "models/trained"
    ),
    name: Annotated[str | None, typer.Option("--name", help="Model name.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not cache embeddings.")] = False,
) -> None:
    """Train a model from labelled data and write it as a model folder."""
    from tropeml.training import train as run_train

    result = run_train(data, root, out, cache=not no_cache, name=name or out.name)
    typer.echo(
        f"trained on {len(result.training_set)} rows; embedded {result.embedded} new texts, "
        f"reused {result.reused} from the cache"
    )
    for report in (result.report, result.exemplar_report):
        if report is not None:
            _print_report(report)
    typer.echo(f"model written to {result.folder}")


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
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not cache embeddings.")] = False,
    backend: BackendOpt = "torch",
) -> None:
    """Cross-validated evaluation: per-tag precision, recall, F1, AP and support."""
    from tropeml.encoders import load_encoder
    from tropeml.training import evaluate as run_evaluate

    # torch is what training uses; another backend swaps in the same model run differently
    encoder = None if backend == "torch" else load_encoder(None, backend=backend)
    report = run_evaluate(data, root, encoder=encoder, protocol=protocol, cache=not no_cache)
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
) -> None:
    """Build the fast backend now (int8 ONNX export of the encoder, checked against it)."""
    from tropeml.onnx_backend import OnnxEncoder

    encoder = OnnxEncoder(cache_dir=cache_dir)
    meta = encoder.ensure_built()
    typer.echo(
        f"fast backend ready: {encoder.model_file} (cosine to the float encoder on "
        f"{meta['probes']} probe texts: mean {meta['mean_cosine']:.4f}, "
        f"min {meta['min_cosine']:.4f})"
    )


def main() -> None:
    """Run the CLI (the ``tropeml`` console script)."""
    app(prog_name="tropeml")


if __name__ == "__main__":  # pragma: no cover
    main()
