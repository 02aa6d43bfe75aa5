"""Evaluate a model as it is served on the real-prose dev set (``tropeml eval --protocol dev``).

Passage level: each judged passage is tagged like a tiny work (its chunks' best score), and
average precision is computed per tag over the passages judged for it. Work level: each
judged work is tagged exactly as ``tropeml tag`` tags it, and per tag we count precision,
recall and the false-tag rate (the share of works judged not to show the tag that get it),
plus the tags per work a reader sees. Public-domain text and text written for the project
are reported apart.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tropeml.io.devset import CORE_TAGS, REQUIRED_TAGS, DevItem
from tropeml.serve.tagger import Tagger


@dataclass
class Scored:
    """A dev item with its passage scores, as the tagger computed them.

    Attributes:
        item: The judged record.
        scores: Passage scores, shape ``(n, T)`` (the tagger's tag order).
        lengths: Passage lengths in characters, shape ``(n,)``.
        fired: Tag ids the tagger gives the work.
        work_scores: The work score of every tag, as the tagger reports it.
    """

    item: DevItem
    scores: NDArray[np.float64]
    lengths: NDArray[np.float64]
    fired: frozenset[str] = frozenset()
    work_scores: dict[str, float] = field(default_factory=dict)


def score_items(tagger: Tagger, items: Sequence[DevItem], batch: int = 8) -> list[Scored]:
    """Tag each item (``batch`` works per encoder call) and keep its passage scores."""
    out: list[Scored] = []
    for at in range(0, len(items), batch):
        chunk = items[at : at + batch]
        works = [i.work for i in chunk]
        passages = [tagger.passages(w) for w in works]
        texts = [tagger.texts(ps, w) for w, ps in zip(works, passages, strict=True)]
        X = tagger.embed_texts([t for ts in texts for t in ts])
        pos = 0
        for item, work, ps, ts in zip(chunk, works, passages, texts, strict=True):
            X_w = X[pos : pos + len(ps)]
            pos += len(ps)
            result = tagger.tag_embedded(work, ps, X_w, item.id, ts)
            out.append(
                Scored(
                    item,
                    tagger.score_passages(work, ps, X_w, ts),
                    np.array([p.end - p.start for p in ps], dtype=np.float64),
                    frozenset(t.id for t in result.tags),
                    dict(result.scores),
                )
            )
    tagger._flush()
    return out


def _ap(y: NDArray[np.int_], s: NDArray[np.float64]) -> float | None:
    if y.sum() == 0 or y.sum() == len(y):
        return None
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, s))


def passage_table(scored: Sequence[Scored], tags: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per required tag: AP over the passages judged for it, with positive/negative counts."""
    col = {t: j for j, t in enumerate(tags)}
    out: dict[str, dict[str, Any]] = {}
    for tag in REQUIRED_TAGS:
        rows = [s for s in scored if s.item.judgments[tag] != -1 and len(s.scores)]
        y = np.array([s.item.judgments[tag] for s in rows], dtype=int)
        best = np.array([s.scores[:, col[tag]].max() for s in rows]) if tag in col else None
        out[tag] = {
            "ap": None if best is None else _ap(y, best),
            "positives": int(y.sum()),
            "negatives": int(len(y) - y.sum()),
        }
    return out


def work_table(scored: Sequence[Scored]) -> dict[str, dict[str, Any]]:
    """Per tag: precision, recall and false-tag rate over the works judged for it.

    Every required tag, then any other tag some of the works judge (counted on those works).
    """
    out: dict[str, dict[str, Any]] = {}
    extra = dict.fromkeys(t for s in scored for t in s.item.judgments if t not in REQUIRED_TAGS)
    for tag in (*REQUIRED_TAGS, *extra):
        judged = [(s.item.judgments.get(tag, -1), tag in s.fired) for s in scored]
        tp = sum(1 for j, f in judged if j == 1 and f)
        fp = sum(1 for j, f in judged if j == 0 and f)
        pos = sum(1 for j, _ in judged if j == 1)
        neg = sum(1 for j, _ in judged if j == 0)
        out[tag] = {
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / pos if pos else None,
            "false_tag_rate": fp / neg if neg else None,
            "positives": pos,
            "negatives": neg,
        }
    return out


BANDS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
"""Bands of work score for :func:`score_reliability`."""


def score_reliability(scored: Sequence[Scored]) -> dict[str, Any]:
    """Whether the work scores mean what they say, over the judged required-tag pairs.

    Returns:
        ``pairs``, ``brier`` (mean squared gap between score and judgment), ``base_rate``
        (the share of pairs showing the tag), ``base_brier`` (the Brier score of always
        saying the base rate) and ``bands``: per band of score, its pairs, their mean score
        and the share showing the tag. ``None`` values where no pair was judged.
    """
    pairs = [
        (s.work_scores[t], s.item.judgments[t])
        for s in scored
        for t in REQUIRED_TAGS
        if s.item.judgments[t] >= 0 and t in s.work_scores
    ]
    if not pairs:
        return {"pairs": 0, "brier": None, "base_rate": None, "base_brier": None, "bands": []}
    p, y = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs], dtype=np.float64)
    bands = []
    for lo, hi in itertools.pairwise(BANDS):
        m = (p >= lo) & ((p < hi) if hi < 1 else (p <= hi))
        if m.any():
            bands.append(
                {
                    "band": [lo, hi],
                    "pairs": int(m.sum()),
                    "mean_score": float(p[m].mean()),
                    "shown": float(y[m].mean()),
                }
            )
    base = float(y.mean())
    return {
        "pairs": len(pairs),
        "brier": float(np.mean((p - y) ** 2)),
        "base_rate": base,
        "base_brier": float(np.mean((base - y) ** 2)),
        "bands": bands,
    }


