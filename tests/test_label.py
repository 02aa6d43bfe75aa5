"""`tropeml label`: questions, answers appended at once, resume after a kill, --retrain.

The pseudo-terminal tests run the real command in a child process (pexpect) with the tiny
hashing model, type answers, kill the child mid-session and start it again.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from ao3_fixtures import download_html
from test_cli import all_text, run

from tropeml.serve.audit import score_work
from tropeml.serve.labelling import Question, questions_for, run_session
from tropeml.serve.tagger import load

pexpect = pytest.importorskip("pexpect")
PROMPT = r"\[y\]es/\[n\]o/\[s\]kip/\[q\]uit: "
AUTHOR_TAGS = ["Rain", "Swordfights"]


@pytest.fixture
def work_file(tmp_path: Path) -> Path:
    path = tmp_path / "work.html"
    path.write_text(download_html(AUTHOR_TAGS), encoding="utf-8")
    return path


def rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln]


def spawn(tiny_model: Path, work_file: Path, answers: Path, cache: Path) -> Any:
    """Start ``tropeml label`` on a pseudo-terminal; a ``pexpect.spawn`` (pexpect is untyped)."""
    env = {**os.environ, "TROPEML_CACHE_DIR": str(cache), "COLUMNS": "100"}
    args = ["-m", "tropeml", "label", str(work_file), "--model", str(tiny_model)]
    args += ["--answers", str(answers), "--limit", "5"]
    return pexpect.spawn(sys.executable, args, env=env, encoding="utf-8", timeout=60)


def test_questions_put_disagreements_first(tiny_model: Path, work_file: Path) -> None:
    from tropeml.io.readers import read_work

    tagger = load(tiny_model, cache=False)
    scored = score_work(tagger, read_work(work_file))
    qs = questions_for(tagger, scored, str(work_file), limit=6)
    assert 0 < len(qs) <= 6
    assert len({q.key for q in qs}) == len(qs)
    over = {t.id for t in scored.result.tags}
    disagreements = {t for t in ("rain", "sword") if t not in over} | (over - {"rain", "sword"})
    firsts = [q.tag for q in qs[: len(disagreements)]]
    assert set(firsts) == disagreements
    assert all("unsure" in q.reason for q in qs[len(disagreements) :])
    for q in qs:
        assert q.text[q.passage.start : q.passage.end] == q.passage.text


def test_run_session_appends_each_answer_and_skips_answered(
    tiny_model: Path, work_file: Path, tmp_path: Path
) -> None:
    from tropeml.io.readers import read_work

    tagger = load(tiny_model, cache=False)
    qs = questions_for(tagger, score_work(tagger, read_work(work_file)), str(work_file), 4)
    answers = tmp_path / "a.jsonl"
    seen: list[Question] = []

    def ask(q: Question, n: int) -> str:
        seen.append(q)
        assert len(rows(answers) if answers.exists() else []) == len(seen) - 1
        return "quit" if len(seen) == 3 else "yes"

    stats = run_session(qs, answers, ask)
    assert (stats.answered, stats.quit) == (2, True)
    stats2 = run_session(qs, answers, lambda q, n: "no")
    assert (stats2.already, stats2.answered) == (2, len(qs) - 2)
    assert [r["answer"] for r in rows(answers)] == ["yes", "yes"] + ["no"] * (len(qs) - 2)


def test_label_in_a_terminal_survives_a_kill(
    tiny_model: Path, work_file: Path, tmp_path: Path
) -> None:
    answers, cache = tmp_path / "answers.jsonl", tmp_path / "cache"
    child = spawn(tiny_model, work_file, answers, cache)
    child.expect("0 already answered")
    child.expect(PROMPT)
    child.sendline("y")
    child.expect(PROMPT)
    assert [r["answer"] for r in rows(answers)] == ["yes"]  # on disk before the next question
    child.sendline("maybe")
    child.expect("please answer y, n, s or q")
    child.expect(PROMPT)  # asked again
    child.sendline("n")
    child.expect(PROMPT)
    first = rows(answers)
    assert [r["answer"] for r in first] == ["yes", "no"]
    child.kill(signal.SIGKILL)  # mid-question: no chance to clean up
    child.wait()

    child = spawn(tiny_model, work_file, answers, cache)
    child.expect("2 already answered")
    asked = 0
    while child.expect([PROMPT, pexpect.EOF]) == 0:
        child.sendline("s")
        asked += 1
    child.close()
    assert child.exitstatus == 0
    after = rows(answers)
    assert after[:2] == first
    assert len(after) == 2 + asked and asked >= 1
    keys = [(r["file"], r["start"], r["end"], r["tag"]) for r in after]
    assert len(set(keys)) == len(keys)  # nothing asked twice

    child = spawn(tiny_model, work_file, answers, cache)
    child.expect("0 to go")
    child.expect(pexpect.EOF)


def test_label_quit_and_retrain(tiny_model: Path, tiny_root: Path, tmp_path: Path) -> None:
    work_file = tmp_path / "w.html"
    work_file.write_text(download_html(AUTHOR_TAGS), encoding="utf-8")
    answers, out = tmp_path / "answers.jsonl", tmp_path / "relabelled"
    args: list[str | Path] = [
        "label",
        work_file,
        "--model",
        tiny_model,
        "--answers",
        answers,
        "--limit",
        "3",
    ]
    quit_early = run(*args, input="y\nq\n")
    assert quit_early.exit_code == 0, all_text(quit_early)
    assert "saved 1 answers" in quit_early.stdout and len(rows(answers)) == 1
    more: list[str | Path] = [
        "--retrain",
        "--data",
        tiny_root / "data",
        "--root",
        tiny_root,
        "--out",
        out,
    ]
    result = run(*args, *more, input="n\ny\n")
    assert result.exit_code == 0, all_text(result)
    assert "1 already answered" in result.stdout
    assert "retrained with 3 answers and 1 works with author tags" in result.stdout
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["training_data"]["added"]["n_answers"] == 3


def test_label_refuses_stdin_as_a_fic(tiny_model: Path) -> None:
    from test_cli import assert_one_line_error

    assert_one_line_error(run("label", "-", "--model", tiny_model), "give files, not -")
