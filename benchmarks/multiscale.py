"""Multi-scale passage scores: each window scored also as short chunks, on the dev set.

The question: does scoring each encoder window a second time, as chunks of about
``--tokens`` tokens cut at sentence boundaries (``tropeml.text.passages.split_passages``),
and averaging the two scales, rank passages better, and does it decide works better?

- **Passage level** (every chunk size given): AP per required tag of each dev passage's
  best window, scored as the window (what ships), as its chunks alone (their mean; their
  best), and as the window averaged with the mean of its chunks or of its two best; core
  AP (hurt_comfort, fake_death, reunion, soulmates) with the paired 95% bootstrap CI over
  books of the window + chunk mean rule minus the window (``quality.py``'s resampling).
- **Work level** (the first chunk size; skipped with ``--passages-only``): passage
  probability = (1 - w) x window + w x chunk mean, for each weight ``w``. The background
  null is refitted on the same mix, alphas are chosen on the dev works by ``tropeml
  tune``'s rule, and the table gives the pooled recall and false-tag rate in-sample and
  held out (``alpha.py``'s 100 split halves), the mean work-level AP over the required
  tags (evidence in decades as the ranking), and on the fresh works of ``data/confirm``
  (which choose nothing) the shown tags found and the false tags, at the dev alphas.

Usage::

    .venv/bin/python benchmarks/multiscale.py                 # shipped model, ~12 min
    .venv/bin/python benchmarks/multiscale.py --model DIR --passages-only --out FILE
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alpha import held_out, rates  # the work-rule benchmark's split halves
from quality import SEED_VALUE, ap_fast, boot_samples, git, passage_eval

from tropeml.io.devset import REQUIRED_TAGS, DevItem, load_dev_passages, load_dev_works
from tropeml.model.dataset import background_rows
from tropeml.model.decision import fit_null, log_chance
from tropeml.serve.tagger import Tagger, load
from tropeml.serve.targets import judged
from tropeml.serve.tuning import choose, work_evidence
from tropeml.text.passages import count_words, split_passages

Array = NDArray[np.float64]
OUT = Path(__file__).resolve().parent / "results" / "multiscale.md"
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
REPS = 1000
PASSAGE_TAGS = [t for t in REQUIRED_TAGS if t not in ("mates", "alpha_beta_omega")]
"""The eight tags the dev passages are judged for (no public-domain passage shows the AU tags)."""


class Scales:
    """Scores each window as a whole and as its sentence chunks, with one tagger."""

    def __init__(self, tagger: Tagger, tokens: int) -> None:
        self.tagger = tagger
        self.tokens = tokens
        self.count = getattr(tagger.encoder, "count_tokens", count_words)
        self.chunks = 0  # chunks scored so far

    def proba(self, texts: Sequence[str]) -> Array:
        """The head's passage probabilities for ``texts``, shape ``(n, T)``."""
        clf = self.tagger.classifier
        X = self.tagger.embed_texts(list(texts))
        return np.asarray(clf.predict_proba(X, list(texts) if clf.uses_texts else None))

    def score(self, texts: Sequence[str]) -> tuple[Array, Array, Array]:
        """``(window, chunk mean, mean of the two best chunks)``, each shape ``(n, T)``."""
        window = self.proba(texts)
        chunks: list[str] = []
        owner: list[int] = []
        for i, text in enumerate(texts):
            parts = [p.text for p in split_passages(text, self.count, self.tokens)] or [text]
            chunks += parts
            owner += [i] * len(parts)
        P = self.proba(chunks)
        self.chunks += len(chunks)
        own = np.asarray(owner)
        mean = np.zeros_like(window)
        np.add.at(mean, own, P)
        mean /= np.bincount(own, minlength=len(texts))[:, None]
        top2 = np.zeros_like(window)
        for i in range(len(texts)):
            rows = -np.sort(-P[own == i], axis=0)
            top2[i] = rows[:2].mean(axis=0)
        return window, mean, top2

    def items(self, items: Sequence[DevItem]) -> list[tuple[Array, Array, Array]]:
        """:meth:`score` of each item's windows, as the tagger splits and masks them."""
        out = []
        for it in items:
            texts = self.tagger.texts(self.tagger.passages(it.work), it.work)
            out.append(self.score(texts))
        return out


