"""Does the fast (int8 ONNX) backend tag as well as torch? Per-tag average precision.

Run from the repository root with the project's virtual environment::

    .venv/bin/python benchmarks/backends.py [--out PATH] [--protocols works,exemplars]

Runs exactly what ``tropeml eval --backend torch``, ``--backend fast`` and ``--backend
float`` run, for each protocol: the training set ``tropeml train`` builds from ``data/`` and
``seeds/`` is embedded with the backend (through the embedding cache), and the full
classifier (embedding, lexical and prototype views) is cross-validated with folds grouped
by fic. ``works`` holds out one labelled seed fic at a time (61 real passages, 1 to 26
positives per tag); ``exemplars`` is grouped 5-fold CV, repeated 3 times, over the written
exemplars (776 passages). Per-tag AP is over the pooled out-of-fold passage scores; the
issue's bar is |ΔAP| ≤ 0.01 per tag.

A third column measures the noise floor: the torch vectors with seeded random noise added,
scaled so that their cosine to the clean vectors equals the fast backend's mean cosine on the
same texts. If the AP moves as much under random noise of that size as it does on the fast
backend, the per-tag differences are rank swaps among a few test passages, not a loss the
quantisation causes. Writes ``benchmarks/results/backends.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import math
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from tropeml.model.backends import load_encoder
from tropeml.model.evaluation import EvalReport
from tropeml.model.onnx_backend import OnnxEncoder, read_meta
from tropeml.model.training import evaluate

ROOT = Path(__file__).resolve().parent.parent


class NoisyEncoder:
    """The torch encoder plus seeded noise per text, at a given cosine to the clean vector."""

    def __init__(self, inner: Any, cosine: float) -> None:
        self.inner = inner
        self.cosine = cosine
        self.id = f"{inner.id}#noise-cos-{cosine:.4f}"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed(self, texts: list[str]) -> Any:
        X = np.asarray(self.inner.embed(texts), dtype=np.float64)
        out = np.empty_like(X)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            noise = np.random.default_rng(seed).normal(size=X.shape[1])
            noise -= noise.dot(X[i]) * X[i]  # orthogonal to the clean vector
            noise /= np.linalg.norm(noise)
            angle = math.acos(self.cosine)
            out[i] = math.cos(angle) * X[i] + math.sin(angle) * noise
        return out.astype(np.float32)


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
    exact = load_encoder(None, backend="float")
    assert isinstance(fast, OnnxEncoder)
    meta = read_meta(fast.folder) or {}
    torch_encoder = load_encoder(None, backend="torch")
    sample = sorted((ROOT / "seeds").glob("*.txt"))
    probe = [p for f in sorted(sample) for p in f.read_text().split("\n\n") if len(p) > 200]
    probe = probe[:200]
    cos = np.sum(fast.embed(probe) * torch_encoder.embed(probe), axis=1)
    noisy = NoisyEncoder(torch_encoder, float(cos.mean()))
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    lines = [
        "# Backends: per-tag average precision on torch, fast (int8 ONNX) and float (fp32 ONNX)",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `benchmarks/backends.py` "
        f"at commit {commit or '?'}. Each column is `tropeml eval --backend B --protocol P`: "
        "the classifier is trained and tested on embeddings from backend B. Fast backend: "
        f"{meta.get('recipe', 'int8 ONNX')}; cosine to the float encoder on its probe texts "
        f"mean {meta.get('mean_cosine', float('nan')):.4f}, "
        f"min {meta.get('min_cosine', float('nan')):.4f}; on {len(probe)} seed paragraphs "
        f"mean {cos.mean():.4f}, min {cos.min():.4f}. 'torch + noise': torch vectors with "
        f"random noise at cosine {cos.mean():.4f} (the noise floor, see the script).",
        "",
    ]
    summary = []
    for protocol in args.protocols.split(","):
        torch_ = per_tag_ap(evaluate(ROOT / "data", ROOT, protocol=protocol))
        fast_ = per_tag_ap(evaluate(ROOT / "data", ROOT, protocol=protocol, encoder=fast))
        float_ = per_tag_ap(evaluate(ROOT / "data", ROOT, protocol=protocol, encoder=exact))
        noise_ = per_tag_ap(evaluate(ROOT / "data", ROOT, protocol=protocol, encoder=noisy))
        lines += [
            f"## Protocol `{protocol}`",
            "",
            "| tag | positives | AP torch | AP fast | Δ | AP float | Δ | AP torch + noise | Δ |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        deltas, float_deltas, noise_deltas = [], [], []
        for tag, (ap, pos) in torch_.items():
            other, same, floor = fast_[tag][0], float_[tag][0], noise_[tag][0]
            deltas.append(other - ap)
            float_deltas.append(same - ap)
            noise_deltas.append(floor - ap)
            lines.append(
                f"| {tag} | {pos} | {ap:.4f} | {other:.4f} | {other - ap:+.4f} | "
                f"{same:.4f} | {same - ap:+.4f} | {floor:.4f} | {floor - ap:+.4f} |"
            )
        macro_t = np.mean([v[0] for v in torch_.values()])
        macro_f = np.mean([fast_[t][0] for t in torch_])
        within = sum(abs(d) <= 0.01 for d in deltas)
        worst = max(deltas, key=abs)
        drops = [d for d in deltas if d < -0.01]
        line = (
            f"- `{protocol}`: macro AP torch {macro_t:.4f}, fast {macro_f:.4f} "
            f"({macro_f - macro_t:+.4f}); largest |ΔAP| {abs(worst):.4f}; mean |ΔAP| "
            f"{np.mean(np.abs(deltas)):.4f}; {within}/{len(deltas)} tags within 0.01; "
            f"largest drop {-min(0.0, min(deltas)):.4f}, {len(drops)} tags drop by more than "
            "0.01. "
            f"Noise floor: largest |ΔAP| {max(abs(d) for d in noise_deltas):.4f}, mean "
            f"|ΔAP| {np.mean(np.abs(noise_deltas)):.4f}, "
            f"{sum(abs(d) <= 0.01 for d in noise_deltas)}/{len(noise_deltas)} within 0.01. "
            f"Float backend: largest |ΔAP| {max(abs(d) for d in float_deltas):.4f}, "
            f"{sum(abs(d) <= 0.01 for d in float_deltas)}/{len(float_deltas)} within 0.01"
        )
        lines += ["", line, ""]
        summary.append(line)
    lines += ["## Summary", "", *summary, ""]
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
