"""Tag a corpus on a Ray cluster with Ray Data (``pip install 'tropeml[ray]'``).

The corpus becomes a Ray dataset (table files are read by Ray's own readers on the
workers; fic files are read by the workers from a shared filesystem), and
``map_batches`` runs it through a pool of actors, each of which loads the model once. The
driver streams the results back in input order and appends them to the output, skipping
works an earlier run already wrote, exactly like the single-process run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tropeml.core.errors import TropemlError
from tropeml.core.fileio import append_line
from tropeml.core.types import WorkResult
from tropeml.io.corpus import TABLE_FORMATS, Outcome, done_ids, is_table, text_work
from tropeml.io.readers import DEFAULT_MAX_BYTES, expand_paths, read_work


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise TropemlError(
            "--engine ray needs Ray: pip install 'tropeml[ray]' (or use --engine local)"
        ) from None
    return ray


class TagActor:
    """A Ray Data actor: loads the model once, then tags batches of works.

    Args:
        model: Model folder (``None``: the shipped model).
        backend: Encoder backend (``auto``, ``fast``, ``torch``).
        cache: Embedding cache (as :meth:`Tagger.from_pretrained`).
        max_bytes: Refuse fic files larger than this.
        text_column: Where a row's text is (table inputs); rows of fic files have a ``path``.
        spoilers: Keep spoiler tags in ``tags``.
        trust_encoder: Use the encoder even if its files differ from the model's record.
        screen: Use the model's screen (:mod:`tropeml.serve.screening`).
        min_score: Keep only tags scoring at least this (:meth:`WorkResult.at_least`).
    """

    def __init__(
        self,
        model: str | None,
        backend: str | None,
        cache: bool | str,
        max_bytes: int,
        text_column: str,
        spoilers: bool = True,
        trust_encoder: bool = False,
        screen: bool = False,
        min_score: float = 0.0,
    ) -> None:
        from tropeml.serve.tagger import load

        self.tagger = load(
            model, backend=backend, cache=cache, trust_encoder=trust_encoder, screen=screen
        )
        self.max_bytes = max_bytes
        self.text_column = text_column
        self.spoilers = spoilers
        self.min_score = min_score

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        """Tag a batch (columns ``id`` and ``path`` or the text column); one JSON line each."""
        ids = [str(i) for i in batch["id"]]
        lines: list[str] = [""] * len(ids)
        works, at = [], []
        for i, rid in enumerate(ids):
            try:
                if "path" in batch:
                    works.append(read_work(str(batch["path"][i]), max_bytes=self.max_bytes))
                else:
                    works.append(text_work(batch[self.text_column][i], rid))
                at.append(i)
            except TropemlError as exc:
                lines[i] = json.dumps({"id": rid, "error": str(exc)}, ensure_ascii=False)
        for i, result in zip(at, self.tagger.tag_many(works, [ids[i] for i in at]), strict=True):
            result = result if self.spoilers else result.without_spoilers()
            result = result.at_least(self.min_score)
            lines[i] = json.dumps(Outcome(ids[i], result=result).to_dict(), ensure_ascii=False)
        return {"id": ids, "line": lines}


DEFAULT_ACTORS = 2
"""The actor pool's size when none is given (fewer on a cluster with too few CPUs)."""