def passage_rules(s: tuple[Array, Array, Array]) -> dict[str, Array]:
    """Each passage rule's window scores (``(n, T)``) from :meth:`Scales.score`."""
    window, mean, top2 = s
    return {
        "window (shipped)": window,
        "chunk mean": mean,
        "window + chunk mean": (window + mean) / 2,
        "window + two best chunks": (window + top2) / 2,
    }


def best_scores(scales: Scales, items: list[DevItem]) -> dict[str, Array]:
    """Each rule's score of each dev passage (its best window), shape ``(items, T)``."""
    scored = scales.items(items)
    names = list(passage_rules(scored[0]))
    return {n: np.array([passage_rules(s)[n].max(axis=0) for s in scored]) for n in names}


def averaged(a: Array, b: Array) -> Array:
    """Two models' passage probabilities averaged as logits (returned as probabilities)."""
    za, zb = (np.log(np.clip(p, 1e-9, 1 - 1e-9) / np.clip(1 - p, 1e-9, 1)) for p in (a, b))
    return np.asarray(1 / (1 + np.exp(-(za + zb) / 2)))


def passage_table(
    rules: dict[str, Array], items: list[DevItem], tags: list[str], base: str
) -> list[str]:
    """AP rows of each rule, and the paired book-bootstrap CI of each against ``base``."""
    samples = boot_samples([it.title for it in items], REPS)
    lines = [
        "| rule | core AP | all-8 AP | " + " | ".join(PASSAGE_TAGS) + " |",
        "|---|---:|---:|" + "---:|" * len(PASSAGE_TAGS),
    ]
    evals = {name: passage_eval(best, items, tags, samples) for name, best in rules.items()}
    for name, ev in evals.items():
        lines.append(
            f"| {name} | {ev.ap['core']:.3f} | {np.mean([ev.ap[t] for t in PASSAGE_TAGS]):.3f} | "
            + " | ".join(f"{ev.ap[t]:.2f}" for t in PASSAGE_TAGS)
            + " |"
        )
    lines += [
        "",
        f"Core AP minus {base}'s, paired 95% CI over books ({REPS} resamples, seed {SEED_VALUE}):",
    ]
    for name, ev in evals.items():
        if name != base:
            lo, hi = np.nanpercentile(ev.boot["core"] - evals[base].boot["core"], [2.5, 97.5])
            lines.append(f"- {name}: [{lo:+.3f}, {hi:+.3f}]")
    return [*lines, ""]


def passage_section(scales: Scales, items: list[DevItem], also: Scales | None = None) -> list[str]:
    """Passage AP tables for one chunk size (and, with ``also``, the two models averaged)."""
    rules = best_scores(scales, items)
    base = "window (shipped)"
    lines = [
        f"### Chunks of at most {scales.tokens} tokens ({scales.chunks} chunks)",
        "",
        *passage_table(rules, items, scales.tagger.tags, base),
    ]
    if also is not None:
        other = best_scores(also, items)
        o_col = {t: j for j, t in enumerate(also.tagger.tags)}
        order = [o_col[t] for t in scales.tagger.tags]
        both = {
            f"{a} / second model {b}": averaged(rules[a], other[b][:, order])
            for a, b in [
                ("window (shipped)", "window (shipped)"),
                ("window + chunk mean", "window (shipped)"),
                ("window + chunk mean", "window + chunk mean"),
            ]
        }
        both = (
            {"second model alone, window": other["window (shipped)"][:, order]}
            | {"second model alone, window + chunk mean": other["window + chunk mean"][:, order]}
            | both
        )
        lines += [
            f"Second model `{also.tagger.name}` (its own windows and chunks), and the two "
            "models' passage logits averaged:",
            "",
            *passage_table(
                {"window (shipped)": rules["window (shipped)"]} | both,
                items,
                scales.tagger.tags,
                "window (shipped)",
            ),
        ]
    return lines


