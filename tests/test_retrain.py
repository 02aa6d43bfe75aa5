"""Retraining on AO3 downloads (author tags, multiple-instance), answers files and span labels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ao3_fixtures import download_html, work_page_html, write_epub
from test_cli import all_text, assert_one_line_error, json_lines, run, stderr_of

from tropeml.io.readers import read_work
from tropeml.io.sources import LabelledWork, answer_record, load_answers
from tropeml.model.classifier import UNKNOWN
from tropeml.model.dataset import ANSWER, WORK
from tropeml.model.encoders import HashingEncoder
from tropeml.model.mil import mil_targets
from tropeml.model.persistence import model_lock
from tropeml.model.training import retrain


@pytest.fixture
def hashing_train(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tropeml.model.protocols.default_encoder", lambda: HashingEncoder(64))


@pytest.fixture
def ao3_folder(tmp_path: Path) -> Path:
    """Three AO3 downloads with author tags, and one plain fic without any."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / "one.html").write_text(download_html(["Rain", "Baking"]), encoding="utf-8")
    (folder / "two.htm").write_text(work_page_html(), encoding="utf-8")
    write_epub(folder / "three.epub", ["Alternate Universe - Rain", "Unknown Thing"])
    (folder / "plain.txt").write_text("Just a story with no tags at all.", encoding="utf-8")
    return folder


def train_args(tiny_root: Path, *more: Path) -> list[str | Path]:
    """``tropeml train`` on the tiny data folder and ``more`` data, run from ``tiny_root``."""
    args: list[str | Path] = ["train", "--data", tiny_root / "data"]
    for data in more:
        args += ["--data", data]
    return [*args, "--root", tiny_root]


def test_mil_targets_mark_the_best_passages_and_leave_the_rest_unknown() -> None:
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.4]])
    Y = mil_targets(scores, [0], top_k=1)
    assert Y.tolist() == [[UNKNOWN, UNKNOWN], [1, UNKNOWN], [UNKNOWN, UNKNOWN]]
    Y2 = mil_targets(scores, [0, 1], top_k=5)  # capped at the work's passages
    assert (Y2 == 1).all()


