"""Ray Data engine on a local 2-CPU Ray instance: same output as the single-process run.

Two CPUs, like the development machine: with the default pool, or two actors asked for,
the actors must leave Ray Data's read tasks a CPU, or the run hangs (issue 16).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli import run, stderr_of
from test_corpus import _rows, _texts, read_out, write_table

from tropeml.core.errors import TropemlError
from tropeml.serve.ray import plan_cpus

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'tropeml[ray]')")


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A local Ray instance with 2 CPUs, as on a 2-core machine."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
    )
    yield
    ray.shutdown()


def _both(tmp_path: Path, tiny_model: Path, *inputs: Path, extra: tuple[str, ...] = ()) -> None:
    local, dist = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    first = run("tag", *inputs, "-m", tiny_model, "--out", local, "--batch-size", "2")
    assert first.exit_code == 0, stderr_of(first)
    second = run(
        "tag", *inputs, "-m", tiny_model, "--out", dist, "--batch-size", "2",
        "--engine", "ray", *extra,
    )  # fmt: skip
    assert second.exit_code == 0, stderr_of(second)
    assert dist.read_bytes() == local.read_bytes()  # identical, line for line, in order


def test_ray_default_actors_on_parquet_on_two_cpus(
    local_ray: None, tmp_path: Path, tiny_model: Path
) -> None:
    """Issue 16: the default pool on a Parquet table hung on a 2-CPU machine."""
    table = write_table(tmp_path / "c.parquet", _rows(9))
    _both(tmp_path, tiny_model, table)


def test_ray_two_actors_on_two_cpus(local_ray: None, tmp_path: Path, tiny_model: Path) -> None:
    """Two actors asked for on 2 CPUs share one CPU and leave the other to the reads."""
    table = write_table(tmp_path / "c.parquet", _rows(5))
    _both(tmp_path, tiny_model, table, extra=("--actors", "2"))


def test_ray_matches_local_on_a_folder(local_ray: None, tmp_path: Path, tiny_model: Path) -> None:
    (tmp_path / "lib" / "a").mkdir(parents=True)
    for i, text in enumerate(_texts(5)):
        (tmp_path / "lib" / ("a" if i % 2 else "") / f"f{i}.txt").write_text(text)
    _both(tmp_path, tiny_model, tmp_path / "lib", extra=("--actors", "2"))


def test_ray_keeps_only_tags_over_min_score_as_local_does(
    local_ray: None, tmp_path: Path, tiny_model: Path
) -> None:
    table = write_table(tmp_path / "c.parquet", _rows(4))
    outs = []
    for engine in ("local", "ray"):
        out = tmp_path / f"{engine}.jsonl"
        result = run(
            "tag", table, "-m", tiny_model, "--out", out, "--engine", engine,
            "--min-score", "0.9",
        )  # fmt: skip
        assert result.exit_code == 0, stderr_of(result)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    for row in read_out(tmp_path / "ray.jsonl"):
        assert all(tag["score"] >= 0.9 for tag in row["tags"])


def test_actor_pool_leaves_a_cpu_for_the_reads() -> None:
    assert plan_cpus(2, None, 1.0) == (1, 1.0)  # the default pool shrinks
    assert plan_cpus(2, 2, 1.0) == (2, 0.5)  # an explicit pool shares what is left
    assert plan_cpus(3, None, 1.0) == (2, 1.0)
    assert plan_cpus(16, None, 1.0) == (2, 1.0)
    assert plan_cpus(16, 16, 1.0) == (16, 15 / 16)
    with pytest.raises(TropemlError, match="at least 2 CPUs"):
        plan_cpus(1, None, 1.0)
    with pytest.raises(TropemlError, match="at least 1"):
        plan_cpus(4, 0, 1.0)


def test_ray_resumes(local_ray: None, tmp_path: Path, tiny_model: Path) -> None:
    rows = _rows(6)
    table = write_table(tmp_path / "c.jsonl", rows[:3])
    out = tmp_path / "out.jsonl"
    args = ("-m", tiny_model, "--out", out, "--engine", "ray")
    assert run("tag", table, *args).exit_code == 0
    before = out.read_bytes()
    write_table(table, rows)
    assert run("tag", table, *args).exit_code == 0
    assert out.read_bytes().startswith(before)
    assert [r["id"] for r in read_out(out)] == [r["id"] for r in rows]


def test_ray_needs_an_id_column(local_ray: None, tmp_path: Path, tiny_model: Path) -> None:
    table = write_table(tmp_path / "c.jsonl", [{"text": t} for t in _texts(2)])
    result = run("tag", table, "-m", tiny_model, "--engine", "ray", "--json")
    assert result.exit_code == 1
    assert "needs an id column" in stderr_of(result)