def work_summary(scored: Sequence[Scored]) -> dict[str, Any]:
    """Tags per work (all tags a reader sees), recall of the tags works show, and scores.

    ``scores`` says how well the work scores are calibrated (:func:`score_reliability`).
    """
    per_work = [len(s.fired) for s in scored]
    shown = [(t, s) for s in scored for t in REQUIRED_TAGS if s.item.judgments[t] == 1]
    return {
        "works": len(scored),
        "median_tags_per_work": float(np.median(per_work)) if per_work else None,
        "mean_tags_per_work": float(np.mean(per_work)) if per_work else None,
        "recall_of_shown_tags": (
            sum(1 for t, s in shown if t in s.fired) / len(shown) if shown else None
        ),
        "scores": score_reliability(scored),
    }


@dataclass
class DevReport:
    """The dev-set evaluation of one model (see the module docstring)."""

    model: str
    backend: str
    passages: dict[str, dict[str, Any]]
    works: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    summary: dict[str, dict[str, Any]] = field(default_factory=dict)

    def core_ap(self) -> float | None:
        """Mean passage AP over the core tropes that have one."""
        aps = [self.passages[t]["ap"] for t in CORE_TAGS if self.passages[t]["ap"] is not None]
        return float(np.mean(aps)) if aps else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "model": self.model,
            "backend": self.backend,
            "core_passage_ap": self.core_ap(),
            "passages": self.passages,
            "works": self.works,
            "summary": self.summary,
        }

    def to_markdown(self) -> str:
        """Tables: passage AP per tag; work-level metrics per tag and per kind of text."""
        f = _fmt
        lines: list[str] = []
        if any(r["positives"] or r["negatives"] for r in self.passages.values()):
            lines += [
                f"Passage level ({sum(1 for _ in self.passages)} required tags, public-domain "
                f"passages); core-trope mean AP {f(self.core_ap())}.",
                "",
                "| tag | AP | positives | negatives |",
                "|---|---:|---:|---:|",
            ]
            lines += [
                f"| `{t}` | {f(r['ap'])} | {r['positives']} | {r['negatives']} |"
                for t, r in self.passages.items()
            ]
        for kind, table in self.works.items():
            s = self.summary[kind]
            lines += [""] if lines else []
            lines += [
                f"Work level, {kind} ({s['works']} works): median tags per work "
                f"{f(s['median_tags_per_work'], 1)}, recall of the tags works show "
                f"{f(s['recall_of_shown_tags'])}.",
                "",
                "| tag | precision | recall | false-tag rate | shows | doesn't |",
                "|---|---:|---:|---:|---:|---:|",
            ]
            lines += [
                f"| `{t}` | {f(r['precision'])} | {f(r['recall'])} | "
                f"{f(r['false_tag_rate'])} | {r['positives']} | {r['negatives']} |"
                for t, r in table.items()
            ]
            extra = [f"`{t}`" for t in table if t not in REQUIRED_TAGS]
            if extra:
                lines += [
                    "",
                    f"{', '.join(extra)}: beyond the required tags, counted on the works judged "
                    "for them (shows + doesn't) and left out of the recall of shown tags and of "
                    "the score lines.",
                ]
            lines += _reliability_lines(s["scores"])
        return "\n".join(lines) + "\n"


def _reliability_lines(rel: dict[str, Any]) -> list[str]:
    """Markdown lines for :func:`score_reliability`'s result (none without judged pairs)."""
    if not rel["pairs"]:
        return []
    f = _fmt
    lines = [
        "",
        f"Work scores on the {rel['pairs']} judged (work, tag) pairs: Brier score "
        f"{f(rel['brier'], 3)} (always saying the base rate {f(rel['base_rate'])}: "
        f"{f(rel['base_brier'], 3)}).",
        "",
        "| score | pairs | mean score | share that show the tag |",
        "|---|---:|---:|---:|",
    ]
    return lines + [
        f"| {b['band'][0]:.1f}-{b['band'][1]:.1f} | {b['pairs']} | {f(b['mean_score'])} "
        f"| {f(b['shown'])} |"
        for b in rel["bands"]
    ]


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def dev_report(
    tagger: Tagger,
    passages: Sequence[DevItem],
    works: Sequence[DevItem],
    backend: str = "",
) -> tuple[DevReport, list[Scored], list[Scored]]:
    """Score the dev passages and works with ``tagger`` and build the report."""
    sp = score_items(tagger, passages, batch=64)
    sw = score_items(tagger, works)
    kinds = {"public-domain": [s for s in sw if s.item.kind == "pd"]}
    kinds["written for the project"] = [s for s in sw if s.item.kind == "written"]
    kinds["all"] = list(sw)
    report = DevReport(
        tagger.name,
        backend,
        passage_table(sp, tagger.tags),
        {k: work_table(v) for k, v in kinds.items() if v},
        {k: work_summary(v) for k, v in kinds.items() if v},
    )
    return report, sp, sw
