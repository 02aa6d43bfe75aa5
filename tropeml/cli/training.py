"""``tropeml train``, ``eval`` and ``tune``: fit a model folder, measure it, tune its decisions."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tropeml.cli.common import (
    DataOpt,
    EncoderOpt,
    EvalBackendOpt,
    ModelOpt,
    NoCacheOpt,
    RootOpt,
    app,
    backend_from,
    friendly_errors,
)

if TYPE_CHECKING:
    from tropeml.model.evaluation import EvalReport


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
    root: RootOpt = None,
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
    screen: Annotated[
        bool,
        typer.Option(
            "--screen",
            help="Also distil a screen for tropeml tag --screen (needs torch; adds ~8 MB).",
        ),
    ] = False,
) -> None:
    """Train a model from labelled data (and AO3 downloads, answers) into a model folder.

    Two trains into the same folder run one after the other: the second waits, and says so.
    """
    from tropeml.model.backends import load_encoder
    from tropeml.model.training import train as run_train

    res = run_train(
        list(data or [Path("data")]),
        root=root,
        out=out,
        encoder=load_encoder(encoder) if encoder else None,
        cache=not no_cache,
        name=name or out.name,
        overwrite_default=overwrite_default,
        evaluate=not no_eval,
        screen=screen,
        on_lock_wait=lambda message: typer.echo(f"tropeml: {message}", err=True),
    )
    embedded, reused, rows = res.embedded, res.reused, len(res.training_set)
    reports = (res.report, res.exemplar_report)
    for skipped in res.skipped:
        typer.echo(f"tropeml: warning: skipped {skipped}", err=True)
    if res.works or res.n_answers or res.untagged:
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
    root: RootOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the report as Markdown.")
    ] = False,
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            help="dev: the model as served, on the real-prose dev set (data/dev; passage AP, "
            "work-level precision, recall, false-tag rate, tags per work); "
            "confirm: the same, on the fresh works of data/confirm, which choose nothing; "
            "works: leave one labelled fic out at a time; "
            "exemplars: grouped 5-fold CV x 3 over the written exemplars.",
        ),
    ] = "works",
    model: ModelOpt = None,
    no_cache: NoCacheOpt = False,
    backend: EvalBackendOpt = None,
    encoder: EncoderOpt = None,
) -> None:
    """Evaluate: a saved model on the dev set, or cross-validated training on data/."""
    from tropeml.model.backends import load_encoder

    backend = backend_from(backend, "auto")
    if protocol in ("dev", "confirm"):
        _evaluate_dev(data / protocol, model, backend, not no_cache, as_json)
        return
    from tropeml.model.training import evaluate as run_evaluate

    # the backend that serves the model by default (auto: fast where it can be built)
    enc = load_encoder(encoder) if encoder else load_encoder(None, backend=backend)
    report = run_evaluate(data, root, encoder=enc, protocol=protocol, cache=not no_cache)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    elif markdown:
        typer.echo(report.to_markdown())
    else:
        _print_report(report)


def _evaluate_dev(dev: Path, model: Path | None, backend: str, cache: bool, as_json: bool) -> None:
    """``tropeml eval --protocol dev|confirm``: the model as ``tag`` serves it, on ``dev``.

    ``data/confirm`` has works only; a folder without ``passages.jsonl`` reports works.
    """
    from tropeml.io.devset import load_dev_passages, load_dev_works
    from tropeml.serve.deveval import dev_report
    from tropeml.serve.tagger import load

    tagger = load(model, cache=cache, backend=backend)
    passages = load_dev_passages(dev) if (dev / "passages.jsonl").is_file() else []
    report, _, _ = dev_report(tagger, passages, load_dev_works(dev), backend)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        typer.echo(report.to_markdown())


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
def tune(
    works: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Folders laid out like data/dev: works/*.jsonl, each line a work judged "
            "yes/no/unknown for the required tags, and maybe others (data/dev/README.md); "
            "their works are pooled. Default: data/dev."
        ),
    ] = None,
    model: ModelOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be chosen; write nothing.")
    ] = False,
    overwrite_default: Annotated[
        bool,
        typer.Option("--overwrite-default", help="Allow tuning the shipped default model."),
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--tag",
            "-t",
            help="Tune only this tag (repeatable): its alpha and its score offset; the "
            "other tags keep theirs and their scores. Without it, every judged tag's alpha "
            "and a whole new score calibrator.",
        ),
    ] = None,
    floor: Annotated[
        float | None,
        typer.Option(
            "--floor",
            help="Also set the least score a tag is shown with: for the --tag tags only, or "
            "for every tag without --tag. Default: the floors stay.",
        ),
    ] = None,
    sure: Annotated[
        float | None,
        typer.Option(
            "--sure",
            help="Also show a tag whose score reaches this, whether or not the chance rule "
            "gives it (it still needs its floor): for the --tag tags only, or for every tag "
            "without --tag. Default: the sure scores stay.",
        ),
    ] = None,
    cross: Annotated[
        list[str] | None,
        typer.Option(
            "--cross",
            help="Read this tag from every tag's score (repeatable): a logistic regression "
            "on the work's scores of all tags, shown from the lowest floor that meets the "
            "tag's false-tag target, without the chance rule. Measure it on works you did "
            "not write before keeping it.",
        ),
    ] = None,
    ending: Annotated[
        bool,
        typer.Option(
            "--ending",
            help="Read the new --cross tags from the work's ending instead: each tag's best "
            "passage in its last tenth (for a tag about how a story ends).",
        ),
    ] = False,
    inputs: Annotated[
        list[str] | None,
        typer.Option(
            "--inputs",
            help="The tags a new --cross tag reads (repeatable). Default: every tag.",
        ),
    ] = None,
    no_cache: NoCacheOpt = False,
    backend: EvalBackendOpt = None,
) -> None:
    """Choose a model's per-tag alphas and score calibrator on works judged for its tags.

    A model trained on other labels or with another encoder needs its own: the shipped
    values were chosen for the shipped model. Alpha: the largest whose false-tag rate on
    the works not showing the tag is at most 5% (AU tags) or 10%, pooled and on each kind of
    work (public-domain, written) with enough of them to measure; then the score calibrator
    (a logistic regression on each work's evidence).
    """
    from tropeml.core.errors import TropemlError
    from tropeml.core.resources import default_model_dir
    from tropeml.io.devset import load_dev_works
    from tropeml.model.workcal import READS
    from tropeml.serve.tagger import load
    from tropeml.serve.tuning import tune as run_tune
    from tropeml.serve.tuning import write_tuning

    folder = model or default_model_dir()
    if folder.resolve() == default_model_dir().resolve() and not (dry_run or overwrite_default):
        raise TropemlError(
            f"{folder}: refusing to change the shipped default model; pass --model, "
            "--dry-run or --overwrite-default"
        )
    folders = works or [Path("data/dev")]
    for where in folders:
        if not any((where / "works").glob("*.jsonl")):
            raise TropemlError(
                f"{where}: no judged works (works/*.jsonl, laid out like data/dev; "
                "see data/dev/README.md)"
            )
    items = [item for where in folders for item in load_dev_works(where)]
    twice = sorted(i for i, n in Counter(item.id for item in items).items() if n > 1)
    if twice:
        raise TropemlError(f"work ids judged twice across the folders: {', '.join(twice[:5])}")
    tagger = load(folder, cache=not no_cache, backend=backend_from(backend, "auto"))
    for flag, bar in (("--floor", floor), ("--sure", sure)):
        if bar is not None and not 0.0 <= bar < 1.0:
            raise TropemlError(f"{flag} must be in [0, 1), got {bar:g}")
    if (ending or inputs) and not cross:
        raise TropemlError("--ending and --inputs are for the tags of --cross; give one")
    for flag, given in (("--tag", only), ("--cross", cross), ("--inputs", inputs)):
        unknown = sorted(set(given or ()) - set(tagger.tags))
        if unknown:
            raise TropemlError(f"{flag}: the model has no tag {', '.join(unknown)}")
    reads = "ending" if ending else "work"
    result = run_tune(tagger, items, only, floor, cross or (), reads, inputs, sure)
    typer.echo(f"{result.works} judged works, {result.pairs} judged (work, tag) pairs")
    typer.echo(f"{'tag':18} {'alpha':>19}  found  false tags")
    for c in result.choices:
        typer.echo(
            f"{c.tag:18} {c.before:>8.2g} -> {c.alpha:<8.2g}  {c.found:>2}/{c.shown:<3}"
            f"  {c.false:>2}/{c.trope_free}"
        )
    if result.calibrator is not None:
        cal = result.calibrator
        offsets = ", ".join(f"{t} {v:+.2f}" for t, v in cal.tags.items() if not only or t in only)
        if only:
            typer.echo(f"score offsets refitted on those tags' judged pairs: {offsets}")
        else:
            typer.echo(
                f"score calibrator fitted on the {result.pairs} pairs: intercept "
                f"{cal.intercept:.4f}; per tag {offsets}"
            )
        which = ", ".join(only) if only else "every tag"
        if floor is not None:
            typer.echo(f"floor {floor:g} for {which}")
        if sure is not None:
            typer.echo(f"sure score {sure:g} for {which}: shown from it, chance rule or not")
    for x in result.crossed:
        typer.echo(
            f"cross score of {x.tag} refitted on {READS[x.reads]}; shown from {x.floor:g} "
            f"(was {x.before:g}): found {x.found}/{x.shown}, false {x.false}/{x.trope_free}"
        )
    if dry_run:
        typer.echo("dry run: nothing written")
        return
    write_tuning(folder, result)
    typer.echo(f"written to {folder / 'config.json'}")
