"""Speed benchmark: tropeml's backends against the pipeline a user would write by hand.

Run from the repository root with the project's virtual environment::

    .venv/bin/python benchmarks/speed.py [--repeats N] [--sizes 1000,10000,100000] [--out PATH]

Inputs: three fics of about 1k, 10k and 100k words, built deterministically from the seed fics
and the written exemplars in ``data/`` (paragraphs shuffled with a fixed seed and repeated).
Every contender tags the same three fics:

(a) plain: sentence-transformers ``encode`` of fixed 200-word chunks, then a scikit-learn
    ``LogisticRegression`` (one per tag, 18 tags) ``predict_proba``. The head is fitted on
    random vectors: only its cost matters here.
(b) tropeml, torch backend (no embedding cache).
(c) tropeml, fast backend: int8 ONNX with onnxruntime, no torch (no embedding cache).
(d) tropeml, fast backend, warm cache (the fic was tagged once before: its embeddings,
    passage split and names all come from the cache).
(e) tropeml, float backend: the same fused graph in float32 with onnxruntime, no torch
    (no embedding cache).
(f) separate processes: ``tropeml --help`` and a cold ``tropeml tag`` of the 1k-word fic
    on the fast backend (embedding cache off; the int8 model is already built).
(g) corpora: ``tropeml tag FOLDER --out tags.jsonl`` over folders of 50, 200 and 800 works
    of about 1k words (each work is one shared 1k-word fic with a line of its own in front,
    so most passages come from the cache after the first work), as separate processes: the
    peak RSS should not grow with the number of works.
(h) the web page (``--web``, alone: ``--only-web``): a warm ``tropeml serve`` (fast backend,
    model loaded, one fic tagged before) gets a 20k-word fic it has not seen (every paragraph
    changed per run, so no passage comes from its cache), by ``POST /api/tag`` (upload to
    the JSON tags) and ``POST /api/analyse`` (upload to the page's view: text, tags,
    timeline); then the same fic again (warm cache). The server's peak RSS (VmHWM) is read
    from /proc after the runs. Written to ``benchmarks/results/web.md``.

Each contender runs in its own process (the model is loaded before timing starts), so its
peak RSS is its own. Times are medians of ``--repeats`` runs after one warm-up run. "encoder
share" is the part of tropeml's time spent inside the encoder; the rest (reading, splitting,
name masking, the classifier, roll-up) is tropeml's overhead. Ratios compare contenders
measured in this one run on this machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CHUNK_WORDS = 200
CONTENDERS = {
    "a": "plain: ST encode + sklearn LR",
    "b": "tropeml, torch backend",
    "c": "tropeml, fast backend",
    "d": "tropeml, fast, warm cache",
    "e": "tropeml, float backend",
}


def build_fic(words: int) -> str:
    """A fic of about ``words`` words from the seeds' and exemplars' paragraphs."""
    paragraphs: list[str] = []
    for seed in sorted((ROOT / "seeds").glob("*.txt")):
        text = seed.read_text(encoding="utf-8")
        paragraphs += [p.strip() for p in text.split("\n\n") if len(p.split()) >= 5]
    for path in sorted((ROOT / "data" / "exemplars").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                paragraphs.append(json.loads(line)["text"].strip())
    rng = random.Random(0)
    out: list[str] = []
    count = 0
    while count < words:
        order = paragraphs[:]
        rng.shuffle(order)
        for p in order:
            out.append(p)
            count += len(p.split())
            if count >= words:
                break
    return "\n\n".join(out) + "\n"


def peak_rss_mb() -> float:
    """This process's peak RSS in MB: ``VmHWM`` (its own memory map's high-water mark).

    ``ru_maxrss`` is not used: on Linux a child can inherit its parent's value, which made
    every row of an earlier run read the same 1340 MB.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timed:
    """Wraps an encoder and adds up the time spent in ``embed``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed(self, texts: list[str]) -> Any:
        t0 = time.perf_counter()
        try:
            return self.inner.embed(texts)
        finally:
            self.seconds += time.perf_counter() - t0


def model_encoder(model: Path | None) -> str | None:
    """The encoder a model folder was trained with (``None``: the shipped model's)."""
    if model is None:
        return None
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    return str(config["encoder"]["name"])


def child(contender: str, fic: Path, repeats: int, model: Path | None = None) -> dict[str, Any]:
    """Time one contender on one fic in this process; return the measurements."""
    text = fic.read_text(encoding="utf-8")
    words = len(text.split())
    if contender == "a":
        import numpy as np
        from sentence_transformers import SentenceTransformer
        from sklearn.linear_model import LogisticRegression

        from tropeml.model.encoders import SentenceTransformerEncoder

        path = SentenceTransformerEncoder(model_encoder(model))._path
        st = SentenceTransformer(str(path), device="cpu")
        rng = np.random.default_rng(0)
        dim = st.get_sentence_embedding_dimension() or 384
        Xfit = rng.normal(size=(200, dim)).astype(np.float32)
        heads = [
            LogisticRegression(max_iter=200).fit(Xfit, rng.integers(0, 2, 200)) for _ in range(18)
        ]

        def run() -> tuple[int, float]:
            tokens = text.split()
            chunks = [
                " ".join(tokens[i : i + CHUNK_WORDS]) for i in range(0, len(tokens), CHUNK_WORDS)
            ]
            X = st.encode(chunks, batch_size=32, normalize_embeddings=True)
            np.stack([h.predict_proba(X)[:, 1] for h in heads], axis=1)
            return len(chunks), float("nan")

    else:
        import tropeml
        from tropeml.model.cache import CachedEncoder

        backend = {"b": "torch", "e": "float"}.get(contender, "fast")
        base = tropeml.load(model, cache=False, backend=backend)
        timer = Timed(base.encoder)
        cache_file = Path(tempfile.mkdtemp()) / "embeddings.sqlite3"
        base.encoder = CachedEncoder(timer, cache_file) if contender == "d" else timer
        work = tropeml.read_work(fic)

        def run() -> tuple[int, float]:
            timer.seconds = 0.0
            result = base.tag(work)
            return result.n_passages, timer.seconds

    cold = time.perf_counter()
    run()  # warm-up (for d: this fills the cache)
    cold = time.perf_counter() - cold
    times, encoder = [], []
    n_passages = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n_passages, enc = run()
        times.append(time.perf_counter() - t0)
        encoder.append(enc)
    return {
        "contender": contender,
        "words": words,
        "passages": n_passages,
        "seconds": statistics.median(times),
        "first_seconds": cold,
        "encoder_seconds": statistics.median(encoder),
        "peak_rss_mb": peak_rss_mb(),
        "times": times,
    }


def run_child(contender: str, fic: Path, repeats: int, model: Path | None) -> dict[str, Any]:
    extra = ["--model", str(model)] if model else []
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            contender,
            str(fic),
            "--repeats",
            str(repeats),
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false"},
    )
    if proc.returncode != 0:
        raise SystemExit(f"{contender} on {fic} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


_WRAPPER = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - t0
if proc.returncode:
    sys.exit(proc.stderr[-3000:])
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "rss": rss}))
"""


def time_process(args: list[str], repeats: int, env: dict[str, str]) -> dict[str, float]:
    """Wall time and peak RSS of a command, each run timed by a fresh wrapper process."""
    times, rss = [], []
    for _ in range(repeats):
        proc = subprocess.run(
            [sys.executable, "-c", _WRAPPER, *args], capture_output=True, text=True, env=env
        )
        if proc.returncode != 0:
            raise SystemExit(f"{args} failed:\n{proc.stderr[-3000:]}")
        got = json.loads(proc.stdout)
        times.append(got["seconds"])
        rss.append(got["rss"])
    return {"seconds": statistics.median(times), "min": min(times), "peak_rss_mb": max(rss)}


def web_bench(words: int, repeats: int, out: Path) -> dict[str, Any]:
    """(h): upload-to-tags time of a warm ``tropeml serve`` and its peak RSS."""
    import re

    import httpx

    tmp = Path(tempfile.mkdtemp(prefix="tropeml-web-"))
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tropeml", "serve", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stderr is not None
    url = None
    for _ in range(50):
        line = proc.stderr.readline()
        found = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
        if found:
            url = found.group(1)
            break
    assert url, "tropeml serve did not start"
    base = build_fic(words)
    n_words = len(base.split())
    timings: dict[str, list[float]] = {"tag": [], "analyse": [], "tag, warm cache": []}
    with httpx.Client(timeout=600) as client:

        def post(endpoint: str, text: str) -> float:
            t0 = time.perf_counter()
            r = client.post(url + endpoint, files={"file": ("fic.txt", text.encode())})
            r.raise_for_status()
            _ = r.content
            return time.perf_counter() - t0

        post("/api/tag", build_fic(1000))  # warm: the encoder has run once
        for i in range(repeats):
            fresh = base.replace("\n\n", f" ({i})\n\n")
            timings["tag"].append(post("/api/tag", fresh))
            timings["tag, warm cache"].append(post("/api/tag", fresh))
            timings["analyse"].append(post("/api/analyse", fresh.replace("\n\n", " +\n\n")))
        passages = client.post(url + "/api/tag", files={"file": ("f.txt", base.encode())}).json()[
            "n_passages"
        ]
    status = Path(f"/proc/{proc.pid}/status").read_text()
    hwm = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]
    proc.terminate()
    proc.wait(30)
    rows = {k: statistics.median(v) for k, v in timings.items()}
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    lines = [
        "# Web page speed (tropeml serve)",
        "",
        f"Measured {stamp} by `benchmarks/speed.py --only-web` (commit {commit}) on "
        f"{platform.machine()}, {os.cpu_count()} CPU cores (shared), Python "
        f"{platform.python_version()}. A warm server (fast backend, model loaded, one fic "
        f"tagged before); a {n_words:,}-word fic of {passages} passages it has not seen; "
        f"medians of {repeats} runs, each with a fic changed in every paragraph.",
        "",
        "| request | median s | words/s |",
        "|---|---|---|",
        f"| `POST /api/tag` (upload to JSON tags) | {rows['tag']:.2f} | "
        f"{n_words / rows['tag']:,.0f} |",
        f"| `POST /api/analyse` (upload to the page's view) | {rows['analyse']:.2f} | "
        f"{n_words / rows['analyse']:,.0f} |",
        f"| `POST /api/tag`, the same fic again (warm cache) | {rows['tag, warm cache']:.3f} | "
        f"{n_words / rows['tag, warm cache']:,.0f} |",
        "",
        f"Server peak RSS (VmHWM, whole run): {hwm:,.0f} MB.",
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return {"timings": rows, "peak_rss_mb": hwm, "words": n_words, "passages": passages}


def processes_and_corpora(
    args: argparse.Namespace, fics: dict[int, Path], sizes: list[int], tmp: Path
) -> tuple[dict[str, dict[str, float]], dict[int, dict[str, float]]]:
    """(f) and (g): the CLI as separate processes, and corpora of growing size."""
    from tropeml.model.onnx_backend import OnnxEncoder

    env = {
        **os.environ,
        "TROPEML_CACHE_DIR": str(tmp / "cache"),
        "PYTHONWARNINGS": "ignore",
    }
    env["TROPEML_ONNX_DIR"] = str(OnnxEncoder().folder.parent)
    tropeml_bin = str(VENV_BIN / "tropeml")
    short = fics[sizes[0]]
    procs = {
        "tropeml --help": time_process([tropeml_bin, "--help"], 2 * args.repeats + 1, env),
        f"cold `tropeml tag` ({sizes[0]} words, fast)": time_process(
            [tropeml_bin, "tag", "--backend", "fast", "--no-cache", "--json", str(short)],
            2 * args.repeats + 1,
            env,
        ),
    }
    corpora: dict[int, dict[str, float]] = {}
    base_fic = fics[sizes[0]].read_text(encoding="utf-8")
    for n in [int(c) for c in args.corpus_sizes.split(",") if c]:
        folder = tmp / f"corpus-{n}"
        folder.mkdir()
        for i in range(n):
            line = f"Work {i}: a note of its own, number {i * 7919 % 10007}.\n\n"
            (folder / f"work-{i:05d}.txt").write_text(line + base_fic, encoding="utf-8")
        out = tmp / f"corpus-{n}.jsonl"
        corpora[n] = time_process(
            [tropeml_bin, "tag", "--backend", "fast", str(folder), "--out", str(out)], 1, env
        )
        got = sum(1 for _ in out.open(encoding="utf-8"))
        assert got == n, f"{out}: {got} results for {n} works"
        corpora[n]["words"] = n * len(base_fic.split())
        print(
            f"g {n} works  {corpora[n]['seconds']:.1f} s  {corpora[n]['peak_rss_mb']:.0f} MB",
            file=sys.stderr,
        )
    return procs, corpora


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", nargs=2, metavar=("CONTENDER", "FIC"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--corpus-sizes", default="50,200,800")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speed.md")
    parser.add_argument("--only-web", action="store_true", help="Run (h) alone.")
    parser.add_argument("--web-words", type=int, default=20_000)
    parser.add_argument(
        "--model",
        type=Path,
        help="Time this model folder (and its encoder, for (a)) instead of the shipped one; "
        "runs (a)-(e) only.",
    )
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]), args.repeats, args.model)))
        return
    if args.only_web:
        web_bench(args.web_words, args.repeats, ROOT / "benchmarks" / "results" / "web.md")
        return

    from rich.console import Console

    from tropeml.model.onnx_backend import OnnxEncoder

    source = model_encoder(args.model)
    meta = OnnxEncoder(source).ensure_built()  # built once, outside the timings
    OnnxEncoder(source, precision="fp32").ensure_built()
    meta["commit"] = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="tropeml-speed-"))
    sizes = [int(s) for s in args.sizes.split(",")]
    fics = {}
    for size in sizes:
        fics[size] = tmp / f"fic-{size}.txt"
        fics[size].write_text(build_fic(size), encoding="utf-8")
    rows: list[dict[str, Any]] = []
    for size in sizes:
        reps = args.repeats if size < 100_000 else max(2, args.repeats - 1)
        for contender in CONTENDERS:
            row = run_child(contender, fics[size], reps, args.model)
            rows.append(row)
            print(
                f"{contender} {row['words']:>7} words  {row['seconds']:8.3f} s  "
                f"{row['passages']} passages  {row['peak_rss_mb']:.0f} MB",
                file=sys.stderr,
            )
    procs: dict[str, dict[str, float]] = {}
    corpora: dict[int, dict[str, float]] = {}
    if args.model is None:
        procs, corpora = processes_and_corpora(args, fics, sizes, tmp)
    else:
        meta["model"] = str(args.model)
    report = render(rows, procs, meta, args.repeats, corpora)
    console = Console(width=180)
    console.print(report["table"])
    for line in report["markdown"].split("Warm cache against cold")[1].splitlines()[1:]:
        console.print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report["markdown"], encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


def render(
    rows: list[dict[str, Any]],
    procs: dict[str, dict[str, float]],
    meta: dict[str, Any],
    reps: int,
    corpora: dict[int, dict[str, float]] | None = None,
) -> dict[str, Any]:
    from rich.table import Table

    by = {(r["contender"], r["words"]): r for r in rows}
    sizes = sorted({r["words"] for r in rows})
    cols = [
        "contender",
        "words",
        "passages",
        "median s",
        "words/s",
        "passages/s",
        "× (a)",
        "encoder share",
        "ms / 1k words",
        "peak RSS MB",
    ]
    table = Table(title="tropeml speed (medians; ratios against (a) on the same fic)", width=180)
    for c in cols:
        table.add_column(c, justify="left" if c == "contender" else "right")
    md = [
        "# Speed benchmark",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `benchmarks/speed.py` "
        f"(commit {meta.get('commit') or '?'}) on "
        f"{platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs, so "
        f"absolute times are noisy; ratios are measured in one run), Python "
        f"{platform.python_version()}. Medians of {reps} runs ({max(2, reps - 1)} at 100k "
        "words) after a warm-up run; each contender in its own process."
        + (f" Model: `{meta['model']}` (its encoder for (a))." if meta.get("model") else ""),
        "",
        f"Fast backend: int8 ONNX, cosine to the float encoder on {meta['probes']} probe "
        f"texts: mean {meta['mean_cosine']:.4f}, min {meta['min_cosine']:.4f}.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for words in sizes:
        base = by[("a", words)]
        base_wps = base["words"] / base["seconds"]
        for c, label in CONTENDERS.items():
            r = by[(c, words)]
            wps = r["words"] / r["seconds"]
            share = (
                "-"
                if c == "a" or r["encoder_seconds"] != r["encoder_seconds"]
                else f"{r['encoder_seconds'] / r['seconds']:.1%}"
            )
            cells = [
                f"({c}) {label}",
                f"{r['words']:,}",
                str(r["passages"]),
                f"{r['seconds']:.3f}",
                f"{wps:,.0f}",
                f"{r['passages'] / r['seconds']:,.1f}",
                f"{wps / base_wps:.2f}",
                share,
                f"{1000 * r['seconds'] / r['words'] * 1000:.1f}",
                f"{r['peak_rss_mb']:.0f}",
            ]
            table.add_row(*cells)
            md.append("| " + " | ".join(cells) + " |")
    md += [
        "",
        "Warm cache against cold: (d) against (c), the same fast backend with every passage "
        "embedded:",
        "",
    ]
    for words in sizes:
        c, d = by[("c", words)], by[("d", words)]
        md.append(
            f"- {words:,} words: cold {c['seconds']:.3f} s, warm {d['seconds']:.3f} s: "
            f"{c['seconds'] / d['seconds']:.0f}× faster"
        )
    md += ["", "Cost per word and memory as the fic grows (fast backend, (c)):", ""]
    small, big = by[("c", sizes[0])], by[("c", sizes[-1])]
    md.append(
        f"- {sizes[0]:,} → {sizes[-1]:,} words ({big['words'] / small['words']:.0f}× the text): "
        f"time × {big['seconds'] / small['seconds']:.1f}, peak RSS "
        f"{small['peak_rss_mb']:.0f} → {big['peak_rss_mb']:.0f} MB"
    )
    md += ["", "Overhead beyond the encoder (fast backend, (c): 1 − encoder share):", ""]
    for words in sizes:
        c = by[("c", words)]
        md.append(f"- {words:,} words: {1 - c['encoder_seconds'] / c['seconds']:.1%}")
    md += ["", "Separate processes (median of several runs):", ""] if procs else []
    for name, p in procs.items():
        md.append(
            f"- {name}: {p['seconds']:.2f} s (min {p['min']:.2f} s), peak RSS "
            f"{p['peak_rss_mb']:.0f} MB"
        )
    if corpora:
        md += [
            "",
            "Corpora, (g): `tropeml tag FOLDER --out FILE`, one process each (peak RSS of the "
            "whole process):",
            "",
            "| works | words | seconds | works/s | peak RSS MB |",
            "|---:|---:|---:|---:|---:|",
        ]
        for n, p in corpora.items():
            md.append(
                f"| {n} | {int(p['words']):,} | {p['seconds']:.1f} | {n / p['seconds']:.1f} | "
                f"{p['peak_rss_mb']:.0f} |"
            )
    md += [
        "",
        "Words per second over the repeated runs (min - median - max; each contender in its own",
        "process, the same fic, after one warm-up run):",
        "",
        "| contender | words | words/s min | median | max | × (a), worst to best |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        plain = by.get(("a", size))
        for key, label in CONTENDERS.items():
            r = by.get((key, size))
            if r is None or not r.get("times"):
                continue
            rates = sorted(size / t for t in r["times"])
            ratio = ""
            if plain is not None and plain.get("times") and key != "a":
                p_rates = sorted(size / t for t in plain["times"])
                ratio = f"{rates[0] / p_rates[-1]:.2f} - {rates[-1] / p_rates[0]:.2f}"
            md.append(
                f"| ({key}) {label} | {size:,} | {rates[0]:,.0f} | "
                f"{statistics.median(rates):,.0f} | {rates[-1]:,.0f} | {ratio} |"
            )
    md.append("")
    return {"table": table, "markdown": "\n".join(md)}


if __name__ == "__main__":
    main()
