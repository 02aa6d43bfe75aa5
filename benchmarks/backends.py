"""Does the fast (int8 ONNX) backend tag as well as torch? Per-tag average precision.

Run from the repository root with the project's virtual environment::

    .venv/bin/python benchmarks/backends.py [--out PATH] [--protocols works,exemplars]

Runs exactly what ``tropeml eval --backend torch`` and ``tropeml eval --backend fast``
run, for each protocol: the training set ``tropeml train`` builds from ``data/`` and
``seeds/`` is embedded with the backend (through the embedding cache), and the full
classifier (embedding, lexical and prototype views) is cross-validated with folds grouped
by fic. ``works`` holds out one labelled seed fic at a time (61 real passages, 1 to 26
positives per tag); ``exemplars`` is grouped 5-fold CV, repeated 3 times, over the written
exemplars (776 passages). Per-tag AP is over the pooled out-of-fold passage scores; the
issue's bar is |ΔAP| ≤ 0.01 per tag. Writes ``benchmarks/results/backends.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import subprocess
from pathlib import Path

import numpy as np

from tropeml.encoders import load_encoder
from tropeml.evaluation import EvalReport
from tropeml.onnx_backend import OnnxEncoder, read_meta
from tropeml.training import evaluate

ROOT = Path(__file__).resolve().parent.parent


def per_tag_ap(report: EvalReport) -> dict[str, tuple[float, int]]:
    return {
        t.tag: (t.average_precision, t.support)
        for t in report.tags
        if not math.isnan(t.average_precision)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/backends.md")
    parser.add_argument("--protocols", default="works,exemplars")
    args = parser.parse_args()
    fast = load_encoder(None, backend="fast")
    assert isinstance(fast, OnnxEncoder)
    meta = read_meta(fast.folder) or {}
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    lines = [
        "# Backends: per-tag average precision, torch against fast (int8 ONNX)",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `benchmarks/backends.py` "
        f"at commit {commit or '?'}. Each column is `tropeml eval --backend B --protocol P`: "
        "the classifier is trained and tested on embeddings from backend B. Fast backend: "
        f"{meta.get('recipe', 'int8 ONNX')}; cosine to the float encoder on its probe texts "
        f"mean {meta.get('mean_cosine', float('nan')):.4f}, "
        f"min {meta.get('min_cosine', float('nan')):.4f}.",
        "",
    ]
    summary = []
    for protocol in args.protocols.split(","):
        torch_ = per_tag_ap(evaluate(ROOT / "data", ROOT, protocol=protocol))
        fast_ = per_tag_ap(evaluate(ROOT / "data", ROOT, protocol=protocol, encoder=fast))
        lines += [
            f"## Protocol `{protocol}`",
            "",
            "| tag | positives | AP torch | AP fast | Δ |",
            "|---|---:|---:|---:|---:|",
        ]
        deltas = []
        for tag, (ap, pos) in torch_.items():
            other = fast_[tag][0]
            deltas.append(other - ap)
            lines.append(f"| {tag} | {pos} | {ap:.4f} | {other:.4f} | {other - ap:+.4f} |")
        macro_t = np.mean([v[0] for v in torch_.values()])
        macro_f = np.mean([fast_[t][0] for t in torch_])
        within = sum(abs(d) <= 0.01 for d in deltas)
        worst = max(deltas, key=abs)
        line = (
            f"- `{protocol}`: macro AP torch {macro_t:.4f}, fast {macro_f:.4f} "
            f"({macro_f - macro_t:+.4f}); largest |ΔAP| {abs(worst):.4f}; mean |ΔAP| "
            f"{np.mean(np.abs(deltas)):.4f}; {within}/{len(deltas)} tags within 0.01"
        )
        lines += ["", line, ""]
        summary.append(line)
    lines += ["## Summary", "", *summary, ""]
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