def test_train_on_a_folder_of_ao3_downloads(
    hashing_train: None, tiny_root: Path, ao3_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "models" / "mine"
    args = train_args(tiny_root, ao3_folder)
    result = run(*args, "--out", out)
    assert result.exit_code == 0, all_text(result)
    text = result.stdout
    assert "added 3 works with author tags, 0 answers; 1 works without" in text
    assert "held-out author-tagged works:" in text
    first = int(text.split("embedded ")[1].split()[0])
    assert first > 0

    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    added = config["training_data"]["added"]
    assert added["n_works"] == 3
    assert added["works_per_tag"] == {"rain": 3, "cake": 2}
    assert added["unmapped_author_tags"] == ["Slow Burn", "Soft Boys", "Unknown Thing"]
    assert added["works_without_author_tags"] == [str(ao3_folder / "plain.txt")]
    assert added["positive_rows"]["work"]["rain"] == 3
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "## Added data" in card and "3 works with author tags" in card
    assert "| `rain` | 3 |" in card and "## Author-tagged works, held out" in card

    tagged = run("tag", ao3_folder / "one.html", "--model", out, "--json")
    assert tagged.exit_code == 0, all_text(tagged)
    (obj,) = json_lines(tagged.stdout)
    assert obj["model"] == "mine" and set(obj["scores"]) == {"rain", "cake", "sword"}

    again = run(*args, "--out", tmp_path / "models" / "mine2", "--no-eval")
    assert again.exit_code == 0, all_text(again)
    assert "embedded 0 new texts" in again.stdout
    reused = int(again.stdout.split("reused ")[1].split()[0])
    assert reused >= first


def test_train_data_defaults_to_the_data_folder(
    hashing_train: None,
    tiny_root: Path,
    ao3_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tiny_root)
    result = run("train", "--data", ao3_folder, "--out", "models/extra", "--no-eval")
    assert result.exit_code == 0, all_text(result)
    config = json.loads((tiny_root / "models/extra/config.json").read_text(encoding="utf-8"))
    assert config["training_data"]["added"]["n_works"] == 3


def test_train_refuses_the_shipped_default(hashing_train: None, tiny_root: Path) -> None:
    default = tiny_root / "models" / "default"
    base = [*train_args(tiny_root), "--out", default]
    assert_one_line_error(run(*base), "refusing to overwrite the shipped default")
    assert not default.exists()
    result = run(*base, "--overwrite-default")
    assert result.exit_code == 0, all_text(result)
    assert (default / "config.json").is_file()


def test_answers_train_and_skips_are_unknown(
    hashing_train: None, tiny_root: Path, tmp_path: Path
) -> None:
    fic = tiny_root / "fics" / "one.txt"
    text = fic.read_text(encoding="utf-8")
    answers = tmp_path / "answers.jsonl"
    lines = [
        answer_record(str(fic), text, 0, 200, "rain", "yes"),
        answer_record(str(fic), text, 0, 200, "cake", "no"),
        answer_record(str(fic), text, 0, 200, "sword", "skip"),
        answer_record(str(fic), text, 300, 500, "cake", "yes"),
        answer_record(str(fic), text, 300, 500, "cake", "no"),  # a later answer wins
    ]
    answers.write_text("\n".join(lines) + "\n" + '{"file": "torn', encoding="utf-8")
    loaded = {a.key: a.answer for a in load_answers(answers)}
    assert loaded[(str(fic), 300, 500, "cake")] == "no" and len(loaded) == 4
    result = retrain(
        [tiny_root / "data", answers],
        root=tiny_root,
        out=None,
        encoder=HashingEncoder(64),
        cache=False,
        evaluate=False,
    )
    assert result.n_answers == 3
    rows = [i for i, k in enumerate(result.training_set.kinds) if k == ANSWER]
    Y = result.training_set.Y[rows]
    assert Y.tolist() == [[1, 0, UNKNOWN], [UNKNOWN, 0, UNKNOWN]]


def test_python_api_fits_on_labelled_works(tiny_root: Path, tmp_path: Path) -> None:
    path = tmp_path / "w.html"
    path.write_text(download_html([]), encoding="utf-8")
    work = read_work(path)
    result = retrain(
        data_dir=tiny_root / "data",
        root=tiny_root,
        out=tmp_path / "m",
        encoder=HashingEncoder(64),
        cache=False,
        works=[LabelledWork(work, ("rain", "cake"))],
    )
    kinds = result.training_set.kinds
    assert kinds.count(WORK) == 2  # one best passage per tag
    Y = result.training_set.Y[[k == WORK for k in kinds]]
    assert sorted(map(tuple, Y.tolist())) == [(UNKNOWN, 1, UNKNOWN), (1, UNKNOWN, UNKNOWN)]
    assert result.folder is not None
    assert (result.folder / "config.json").is_file()
    assert [c.tags for c in result.work_checks] == [["rain", "cake"]]


def test_answers_in_the_span_label_folder_are_refused(tiny_root: Path) -> None:
    from tropeml.core.errors import TropemlError

    fic = tiny_root / "fics" / "one.txt"
    text = fic.read_text(encoding="utf-8")
    stray = tiny_root / "data" / "labels" / "answers.jsonl"
    stray.write_text(answer_record("fics/one.txt", text, 0, 100, "rain", "yes") + "\n")
    with pytest.raises(TropemlError, match=r"answers\.jsonl:1: a `tropeml label` answer"):
        retrain(
            root=tiny_root,
            data_dir=tiny_root / "data",
            out=None,
            cache=False,
            encoder=HashingEncoder(64),
            evaluate=False,
        )


# --------------------------------------------------------------------------- issue 16, point 7


def _env() -> dict[str, str]:
    """The environment for a child process that must import this checkout's tropeml."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else ""),
            "PYTHONWARNINGS": "ignore"}  # fmt: skip


def test_retrain_twice_in_one_process(tiny_root: Path, ao3_folder: Path, tmp_path: Path) -> None:
    """The README calls ``tropeml.retrain`` twice; the second call once hit a module."""
    script = f"""
import tropeml
enc = tropeml.HashingEncoder(64)
kw = dict(encoder=enc, cache=False, evaluate=False)
data, downloads = {str(tiny_root / "data")!r}, {str(ao3_folder)!r}
first = tropeml.retrain([data, downloads], out={str(tmp_path / "a")!r}, **kw)
import tropeml.training  # the 0.1 module path, deprecated but importable
work = tropeml.read_work(downloads + "/one.html")
second = tropeml.retrain(
    data_dir=data, works=[tropeml.LabelledWork(work, ("rain",))], out={str(tmp_path / "b")!r}, **kw
)
third = tropeml.retrain([data], out=None, **kw)
print(callable(tropeml.retrain), len(first.works), len(second.works), third.folder)
"""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "3", "1", "None"]


def test_one_bad_fic_in_a_data_folder_is_skipped(
    tiny_root: Path, ao3_folder: Path, tmp_path: Path
) -> None:
    """A fic that cannot be read is left out with a warning line; the train goes on."""
    bad = ao3_folder / "broken.txt"
    bad.write_bytes(bytes(range(256)) * 8)
    result = retrain(
        [tiny_root / "data", ao3_folder],
        root=tiny_root,
        out=None,
        encoder=HashingEncoder(64),
        cache=False,
        evaluate=False,
    )
    assert len(result.works) == 3
    (skipped,) = result.skipped
    assert str(bad) in skipped and "binary" in skipped
    args = train_args(tiny_root, ao3_folder)
    cli = run(*args, "--out", tmp_path / "m", "--encoder", "hashing-64", "--no-cache", "--no-eval")
    assert cli.exit_code == 0, all_text(cli)
    warnings = [line for line in stderr_of(cli).splitlines() if line.startswith("tropeml:")]
    assert warnings == [f"tropeml: warning: skipped {skipped}"]
    assert "added 3 works with author tags" in cli.stdout


def test_retrain_from_outside_the_checkout(
    tiny_root: Path, ao3_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Label files' paths are read from the data folder's parent, not from the cwd."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = retrain(
        [tiny_root / "data", ao3_folder],
        out=tmp_path / "m",
        encoder=HashingEncoder(64),
        cache=False,
        evaluate=False,
    )
    assert len(result.works) == 3 and (tmp_path / "m" / "config.json").is_file()
    cli = run("train", "--data", tiny_root / "data", "--out", tmp_path / "m2",
              "--encoder", "hashing-64", "--no-cache", "--no-eval")  # fmt: skip
    assert cli.exit_code == 0, all_text(cli)
    assert list(elsewhere.iterdir()) == []


def test_train_with_answers_waits_for_a_held_lock(tiny_root: Path, tmp_path: Path) -> None:
    """Every train takes turns, also one with extra sources (``--data data --data FILE``)."""
    fic = tiny_root / "fics" / "one.txt"
    answers = tmp_path / "answers.jsonl"
    record = answer_record(str(fic), fic.read_text(encoding="utf-8"), 0, 200, "rain", "yes")
    answers.write_text(record + "\n", encoding="utf-8")
    out, log = tmp_path / "models" / "m", tmp_path / "stderr.txt"
    args = ["train", "--data", "data", "--data", answers, "--out", out]
    args += ["--encoder", "hashing-64", "--no-cache", "--no-eval"]
    with model_lock(out):  # another writer holds the folder
        proc = subprocess.Popen(
            [sys.executable, "-m", "tropeml", *map(str, args)],
            cwd=tiny_root,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
        )
        deadline = time.monotonic() + 120
        while "waiting" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        time.sleep(0.5)
        assert proc.poll() is None and not out.exists()  # it waits; it writes nothing
    assert proc.wait(timeout=300) == 0, log.read_text()
    (line,) = log.read_text().strip().splitlines()
    assert line.startswith(f"tropeml: {out}: another tropeml process is writing")
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["training_data"]["added"]["n_answers"] == 1


def test_mil_selection_never_sees_the_bag_it_chooses_for() -> None:
    """A bag's positives come from a model that never saw it, inside each held-out check too."""
    import numpy as np

    from tropeml.model.classifier import TropeClassifier
    from tropeml.model.dataset import WorkBag
    from tropeml.model.mil import Rows, fit_mil, work_checks

    owner: dict[int, str] = {}
    violations: list[str] = []

    class Spy(TropeClassifier):
        def fit(self, X, Y, groups=None, texts=None):  # type: ignore[no-untyped-def]
            self.trained_on_ = set(map(str, groups)) if groups is not None else set()
            return super().fit(X, Y, groups=groups, texts=texts)

        def predict_proba(self, X, texts=None):  # type: ignore[no-untyped-def]
            group = owner.get(id(X))
            if group is not None and group in self.trained_on_:
                violations.append(group)
            return super().predict_proba(X, texts)

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 8)).astype(np.float32)
    Y = np.zeros((60, 2), dtype=np.int8)
    Y[:20, 0] = 1
    Y[20:40, 1] = 1
    base = Rows(X, Y, [f"g{i % 6}" for i in range(60)], ["x"] * 60)
    bags = []
    for b in range(6):
        Xb = rng.normal(size=(5, 8)).astype(np.float32)
        bag = WorkBag(f"work{b}", Xb, ["x"] * 5, [b % 2])
        owner[id(Xb)] = bag.group
        bags.append(bag)
    _, selected = fit_mil(Spy(tags=["a", "b"]), base, bags, rounds=3)
    assert len(selected) == 6 and all((s == 1).sum() == 1 for s in selected)
    checks = work_checks(Spy(tags=["a", "b"]), base, bags, ["a", "b"], 2, limit=3)
    assert len(checks) == 3
    assert not violations, violations


