"""Load: tagging a 50 MB corpus stays under 1 GiB of peak memory.

``tropeml tag`` runs as its own process on a folder of 50 MB of text (one 45 MB work, the
worst case for memory, and five 1 MB works) with the hashing encoder. Its peak resident set
size is the kernel's ``VmHWM`` for that process's own address space, read at exit. (Not
``wait4``'s ``ru_maxrss``: the child starts as a vfork of this test process, and Linux
carries the parent's high-water mark across the exec, so a test suite that has loaded torch
would be measured, not tropeml.) Before name finding stopped listing every word of a work,
the 45 MB work alone peaked near 1.1 GiB; before the lexical view vectorised a block of
passages at a time, 1.5 GiB.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from conftest import make_passage

LIMIT_KIB = 1024 * 1024  # 1 GiB (VmHWM is in kB)
# Runs the CLI and, at exit, writes the process's own peak RSS (kB) to the file in argv[1].
PEAK_AT_EXIT = """
import atexit, sys
peak_file = sys.argv.pop(1)

def _peak():
    status = open("/proc/self/status").read()
    hwm = status.split("VmHWM:")[1].split()[0]
    open(peak_file, "w").write(hwm)

atexit.register(_peak)
from tropeml.cli.app import main
sys.argv[0] = "tropeml"
main()
"""
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
    out, err, peak = tmp_path / "out.jsonl", tmp_path / "err.txt", tmp_path / "peak.txt"
    command = [sys.executable, "-c", PEAK_AT_EXIT, str(peak), "tag", str(corpus)]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.run(
            [*command, "--model", str(tiny_model), "--json", "--no-cache"],
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
            check=False,
        )
    assert proc.returncode == 0, err.read_text()
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(Path(r["source"]).name for r in results) == sorted(
        p.name for p in corpus.iterdir()
    )
    assert all(r["n_passages"] > 0 for r in results)
    peak_kib = int(peak.read_text())
    print(f"\npeak RSS tagging 50 MB: {peak_kib / 1024:.0f} MiB")
    assert 0 < peak_kib < LIMIT_KIB, f"peak {peak_kib / 1024:.0f} MiB"