def plan_cpus(cluster_cpus: float, actors: int | None, actor_cpus: float) -> tuple[int, float]:
    """Share a cluster's CPUs between the actor pool and Ray Data's read tasks.

    Every actor holds its CPUs for the whole run, and Ray Data's file listing and read tasks
    cannot start without one CPU each. If the pool took every CPU, the reads would wait for
    ever and the run would hang without a word (2 actors of 1 CPU on a 2-CPU machine did).
    So one CPU is kept for them: the default pool shrinks to fit beside it, and a pool asked
    for that does not fit shares the rest (fractional CPUs per actor).

    Args:
        cluster_cpus: CPUs of the cluster (``ray.cluster_resources()["CPU"]``).
        actors: Pool size asked for (``None``: :data:`DEFAULT_ACTORS`, or fewer to fit).
        actor_cpus: CPUs each actor would like.

    Returns:
        ``(actors, cpus per actor)``.

    Raises:
        TropemlError: If ``actors`` is below 1 or the cluster has under 2 CPUs.
    """
    if actors is not None and actors < 1:
        raise TropemlError(f"--actors must be at least 1, not {actors}")
    room = cluster_cpus - 1.0  # for Ray Data's listing and read tasks
    if room <= 0:
        raise TropemlError(
            f"--engine ray needs a Ray cluster with at least 2 CPUs (this one has "
            f"{cluster_cpus:g}): one for the actors, one for Ray Data's reads; "
            "use --engine local"
        )
    if actors is None:
        actors = max(1, min(DEFAULT_ACTORS, int(room // actor_cpus)))
    return actors, min(actor_cpus, room / actors)


def _dataset(
    ray: Any,
    paths: Sequence[str | Path],
    text_column: str,
    id_column: str | None,
    actors: int,
) -> Any:
    tables = [p for p in paths if is_table(p)]
    if tables and len(tables) != len(paths):
        raise TropemlError("--engine ray takes either table files or fic files, not both")
    if not tables:
        files = expand_paths(paths)
        if "-" in files:
            raise TropemlError("--engine ray cannot read stdin")
        items = [{"id": f, "path": str(Path(f).resolve())} for f in files]
        blocks = max(1, min(len(items), 8 * actors))  # enough blocks to keep every actor busy
        return ray.data.from_items(items, override_num_blocks=blocks)
    kinds = {TABLE_FORMATS[Path(p).suffix.lower()] for p in tables}
    if len(kinds) != 1:
        raise TropemlError("--engine ray takes table files of one format at a time")
    kind = kinds.pop()
    names = [str(Path(p).resolve()) for p in tables]
    read = {"json": ray.data.read_json, "csv": ray.data.read_csv}.get(kind, ray.data.read_parquet)
    ds = read(names)
    columns = ds.columns()
    key = id_column or "id"
    if key not in columns:
        raise TropemlError(
            f"--engine ray needs an id column in table files ({key!r} not among {columns}); "
            "choose one with --id-column"
        )
    if text_column not in columns:
        raise TropemlError(f"no column {text_column!r} (columns: {columns})")
    ds = ds.select_columns([key, text_column])
    if key != "id":
        ds = ds.rename_columns({key: "id"})
    return ds


def tag_with_ray(
    paths: Sequence[str | Path],
    model: str | Path | None = None,
    backend: str | None = None,
    out: str | Path | None = None,
    address: str | None = None,
    actors: int | None = None,
    batch_size: int = 16,
    cache: bool = True,
    text_column: str = "text",
    id_column: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    actor_cpus: float = 1.0,
    spoilers: bool = True,
    trust_encoder: bool = False,
    screen: bool = False,
    min_score: float = 0.0,
) -> Iterator[Outcome]:
    """Tag a corpus with Ray Data; same results, in the same order, as the local engine.

    Args:
        paths: Fic files and folders (on a filesystem every node sees), or table files.
        model: Model folder (``None``: the shipped model); must be readable by every node.
        backend: Encoder backend for the actors.
        out: JSON Lines file to append to; works it already holds are skipped.
        address: An existing cluster (``"auto"``, ``"ray://head:10001"``); ``None`` starts a
            local Ray instance.
        actors: Size of the actor pool (each loads the model once); ``None``: 2, or 1 where
            the cluster has under 3 CPUs (see :func:`plan_cpus`).
        batch_size: Works per actor call.
        cache: Use each node's embedding cache.
        text_column: Text column of table files.
        id_column: Id column of table files (default ``"id"``).
        max_bytes: Refuse fic files larger than this.
        actor_cpus: CPUs each actor reserves. One CPU of the cluster is kept for Ray
            Data's read tasks; where the pool would not fit beside it, each actor reserves
            less (see :func:`plan_cpus`).
        spoilers: Keep spoiler tags in ``tags`` (``False``: moved to ``hidden_spoilers``).
        trust_encoder: Use the model's encoder even if its files differ from the recorded
            SHA-256 (see :meth:`~tropeml.serve.tagger.Tagger.from_pretrained`).
        screen: Use the model's screen: the full encoder only where a tag can change.
        min_score: Keep only tags scoring at least this (:meth:`WorkResult.at_least`).

    Yields:
        One :class:`~tropeml.io.corpus.Outcome` per work not already in ``out``.
    """
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # identical output to the local run
    ctx.enable_progress_bars = False
    cluster_cpus = float(ray.cluster_resources().get("CPU", 0))
    actors, actor_cpus = plan_cpus(cluster_cpus, actors, actor_cpus)
    ds = _dataset(ray, paths, text_column, id_column, actors)
    done = done_ids(out) if out is not None else set()
    if done:
        ds = ds.filter(lambda row: str(row["id"]) not in done)
    model_dir = str(Path(model).resolve()) if model is not None else None
    tagged = ds.map_batches(
        TagActor,
        fn_constructor_args=(
            model_dir,
            backend,
            cache,
            max_bytes,
            text_column,
            spoilers,
            trust_encoder,
            screen,
            min_score,
        ),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=actor_cpus,
    )
    for row in tagged.iter_rows():
        data = json.loads(row["line"])
        if "error" in data:
            yield Outcome(data["id"], error=data["error"])
            continue
        if out is not None:
            append_line(out, row["line"])
        yield Outcome(data["id"], result=_result(data))


def _result(data: dict[str, Any]) -> WorkResult:
    from tropeml.core.types import Evidence, TagResult

    tags = tuple(
        TagResult(
            id=t["id"],
            name=t["name"],
            score=t["score"],
            threshold=t["threshold"],
            prominence=t["prominence"],
            evidence=tuple(Evidence(**e) for e in t["evidence"]),
        )
        for t in data["tags"]
    )
    return WorkResult(data["source"], data["n_passages"], data["model"], data["scores"], tags)
