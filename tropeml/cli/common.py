"""What every ``tropeml`` command shares: the typer app, option types, error handling."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from tropeml._version import __version__
from tropeml.core.errors import TropemlError

if TYPE_CHECKING:
    pass

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
MinScoreOpt = Annotated[
    float,
    typer.Option(
        "--min-score",
        min=0.0,
        max=1.0,
        help="Keep only tags whose score (how likely the work shows the tag) reaches this. "
        "0.7 keeps the surer ones: on fresh works 86% right instead of 80%, finding about "
        "three quarters as many (see the README's Honest accuracy).",
    ),
]
JsonLinesOpt = Annotated[
    bool, typer.Option("--json", help="Print JSON Lines, one object per work.")
]
DataOpt = Annotated[
    Path, typer.Option("--data", help="Folder with tropes.toml, labels/ and exemplars/.")
]
RootOpt = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="Folder that label files' paths are relative to (default: the data folder's parent).",
    ),
]
_BACKEND_HELP = (
    "Encoder backend: fast (int8 ONNX, no torch), float (float32 ONNX, no torch: torch's "
    "vectors), torch, or auto (fast if it can be built, else torch). Default: "
    "$TROPEML_BACKEND if set, else {default}."
)
BackendOpt = Annotated[
    str | None, typer.Option("--backend", help=_BACKEND_HELP.format(default="auto"))
]
EvalBackendOpt = Annotated[
    str | None, typer.Option("--backend", help=_BACKEND_HELP.format(default="auto"))
]


def backend_from(flag: str | None, default: str) -> str:
    """Return the backend a command runs: ``--backend``, ``$TROPEML_BACKEND`` or ``default``.

    Raises:
        TropemlError: If the flag or the variable names no backend (the error says which).
    """
    from tropeml.model.backends import resolve_backend

    return resolve_backend(flag, default, option="--backend")


def _each_work(paths: list[str], max_bytes: int) -> Iterator[tuple[str, Any]]:
    """Yield (source, Work) per fic; a bad one prints its error line and is skipped.

    Raises ``typer.Exit(1)`` at the end if any was bad.
    """
    from tropeml.io.readers import expand_paths, read_work

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


TrustEncoderOpt = Annotated[
    bool,
    typer.Option(
        "--trust-encoder",
        help="Use the model's encoder even if its files differ from the SHA-256 the model "
        "recorded (for encoders swapped on purpose; also TROPEML_TRUST_ENCODER=1).",
    ),
]
EncoderOpt = Annotated[
    str | None,
    typer.Option(
        "--encoder",
        help="Encoder: a sentence-transformers model name or local folder, or hashing-<d> "
        "(fast, meaning-blind; for tests). Default: all-MiniLM-L6-v2. Kept in the model.",
    ),
]
