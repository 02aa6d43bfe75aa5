"""Load: tagging a 50 MB corpus stays under 1 GiB of peak memory.

``tropeml tag`` runs as its own process on a folder of 50 MB of text (one 45 MB work, the
worst case for memory, and five 1 MB works) with the hashing encoder; its peak resident set
size comes from ``os.wait4``, the kernel's accounting for exactly that process. (Before name
finding stopped listing every word of a work, the 45 MB work alone peaked near 1.1 GiB.)
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from conftest import make_passage

LIMIT_KIB = 1024 * 1024  # 1 GiB (ru_maxrss is in KiB on Linux)
MB = 1_000_000


def write_corpus(folder: Path) -> int:
    """Write one 45 MB work and five 1 MB works of tiny-taxonomy text; return the bytes."""
    rng = random.Random(0)
    tags = ["rain", "cake", "sword"]
    paragraphs = [
        make_passage(rng, rng.sample(tags, rng.randint(0, 2)), rng.randint(20, 120))
        for _ in range(400)
    ]
    scene = "\n\n".join(paragraphs) + "\n\n* * *\n\n"
    folder.mkdir()
    sizes = {"big.txt": 45 * MB, **{f"small-{i}.txt": MB for i in range(5)}}
    for name, size in sizes.items():
        text = (scene * (size // len(scene) + 1))[:size]
        (folder / name).write_text(text, encoding="ascii")
    return sum(sizes.values())


def test_tagging_50mb_stays_under_1gib(tiny_model: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    assert write_corpus(corpus) == 50 * MB
    out, err = tmp_path / "out.jsonl", tmp_path / "err.txt"
    command = [sys.executable, "-m", "tropeml", "tag", str(corpus), "--model", str(tiny_model)]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [*command, "--json", "--no-cache"],
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, err.read_text()
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(Path(r["source"]).name for r in results) == sorted(
        p.name for p in corpus.iterdir()
    )
    assert all(r["n_passages"] > 0 for r in results)
    print(f"\npeak RSS tagging 50 MB: {usage.ru_maxrss / 1024:.0f} MiB")
    assert usage.ru_maxrss < LIMIT_KIB, f"peak {usage.ru_maxrss / 1024:.0f} MiB"
