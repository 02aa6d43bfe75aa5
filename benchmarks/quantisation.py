"""Which int8 recipe for the fast backend? Fidelity, speed and per-tag AP of a few variants.

Run from the repository root with the project's virtual environment::

    .venv/bin/python benchmarks/quantisation.py [--variants all,no-ffn-out,...] [--out PATH]

The encoder is exported and fused once, as ``tropeml setup`` does, then quantised several
ways with onnxruntime's dynamic quantisation, leaving some MatMuls in float:

- ``all``: every MatMul and the fused attention in int8 (tropeml's recipe);
- ``no-ffn-out``: the second feed-forward MatMul of each layer kept in float (its input,
  after GELU, has the widest range, so it loses most to per-tensor uint8 activations);
- ``no-attention``: the fused attention (QKV) kept in float;
- ``no-ffn-out-attn-out``: both output MatMuls of each layer kept in float;
- ``fp32``: the fused float graph, not quantised.

For each: cosine to the float (torch) encoder on the seed fics' passages, the time to embed
them (best of 3, all variants interleaved, so the ratios are fair on a shared machine), and
``tropeml eval`` per-tag AP on both protocols, against torch. Writes
``benchmarks/results/quantisation.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tropeml.model.encoders import SentenceTransformerEncoder
from tropeml.model.onnx_backend import FORMAT, FORMAT_VERSION, META_FILE, MODEL_FILE, OnnxEncoder
from tropeml.model.onnx_export import _export, _fuse, _quiet
from tropeml.model.training import evaluate
from tropeml.text.passages import split_passages

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("all", "no-ffn-out", "no-attention", "no-ffn-out-attn-out", "fp32")


def excluded(variant: str, nodes: list[str]) -> list[str]:
    """The nodes a variant keeps in float."""
    ffn_out = [n for n in nodes if "/output/dense/" in n and "/attention/" not in n]
    attn_out = [n for n in nodes if "/attention/output/dense/" in n]
    return {
        "all": [],
        "no-ffn-out": ffn_out,
        "no-attention": [n for n in nodes if n.startswith("Attention")],
        "no-ffn-out-attn-out": ffn_out + attn_out,
    }[variant]


class Variant(OnnxEncoder):
    """The fast encoder run from a variant's file, with a cache id of its own."""

    def __init__(self, folder: Path, name: str) -> None:
        super().__init__(build=False)
        self.folder = folder
        self.variant = name

    @property
    def id(self) -> str:
        """Return a cache namespace of the variant's own."""
        return f"{super().id}#variant-{self.variant}"


def build_variants(names: list[str], work: Path) -> dict[str, Variant]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    reference = SentenceTransformerEncoder()
    source = reference._path
    assert source is not None
    with _quiet():
        _export(source, work / "model.onnx")
        _fuse(source, work / "model.onnx", work / "model-fused.onnx")
    nodes = [
        n.name
        for n in onnx.load(str(work / "model-fused.onnx")).graph.node
        if n.op_type in ("MatMul", "Attention")
    ]
    out = {}
    for name in names:
        folder = work / name
        folder.mkdir()
        if name == "fp32":
            (folder / MODEL_FILE).write_bytes((work / "model-fused.onnx").read_bytes())
        else:
            with _quiet():
                quantize_dynamic(
                    str(work / "model-fused.onnx"),
                    str(folder / MODEL_FILE),
                    weight_type=QuantType.QInt8,
                    per_channel=True,
                    nodes_to_exclude=excluded(name, nodes),
                    extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                )
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "variant": name}
        (folder / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
        out[name] = Variant(folder, name)
    return out


def per_tag_ap(report: Any) -> dict[str, float]:
    return {t.tag: t.average_precision for t in report.tags if not math.isnan(t.average_precision)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/quantisation.md")
    args = parser.parse_args()
    names = args.variants.split(",")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    reference = SentenceTransformerEncoder()
    texts = [
        p.text
        for f in sorted((ROOT / "seeds").glob("*.txt"))
        for p in split_passages(f.read_text(encoding="utf-8"), reference.count_tokens, 254)
    ]
    R = reference.embed(texts)
    torch_ap = {
        p: per_tag_ap(evaluate(ROOT / "data", ROOT, protocol=p)) for p in ("works", "exemplars")
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="tropeml-quant-") as tmp:
        variants = build_variants(names, Path(tmp))
        times: dict[str, list[float]] = {n: [] for n in names}
        for _ in range(3):
            for name, enc in variants.items():
                t0 = time.perf_counter()
                enc.embed(texts)
                times[name].append(time.perf_counter() - t0)
        for name, enc in variants.items():
            cos = np.sum(enc.embed(texts) * R, axis=1)
            row: dict[str, Any] = {
                "variant": name,
                "mean": float(cos.mean()),
                "min": float(cos.min()),
                "seconds": min(times[name]),
                "mb": (enc.folder / MODEL_FILE).stat().st_size / 2**20,
            }
            for protocol, base in torch_ap.items():
                got = per_tag_ap(evaluate(ROOT / "data", ROOT, protocol=protocol, encoder=enc))
                deltas = [got[t] - ap for t, ap in base.items()]
                row[protocol] = (
                    sum(abs(d) <= 0.01 for d in deltas),
                    len(deltas),
                    -min(0.0, *deltas),
                    float(np.mean([got[t] for t in base])),
                )
            rows.append(row)
            print(row, flush=True)
    fastest = min(r["seconds"] for r in rows if r["variant"] == "all") if "all" in names else 1.0
    lines = [
        "# Quantisation recipes for the fast backend",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `benchmarks/quantisation.py` "
        f"at commit {commit or '?'} on {len(texts)} passages of the seed fics. "
        "Cosine: to the float (torch) encoder. "
        "Time: best of 3 runs embedding those passages, variants interleaved; × `all`: "
        "time relative to the fully int8 recipe. AP columns: `tropeml eval` on the variant, "
        "against torch (tags within ±0.01 AP; largest drop below torch; macro AP).",
        "",
        "| variant | MB | cosine mean | cosine min | seconds | × `all` | works: within 0.01 "
        "| works: largest drop | works: macro AP | exemplars: within 0.01 | exemplars: largest "
        "drop | exemplars: macro AP |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    macro_w = np.mean(list(torch_ap["works"].values()))
    macro_e = np.mean(list(torch_ap["exemplars"].values()))
    for r in rows:
        w, e = r["works"], r["exemplars"]
        lines.append(
            f"| {r['variant']} | {r['mb']:.0f} | {r['mean']:.4f} | {r['min']:.4f} | "
            f"{r['seconds']:.2f} | {r['seconds'] / fastest:.2f} | {w[0]}/{w[1]} | {w[2]:.4f} | "
            f"{w[3]:.4f} | {e[0]}/{e[1]} | {e[2]:.4f} | {e[3]:.4f} |"
        )
    lines += [
        f"| torch (reference) | | 1 | 1 | | | | | {macro_w:.4f} | | | {macro_e:.4f} |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