def test_every_way_to_train_runs_the_one_training_function(
    hashing_train: None,
    tiny_root: Path,
    ao3_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`train`, `train --data fics/ --data answers.jsonl` and the API go through one `_train`."""
    import tropeml
    import tropeml.model.training as training

    calls: list[tuple[Path, list[str]]] = []
    real = training._train

    def spy(base: Path, root: Path, out: Path | None, sources: Any, o: Any) -> Any:
        kinds = [name for name in ("works", "answer_files") if getattr(sources, name)]
        calls.append((Path(base), kinds))
        return real(base, root, out, sources, o)

    monkeypatch.setattr(training, "_train", spy)
    fic = tiny_root / "fics" / "one.txt"
    answers = tmp_path / "answers.jsonl"
    text = fic.read_text(encoding="utf-8")
    answers.write_text(answer_record(str(fic), text, 0, 200, "rain", "yes") + "\n", "utf-8")
    data = [*train_args(tiny_root), "--no-eval", "--name", "m"]
    plain = run(*data, "--out", tmp_path / "a")
    assert plain.exit_code == 0, all_text(plain)
    extra = run(*data, "--data", ao3_folder, "--data", answers, "--out", tmp_path / "b")
    assert extra.exit_code == 0, all_text(extra)
    tropeml.retrain([tiny_root / "data", answers], root=tiny_root, out=None, evaluate=False)
    tropeml.train(tiny_root / "data", root=tiny_root, out=None, evaluate=False)
    assert [kinds for _, kinds in calls] == [[], ["works", "answer_files"], ["answer_files"], []]
    assert {base for base, _ in calls} == {tiny_root / "data"}
    # The same inputs give the same folder, byte for byte, whichever way they came in.
    again = run(*data, "--out", tmp_path / "c")
    assert again.exit_code == 0, all_text(again)
    for path in sorted(p for p in (tmp_path / "a").rglob("*") if p.is_file()):
        twin = tmp_path / "c" / path.relative_to(tmp_path / "a")
        assert twin.read_bytes() == path.read_bytes(), path.name
