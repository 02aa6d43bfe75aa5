"""Contrastive fine-tuning of the encoder (SetFit's recipe) on the labelled training passages.

Issue 12, "adapt the encoder, and measure it". Run from the repository root with the
project's virtual environment::

    PYTHONPATH=$PWD .venv/bin/python benchmarks/finetune.py --name ft-cos \\
        [--loss cosine|mnrl] [--pairs-per-tag 100] [--epochs 1] [--batch-size 16]

It writes a sentence-transformers folder to ``ft_models/<name>/`` (not committed) and a
``recipe.json`` next to the weights (pairs, loss, seconds). Then train and measure a tropeml
model with it::

    PYTHONPATH=$PWD .venv/bin/python -m tropeml train --no-eval \\
        --encoder ft_models/<name> --out /tmp/ft_<name>
    PYTHONPATH=$PWD .venv/bin/python -m tropeml eval --protocol dev --model /tmp/ft_<name>

To compare model folders on the dev passages with paired, book-clustered bootstrap CIs (a
measurement: nothing is fitted on the dev set)::

    PYTHONPATH=$PWD .venv/bin/python benchmarks/finetune.py --compare models/default \
        /tmp/ft_<name> [...]

Use a new ``--name`` for every run: the embedding cache keys a local encoder by its path and
weight size, so weights rewritten in place would be served stale vectors.

Training data: the rows ``build_training_set`` makes of ``data/labels`` and
``data/exemplars`` (name-masked passages, targets 1/0/-1 per tag, groups = source work or
exemplar). Only judged labels are used: a target of -1 (unknown) is never a negative. The dev
set (``data/dev``) is not read.

For each core tag ``t``:

- similar pairs: two rows positive for ``t`` from different groups (label 1);
- dissimilar pairs: a row positive for ``t`` and a row judged 0 for ``t``, from a different
  group; half of them hard (the negative row is positive for a tag related to ``t`` in the
  taxonomy: a near miss), half any judged negative (label 0).

``--loss cosine`` is SetFit's CosineSimilarityLoss on those pairs. ``--loss mnrl`` is
MultipleNegativesRankingLoss on triplets (anchor positive for ``t``, another positive for ``t``,
a hard negative for ``t``), batches built so no two triplets of a batch share a tag (other
triplets' texts are in-batch negatives, so they must not be positives of the anchor's tag).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tropeml.core.taxonomy import Taxonomy
from tropeml.io.devset import REQUIRED_TAGS
from tropeml.model.dataset import TrainingSet, build_training_set
from tropeml.model.encoders import SentenceTransformerEncoder

CORE_TAGS = REQUIRED_TAGS
"""The ten required tags the pairs are built for (the dev set's required tags)."""


def load_rows(data: Path, encoder: SentenceTransformerEncoder) -> tuple[Taxonomy, TrainingSet]:
    """Build the training rows as ``tropeml train`` does (the base encoder's tokenizer)."""
    taxonomy = Taxonomy.load(data / "tropes.toml")
    ts = build_training_set(
        taxonomy,
        sorted((data / "labels").glob("*.jsonl")),
        sorted((data / "exemplars").glob("*.jsonl")),
        root=data.resolve().parent,
        count_tokens=encoder.count_tokens,
        max_tokens=encoder.max_tokens,
    )
    return taxonomy, ts


def related_cols(taxonomy: Taxonomy, tags: list[str], tag: str) -> list[int]:
    """Columns of the tags related to ``tag`` either way in the taxonomy."""
    rel = set(taxonomy[tag].related) | {t for t in tags if tag in taxonomy[t].related}
    return [j for j, t in enumerate(tags) if t in rel and t != tag]


def _other_group(
    rng: random.Random, pool: NDArray[np.intp], groups: list[str], anchor: int
) -> int | None:
    """A row of ``pool`` from a different group than ``anchor`` (``None`` if none after tries)."""
    for _ in range(20):
        j = int(pool[rng.randrange(len(pool))])
        if groups[j] != groups[anchor]:
            return j
    return None


def tag_pools(
    ts: TrainingSet, taxonomy: Taxonomy, tag: str
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """Positive rows, hard-negative rows and all judged-negative rows of ``tag``."""
    j = ts.tags.index(tag)
    col = ts.Y[:, j]
    pos = np.flatnonzero(col == 1)
    neg = np.flatnonzero(col == 0)
    rel = related_cols(taxonomy, ts.tags, tag)
    hard = neg[(ts.Y[neg][:, rel] == 1).any(axis=1)] if rel else neg[:0]
    return pos, hard, neg


def make_pairs(
    ts: TrainingSet, taxonomy: Taxonomy, per_tag: int, seed: int
) -> tuple[list[tuple[str, str, float]], dict[str, dict[str, int]]]:
    """SetFit-style pairs: ``per_tag`` similar and ``per_tag`` dissimilar pairs per core tag."""
    rng = random.Random(seed)
    texts = ts.texts
    pairs: list[tuple[str, str, float]] = []
    stats: dict[str, dict[str, int]] = {}
    for tag in CORE_TAGS:
        pos, hard, neg = tag_pools(ts, taxonomy, tag)
        made = {"pos_rows": len(pos), "hard_rows": len(hard), "similar": 0, "dissimilar": 0}
        for _ in range(per_tag):
            a = int(pos[rng.randrange(len(pos))])
            b = _other_group(rng, pos, ts.groups, a)
            if b is not None:
                pairs.append((texts[a], texts[b], 1.0))
                made["similar"] += 1
        for k in range(per_tag):
            a = int(pos[rng.randrange(len(pos))])
            pool = hard if (k % 2 == 0 and len(hard)) else neg
            b = _other_group(rng, pool, ts.groups, a)
            if b is not None:
                pairs.append((texts[a], texts[b], 0.0))
                made["dissimilar"] += 1
        stats[tag] = made
    rng.shuffle(pairs)
    return pairs, stats


def make_triplets(
    ts: TrainingSet, taxonomy: Taxonomy, per_tag: int, batch_size: int, seed: int
) -> tuple[list[tuple[str, str, str]], list[list[int]], dict[str, dict[str, int]]]:
    """Triplets (anchor, positive, hard negative) per core tag, in tag-disjoint batches.

    Each batch holds at most one triplet per core tag, and never two triplets whose anchors
    share a positive core tag, so in-batch negatives are judged-or-other-tag rows. With fewer
    core tags than ``batch_size``, batches are as large as the tags allow.
    """
    rng = random.Random(seed)
    texts = ts.texts
    by_tag: dict[str, list[tuple[int, int, int]]] = {}
    stats: dict[str, dict[str, int]] = {}
    for tag in CORE_TAGS:
        pos, hard, neg = tag_pools(ts, taxonomy, tag)
        out: list[tuple[int, int, int]] = []
        for _ in range(per_tag):
            a = int(pos[rng.randrange(len(pos))])
            p = _other_group(rng, pos, ts.groups, a)
            n = _other_group(rng, hard if len(hard) else neg, ts.groups, a)
            if p is not None and n is not None:
                out.append((a, p, n))
        by_tag[tag] = out
        stats[tag] = {"pos_rows": len(pos), "hard_rows": len(hard), "triplets": len(out)}
    core = [ts.tags.index(t) for t in CORE_TAGS]
    ordered: list[tuple[str, str, str]] = []
    batches: list[list[int]] = []
    queues = {t: list(v) for t, v in by_tag.items()}
    while any(queues.values()):
        batch: list[tuple[int, int, int]] = []
        used: set[int] = set()
        for tag in rng.sample(list(CORE_TAGS), len(CORE_TAGS)):
            if not queues[tag] or len(batch) >= batch_size:
                continue
            a, p, n = queues[tag][-1]
            tags_here = {j for j in core for r in (a, p) if ts.Y[r, j] == 1}
            if tags_here & used:
                continue
            queues[tag].pop()
            used |= tags_here
            batch.append((a, p, n))
        if not batch:  # only conflicting triplets left: give each its own batch
            tag = next(t for t, q in queues.items() if q)
            batch.append(queues[tag].pop())
        batches.append(list(range(len(ordered), len(ordered) + len(batch))))
        ordered += [(texts[a], texts[p], texts[n]) for a, p, n in batch]
    rng.shuffle(batches)
    return ordered, batches, stats


def fixed_batches(batches: list[list[int]]) -> Any:
    """A batch-sampler factory for the trainer that yields exactly ``batches`` (no shuffle)."""
    from sentence_transformers import DefaultBatchSampler

    class FixedBatchSampler(DefaultBatchSampler):
        def __iter__(self) -> Any:
            return iter([list(b) for b in batches])

        def __len__(self) -> int:
            return len(batches)

    def factory(dataset: Any, **kwargs: Any) -> Any:
        return FixedBatchSampler(
            range(len(dataset)), batch_size=kwargs["batch_size"], drop_last=False
        )

    return factory


def legacy_pooling(folder: Path, base: Path) -> None:
    """Write the pooling config in the base model's (pre-v6) keys; the pooling is unchanged.

    sentence-transformers 6 saves ``1_Pooling/config.json`` as ``{"pooling_mode": "mean"}``;
    tropeml's ONNX export (``check_pooling``) only knows the ``pooling_mode_mean_tokens`` keys
    and would fall back to the slow torch backend. Both mean mean pooling over 384 dims.
    """
    saved = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert saved.get("pooling_mode", "mean") == "mean", saved
    (folder / "1_Pooling" / "config.json").write_bytes(
        (base / "1_Pooling" / "config.json").read_bytes()
    )


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Fine-tune the base encoder and save it; return the recipe (what was done, how long)."""
    import torch
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer import losses

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    base = SentenceTransformerEncoder()
    taxonomy, ts = load_rows(Path(args.data), base)
    model = SentenceTransformer(str(base._path), device="cpu")
    model.max_seq_length = args.max_seq_length
    if args.loss == "cosine":
        pairs, stats = make_pairs(ts, taxonomy, args.pairs_per_tag, args.seed)
        cols = {
            "sentence1": [a for a, _, _ in pairs],
            "sentence2": [b for _, b, _ in pairs],
            "label": [y for _, _, y in pairs],
        }
        loss: Any = losses.CosineSimilarityLoss(model)
        sampler = BatchSamplers.BATCH_SAMPLER
        batch_size = args.batch_size
        n_examples = len(pairs)
    else:
        batch_size = min(args.batch_size, len(CORE_TAGS))
        triplets, batches, stats = make_triplets(
            ts, taxonomy, args.pairs_per_tag, batch_size, args.seed
        )
        cols = {
            "anchor": [a for a, _, _ in triplets],
            "positive": [p for _, p, _ in triplets],
            "negative": [n for _, _, n in triplets],
        }
        loss = losses.MultipleNegativesRankingLoss(model)
        sampler = fixed_batches(batches)
        n_examples = len(triplets)
    out = Path(args.out_dir) / args.name
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(Path("/tmp") / f"ft-ckpt-{args.name}"),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=args.lr,
        warmup_steps=0.1,  # a float: the warm-up share of the steps (v5+)
        seed=args.seed,
        batch_sampler=sampler,
        save_strategy="no",
        logging_steps=5,
        report_to="none",
        use_cpu=True,
        dataloader_drop_last=False,
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=training_args,
        train_dataset=Dataset.from_dict(cols),
        loss=loss,
    )
    start = time.time()
    result = trainer.train()
    seconds = time.time() - start
    model.save(str(out))
    legacy_pooling(out, Path(str(base._path)))
    recipe = {
        "name": args.name,
        "loss": args.loss,
        "examples": n_examples,
        "per_tag": stats,
        "epochs": args.epochs,
        "batch_size": batch_size,
        "lr": args.lr,
        "max_seq_length": args.max_seq_length,
        "seed": args.seed,
        "steps": int(result.global_step),
        "train_seconds": round(seconds, 1),
        "train_loss": float(result.training_loss),
        "rows": len(ts),
        "threads": args.threads,
    }
    (out / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
    return recipe


def compare(models: list[str], reps: int, seed: int, dev: Path) -> str:
    """Passage AP per required tag on the dev passages, each model against the first.

    Returns Markdown: AP per tag and core mean AP (hurt_comfort, fake_death, reunion,
    soulmates, as ``tropeml eval --protocol dev`` reports it) with 95% bootstrap CIs of the
    difference to the first model, books resampled with replacement (paired: the same
    resamples for every model).
    """
    from sklearn.metrics import average_precision_score

    from tropeml.io.devset import REQUIRED_TAGS, load_dev_passages
    from tropeml.serve.deveval import score_items
    from tropeml.serve.tagger import load

    core = ("hurt_comfort", "fake_death", "reunion", "soulmates")
    items = load_dev_passages(dev)
    books = [it.title for it in items]
    J = np.array([[it.judgments[t] for t in REQUIRED_TAGS] for it in items])
    best: list[NDArray[np.float64]] = []
    for path in models:
        tagger = load(path)
        scored = score_items(tagger, items, batch=64)
        col = {t: j for j, t in enumerate(tagger.tags)}
        best.append(np.array([[s.scores[:, col[t]].max() for t in REQUIRED_TAGS] for s in scored]))
    rng = np.random.default_rng(seed)
    uniq = sorted(set(books))
    members = {b: np.array([i for i, x in enumerate(books) if x == b]) for b in uniq}
    samples = [
        np.concatenate([members[uniq[k]] for k in rng.integers(0, len(uniq), len(uniq))])
        for _ in range(reps)
    ]

    def ap(k: int, rows: NDArray[np.intp], m: int) -> float:
        y = J[rows, k]
        keep = y != -1
        y = y[keep]
        if y.sum() in (0, len(y)):
            return float("nan")
        return float(average_precision_score(y, best[m][rows][keep, k]))

    every = np.arange(len(items))
    tags = [t for k, t in enumerate(REQUIRED_TAGS) if (J[:, k] == 1).any()]
    lines = [
        f"| tag | {' | '.join(models)} |",
        "|---|" + "---:|" * len(models),
    ]
    summaries = {"core mean AP": core, "mean AP, all judged tags": tuple(tags)}
    cells: dict[str, list[str]] = {t: [] for t in [*tags, *summaries]}
    first: dict[str, float] = {}
    for m in range(len(models)):
        point: dict[str, float] = {}
        diffs: dict[str, list[float]] = {t: [] for t in cells}
        for t in tags:
            k = REQUIRED_TAGS.index(t)
            point[t] = ap(k, every, m)
        for name, group in summaries.items():
            point[name] = float(np.mean([point[t] for t in group]))
        first = first or dict(point)
        if m:
            for rows in samples:
                here = {t: ap(REQUIRED_TAGS.index(t), rows, m) for t in tags}
                base = {t: ap(REQUIRED_TAGS.index(t), rows, 0) for t in tags}
                for t in tags:
                    diffs[t].append(here[t] - base[t])
                for name, group in summaries.items():
                    diffs[name].append(
                        float(
                            np.nanmean([here[t] for t in group])
                            - np.nanmean([base[t] for t in group])
                        )
                    )
        for t in cells:
            text = f"{point[t]:.3f}"
            if m:
                d = np.asarray(diffs[t])
                d = d[~np.isnan(d)]
                delta = point[t] - first[t]
                lo, hi = np.percentile(d, [2.5, 97.5])
                star = " *" if lo > 0 or hi < 0 else ""
                text += f" ({delta:+.3f} [{lo:+.3f}, {hi:+.3f}]{star})"
            cells[t].append(text)
    lines += [f"| `{t}` | {' | '.join(v)} |" for t, v in cells.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, fine-tune, print the recipe."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", help="Folder name under --out-dir.")
    parser.add_argument(
        "--compare", nargs="+", metavar="MODEL", help="Compare model folders on data/dev."
    )
    parser.add_argument("--reps", type=int, default=1000, help="Bootstrap resamples.")
    parser.add_argument("--out-dir", default="ft_models")
    parser.add_argument("--data", default="data")
    parser.add_argument("--loss", choices=("cosine", "mnrl"), default="cosine")
    parser.add_argument("--pairs-per-tag", type=int, default=100)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dry-run", action="store_true", help="Only count the pairs.")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.compare:
        print(compare(args.compare, args.reps, args.seed, Path(args.data) / "dev"), end="")
        return 0
    if not args.name:
        parser.error("--name is required to fine-tune")
    if args.dry_run:
        base = SentenceTransformerEncoder()
        taxonomy, ts = load_rows(Path(args.data), base)
        pairs, stats = make_pairs(ts, taxonomy, args.pairs_per_tag, args.seed)
        triplets, _, tstats = make_triplets(
            ts, taxonomy, args.pairs_per_tag, min(args.batch_size, len(CORE_TAGS)), args.seed
        )
        print(json.dumps({"pairs": len(pairs), "per_tag": stats}, indent=2))
        print(json.dumps({"triplets": len(triplets), "per_tag": tstats}, indent=2))
        return 0
    print(json.dumps(train(args), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
