"""``tropeml tropes``, ``setup`` and ``info``: the taxonomy, the backends, the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tropeml.cli.common import BackendOpt, ModelOpt, TrustEncoderOpt, app, friendly_errors
from tropeml.core.errors import TropemlError


@app.command()
@friendly_errors
def tropes(
    model: ModelOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the taxonomy as JSON.")] = False,
) -> None:
    """List the tropes the model knows: id, AO3 tag, definition."""
    from tropeml.core.resources import default_model_dir
    from tropeml.core.taxonomy import Taxonomy
    from tropeml.model.persistence import TAXONOMY_FILE

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
    model: ModelOpt = None,
    trust_encoder: TrustEncoderOpt = False,
) -> None:
    """Build the fast backend now (int8 ONNX export of the model's encoder, checked against it).

    The encoder's files are first verified against the SHA-256 the model recorded.
    """
    from tropeml.core.resources import default_model_dir
    from tropeml.model.integrity import CONFIG_FILE, read_config
    from tropeml.model.onnx_backend import PRECISION_OF, OnnxEncoder
    from tropeml.model.weights import verify_encoder

    if backend not in PRECISION_OF:
        raise TropemlError(f"setup builds the fast or the float backend, not {backend!r}")
    folder = model or default_model_dir()
    enc = read_config(folder)["encoder"]
    encoder = OnnxEncoder(enc["name"], cache_dir=cache_dir, precision=PRECISION_OF[backend])
    verify_encoder(encoder.source, enc.get("files"), folder / CONFIG_FILE, trust_encoder)
    meta = encoder.ensure_built()
    typer.echo(
        f"{backend} backend ready: {encoder.model_file} (cosine to the float encoder on "
        f"{meta['probes']} probe texts: mean {meta['mean_cosine']:.4f}, "
        f"min {meta['min_cosine']:.4f})"
    )


@app.command()
@friendly_errors
def info(
    model: ModelOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
    backend: BackendOpt = "auto",
) -> None:
    """Show the model, its encoder (files, SHA-256, verified?), licences, versions, backend."""
    from tropeml.serve.about import describe, render

    facts = describe(model, None if backend == "auto" else backend)
    typer.echo(json.dumps(facts, indent=2) if as_json else render(facts))