def work_section(scales: Scales) -> list[str]:
    """Work-level table: each mixing weight, its own null and alphas chosen on dev."""
    t = scales.tagger
    count = scales.count
    max_tokens = int(getattr(t.encoder, "max_tokens", 254))
    _, bg_texts, _ = background_rows(Path("data/background"), t.encoder, count, max_tokens)
    bg = scales.score(bg_texts)
    dev_items, fresh_items = load_dev_works("data/dev"), load_dev_works("data/confirm")
    dev, fresh = scales.items(dev_items), scales.items(fresh_items)
    col = {tag: j for j, tag in enumerate(t.tags)}
    Yd, Yf = judged(dev_items, REQUIRED_TAGS), judged(fresh_items, REQUIRED_TAGS)
    lines = [
        f"## Work level: chunks of at most {scales.tokens} tokens",
        "",
        f"{len(bg_texts)} background windows, {len(dev_items)} dev works, "
        f"{len(fresh_items)} fresh works. Passage probability = (1 - w) x window + w x chunk "
        "mean; null refitted on the same mix; alphas chosen on the dev works.",
        "",
        "| w | dev recall in-sample / held out | dev false-tag rate in-sample / held out "
        "| dev work AP | fresh: found | fresh: false tags |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for w in WEIGHTS:

        def mix(s: tuple[Array, Array, Array], w: float = w) -> Array:
            return (1 - w) * s[0] + w * s[1]

        mu, sigma = fit_null(mix(bg))
        Wd = work_evidence(np.array([log_chance(mix(s), mu, sigma, t.k) for s in dev]))
        Wf = work_evidence(np.array([log_chance(mix(s), mu, sigma, t.k) for s in fresh]))
        alphas = {tag: choose(Wd[:, col[tag]], Yd[tag], tag) for tag in REQUIRED_TAGS}
        ins = np.sum([rates(Wd[:, col[g]], Yd[g], alphas[g]) for g in REQUIRED_TAGS], axis=0)
        fr = np.sum([rates(Wf[:, col[g]], Yf[g], alphas[g]) for g in REQUIRED_TAGS], axis=0)
        held = held_out(Wd, Yd, col)
        per_split = np.sum([np.asarray(held[g]) for g in REQUIRED_TAGS], axis=0)
        aps = []
        for g in REQUIRED_TAGS:
            ok = Yd[g] != -1
            if 0 < Yd[g][ok].sum() < ok.sum():
                aps.append(ap_fast(Yd[g][ok], Wd[ok, col[g]]))
        lines.append(
            f"| {w} | {ins[0] / ins[1]:.3f} / {np.mean(per_split[:, 0] / per_split[:, 1]):.3f} "
            f"| {ins[2] / ins[3]:.3f} / {np.mean(per_split[:, 2] / per_split[:, 3]):.3f} "
            f"| {np.mean(aps):.3f} | {fr[0]}/{fr[1]} | {fr[2]}/{fr[3]} |"
        )
    return [*lines, ""]


def main() -> None:
    """Score the dev set at each chunk size and write the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the shipped one)")
    parser.add_argument("--tokens", type=int, nargs="+", default=[64, 40, 100])
    parser.add_argument("--passages-only", action="store_true", help="skip the work level")
    parser.add_argument("--also", default=None, help="a second model to average at passage level")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    tagger = load(args.model)
    items = load_dev_passages("data/dev")
    lines = [
        "# Multi-scale passage scores on the dev set",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC at commit "
        f"{git('rev-parse', '--short', 'HEAD')} by `benchmarks/multiscale.py` on model "
        f"`{args.model or 'models/default'}` ({len(items)} dev passages).",
        "",
        "## Passage level",
        "",
    ]
    other = load(args.also) if args.also else None
    for tokens in args.tokens:
        also = Scales(other, tokens) if other is not None else None
        lines += passage_section(Scales(tagger, tokens), items, also)
        print(f"passages, {tokens} tokens: done", flush=True)
    if not args.passages_only:
        lines += work_section(Scales(tagger, args.tokens[0]))
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
