"""The labelling loop behind ``tropeml label``: ask about the passages that teach the most.

For each work, the questions are, in this order:

1. where the model disagrees with the author's tags (works with author tags): an author tag
   the model does not find (asked on its best passage), and a tag the model finds that the
   author did not write (asked on its strongest evidence);
2. the passages and tags the model is least sure about (score closest to the threshold).

Each answer (yes / no / skip) is appended to the answers file at once and fsynced (see
:func:`tropeml.core.fileio.append_line`), so quitting or being killed at any moment loses no answer,
and a new session skips every question already answered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tropeml.core.fileio import append_line
from tropeml.core.types import Passage
from tropeml.io.author_tags import map_author_tags
from tropeml.io.sources import answer_record, load_answers
from tropeml.serve.audit import ScoredWork

if TYPE_CHECKING:
    from tropeml.serve.tagger import Tagger

QUIT = "quit"
REPLIES = {"y": "yes", "yes": "yes", "n": "no", "no": "no", "s": "skip", "skip": "skip"}
REPLIES |= {"q": QUIT, "quit": QUIT}


@dataclass(frozen=True)
class Question:
    """Does ``passage`` (of the work read from ``file``) show ``tag``?"""

    file: str
    text: str
    passage: Passage
    tag: str
    name: str
    definition: str
    score: float
    threshold: float
    reason: str

    @property
    def key(self) -> tuple[str, int, int, str]:
        """Identify the question (file, span, tag), as answers are keyed."""
        return (self.file, self.passage.start, self.passage.end, self.tag)


def questions_for(tagger: Tagger, scored: ScoredWork, file: str, limit: int = 10) -> list[Question]:
    """The questions for one scored work, most useful first (at most ``limit``).

    Args:
        tagger: The model whose doubts are asked about.
        scored: The work, scored (see :func:`tropeml.serve.audit.score_work`).
        file: The work's path, as answers record it.
        limit: Most questions for this work.
    """
    if not scored.passages:
        return []
    tags = tagger.tags
    th = np.asarray(tagger.thresholds, dtype=np.float64)
    P = scored.scores
    out: list[Question] = []

    def ask(i: int, j: int, reason: str) -> None:
        trope = tagger.taxonomy.get(tags[j])
        out.append(
            Question(
                file,
                scored.work.text,
                scored.passages[i],
                tags[j],
                trope.name if trope else tags[j],
                trope.definition if trope else "",
                float(P[i, j]),
                float(th[j]),
                reason,
            )
        )

    written = map_author_tags(scored.work.author_tags, tagger.taxonomy).ids
    if written:
        over = {t.id for t in scored.result.tags}
        for j, tag in enumerate(tags):
            i = int(np.argmax(P[:, j]))
            if tag in written and tag not in over:
                ask(i, j, f"the author tagged {written[tag][0]!r}; the model does not find it")
            elif tag in over and tag not in written:
                ask(i, j, "the model finds it here; the author did not tag it")
    margin = np.abs(P - th[None, :])
    for flat in np.argsort(margin, axis=None, kind="stable"):
        i, j = divmod(int(flat), len(tags))
        ask(i, j, f"the model is unsure: {P[i, j]:.2f} against a threshold of {th[j]:.2f}")
        if len(out) >= 3 * limit:
            break
    seen: set[tuple[str, int, int, str]] = set()
    unique = []
    for q in out:
        if q.key not in seen:
            seen.add(q.key)
            unique.append(q)
    return unique[:limit]


def answered_keys(answers: str | Path) -> set[tuple[str, int, int, str]]:
    """Return the questions already answered in an answers file (yes, no or skip)."""
    return {a.key for a in load_answers(answers, check=False)}


@dataclass
class SessionStats:
    """What a labelling session did."""

    asked: int = 0
    answered: int = 0
    already: int = 0
    quit: bool = False


def run_session(
    questions: Iterable[Question],
    answers: str | Path,
    ask: Callable[[Question, int], str],
) -> SessionStats:
    """Ask each question not yet answered in ``answers``; append each answer at once.

    Args:
        questions: The questions, in order.
        answers: The answers file (JSONL, appended to).
        ask: Shows a question (with its number) and returns ``"yes"``, ``"no"``, ``"skip"``
            or ``"quit"``.
    """
    done = answered_keys(answers)
    stats = SessionStats()
    for q in questions:
        if q.key in done:
            stats.already += 1
            continue
        stats.asked += 1
        reply = ask(q, stats.asked)
        if reply == QUIT:
            stats.quit = True
            break
        append_line(
            answers,
            answer_record(q.file, q.text, q.passage.start, q.passage.end, q.tag, reply),
        )
        done.add(q.key)
        stats.answered += 1
    return stats
