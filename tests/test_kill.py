"""Nothing lost: ``tropeml train`` killed with SIGKILL at random moments, and concurrent trains.

A model folder is written beside the old one and swapped in whole, under a lock, so after a
kill the folder is byte-identical to the previous model or to the complete new one, never a
mix, and the SQLite embedding cache stays intact. Trains run as real processes with the
hashing encoder on the tiny data.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_tiny_data

from tropeml.model.persistence import load_model, lock_path, model_lock

KILLS = 20


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes); empty if there is no folder."""
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


class Trainer:
    """Runs ``tropeml train`` on a tiny data folder as a separate process."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp
        self.data = write_tiny_data(tmp)
        self.cache = tmp / "cache"
        self.env = {**os.environ, "TROPEML_CACHE_DIR": str(self.cache), "PYTHONWARNINGS": "ignore"}

    def start(self, out: Path, stderr: Path | None = None) -> subprocess.Popen[bytes]:
        args = ["train", "--data", self.data, "--root", self.root, "--out", out]
        args += ["--encoder", "hashing-64", "--name", "m"]
        return subprocess.Popen(
            [sys.executable, "-m", "tropeml", *map(str, args)],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=stderr.open("wb") if stderr else subprocess.DEVNULL,
        )

    def run(self, out: Path) -> float:
        """Train to completion; return the wall time."""
        t0 = time.monotonic()
        assert self.start(out).wait(timeout=300) == 0
        return time.monotonic() - t0

    def add_exemplar(self) -> None:
        """Change the data so the next model differs from the last one."""
        path = self.data / "exemplars" / "a.jsonl"
        row = '{"id": "new-1", "text": "Thunder, rain and a soaked umbrella.", "tags": ["rain"]}'
        with path.open("a", encoding="utf-8") as fh:
            fh.write(row + "\n")

    def check_cache(self) -> int:
        """The cache passes SQLite's integrity check and every vector decodes; return rows."""
        con = sqlite3.connect(self.cache / "embeddings.sqlite3")
        try:
            assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            rows = con.execute("SELECT dim, vector FROM embeddings").fetchall()
        finally:
            con.close()
        for dim, blob in rows:
            assert np.frombuffer(blob, dtype="<f4").shape == (dim,)
        return len(rows)

    def empty_cache(self) -> None:
        con = sqlite3.connect(self.cache / "embeddings.sqlite3")
        with con:
            con.execute("DELETE FROM embeddings")
        con.close()


@pytest.mark.slow
def test_sigkill_during_train_never_loses_the_previous_model(tmp_path: Path) -> None:
    trainer = Trainer(tmp_path)
    out, reference = tmp_path / "models" / "m", tmp_path / "reference" / "m"
    trainer.run(out)
    old = snapshot(out)
    kept = tmp_path / "kept"
    shutil.copytree(out, kept)
    trainer.add_exemplar()
    duration = trainer.run(reference)  # the complete new model, for comparison
    new = snapshot(reference)
    assert new != old and new.keys() == old.keys()

    rng = random.Random(20261122)
    outcomes = {"old": 0, "new": 0, "killed": 0}
    for i in range(KILLS):
        if i % 4 == 0:
            trainer.empty_cache()  # so the killed run writes embeddings too
        # half the kills anywhere in the run, half near its end, where the folder is swapped
        at = rng.uniform(0, duration) if i % 2 else rng.uniform(0.85, 1.1) * duration
        proc = trainer.start(out)
        time.sleep(at)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        outcomes["killed"] += proc.returncode == -signal.SIGKILL
        if proc.returncode == 0:  # this run beat the reference: aim the next kills earlier
            duration *= 0.85
        now = snapshot(out)
        assert now in (old, new), f"kill {i} at {at:.2f}s left a mixed model folder"
        outcomes["old" if now == old else "new"] += 1
        load_model(out)
        trainer.check_cache()
        if now == new:  # put the previous model back for the next kill
            shutil.rmtree(out)
            shutil.copytree(kept, out)
    print(f"\n{KILLS} kills over a {duration:.1f}s train: {outcomes}")
    assert outcomes["killed"] >= KILLS // 2  # most kills landed mid-run
    assert outcomes["old"] >= 1

    trainer.run(out)  # a later train completes and clears what the kills left behind
    assert snapshot(out) == new
    assert trainer.check_cache() > 0
    leftovers = [p.name for p in out.parent.iterdir() if p.name != "m"]
    assert leftovers == [lock_path(out).name]


def test_concurrent_train_waits_for_the_lock_and_says_so(tmp_path: Path) -> None:
    trainer = Trainer(tmp_path)
    out, log = tmp_path / "models" / "m", tmp_path / "stderr.txt"
    with model_lock(out):  # another writer holds the folder
        proc = trainer.start(out, stderr=log)
        deadline = time.monotonic() + 120
        while "waiting" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        time.sleep(0.5)
        assert proc.poll() is None and not out.exists()  # it waits; it writes nothing
    assert proc.wait(timeout=300) == 0, log.read_text()
    (line,) = log.read_text().strip().splitlines()
    assert line.startswith(f"tropeml: {out}: another tropeml process is writing")
    assert "waiting for it to finish" in line
    load_model(out)


@pytest.mark.slow
def test_two_trains_into_one_folder_both_finish(tmp_path: Path) -> None:
    trainer = Trainer(tmp_path)
    out = tmp_path / "models" / "m"
    procs = [trainer.start(out, stderr=tmp_path / f"err{i}.txt") for i in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    load_model(out)
    assert sorted(p.name for p in out.parent.iterdir()) == [lock_path(out).name, "m"]


def test_lock_timeout_is_a_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "m"
    script = (
        f"from tropeml.model.persistence import model_lock\nwith model_lock({str(out)!r}, 0): pass"
    )
    with model_lock(out):
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=False
        )
    assert proc.returncode == 1
    assert "another tropeml process is writing this model folder" in proc.stderr
