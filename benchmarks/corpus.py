"""Corpus benchmark: distinct works, cache cold and warm, the screen, Ray with 1 and 2 actors.

Run from the repository root with the project's virtual environment::

    .venv/bin/python benchmarks/corpus.py [--sizes 50,500] [--big 5000] [--out PATH]

Corpora are folders of distinct works built from text in the repository: the public-domain
background prose (``data/background``), the written dev works (``data/dev/works/written``)
and the written exemplars (``data/exemplars``); no reserved title is among them. Paragraphs
are dealt out in a fixed shuffled order, each work taking paragraphs until it has about
``--words`` words. Once the pool runs out it is dealt again, each paragraph losing a random
number of its first sentences, so works recombine paragraphs without repeating passages; the
script splits every work as the model does and reports how many passages repeat (0 means
the cache cannot help a cold run).

Every row is one ``tropeml tag FOLDER --out FILE`` process (fast backend), timed from start
to exit, with its own peak RSS (``wait4``). *Cold*: an empty embedding cache (the int8 ONNX
model is already built). *Warm*: the same corpus again with the cache the cold run filled.
*Screened*: ``--screen``, cache cold, on the small corpus and on a corpus of long works
(``--long`` works of ``--long-words`` words). The big corpus (``--big`` works of
``--big-words`` words) is tagged cold (time, peak memory), then again warm, killed halfway
through and resumed, to check that the rerun does only the unfinished works. Ray rows run
``--engine ray`` with 1 and then 2 actors on the same corpus, cache cold.

Also reported: the screen's agreement with the full pipeline on the dev works (decisions of
the 10 required tags) and the share of passages it sends to the full encoder.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TROPEML = [sys.executable, "-m", "tropeml"]


def paragraphs() -> list[str]:
    """Every paragraph of the repository's own prose (PD background, written works, exemplars)."""
    out: list[str] = []
    files = sorted((ROOT / "data" / "background").glob("*.txt"))
    files += sorted((ROOT / "data" / "dev" / "works" / "written").glob("*.txt"))
    for f in files:
        out += [p.strip() for p in re.split(r"\n\s*\n", f.read_text(encoding="utf-8"))]
    for f in sorted((ROOT / "data" / "exemplars").glob("*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(str(json.loads(line)["text"]).strip())
    return [p for p in out if len(p.split()) >= 8]


def build_corpus(folder: Path, n: int, words: int, seed: int = 0) -> int:
    """Write ``n`` distinct works of about ``words`` words into ``folder``; total words."""
    pool = paragraphs()
    rng = random.Random(seed)
    order = list(range(len(pool)))
    rng.shuffle(order)
    folder.mkdir(parents=True, exist_ok=True)
    at, deal, total = 0, 0, 0
    for i in range(n):
        parts: list[str] = []
        count = 0
        while count < words:
            if at == len(order):
                at, deal = 0, deal + 1
                rng.shuffle(order)
            text = pool[order[at]]
            at += 1
            if deal:  # a later deal: drop some first sentences so no passage repeats
                sentences = re.split(r"(?<=[.!?])\s+", text)
                text = " ".join(sentences[rng.randint(1, max(1, len(sentences) - 1)) :]) or text
            parts.append(text)
            count += len(text.split())
        (folder / f"work-{i:05d}.txt").write_text("\n\n".join(parts) + "\n", encoding="utf-8")
        total += count
    return total


def repeated_passages(folder: Path) -> tuple[int, int]:
    """(passages, passages whose text occurs before) over the corpus, split as the model does."""
    import tropeml
    from tropeml.io.readers import read_work

    tagger = tropeml.load(backend="fast", cache=False)
    seen: set[str] = set()
    total = repeats = 0
    for path in sorted(folder.glob("*.txt")):
        for p in tagger.passages(read_work(path)):
            total += 1
            repeats += p.text in seen
            seen.add(p.text)
    return total, repeats


def run(args: list[str], env: dict[str, str], kill_after: float | None = None) -> dict[str, Any]:
    """Run ``tropeml ARGS``; seconds, peak RSS (MB) and exit code."""
    with tempfile.TemporaryFile() as log:
        t0 = time.monotonic()
        proc = subprocess.Popen([*TROPEML, *args], env=env, stdout=subprocess.DEVNULL, stderr=log)
        if kill_after is not None:
            time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        err = log.read().decode(errors="replace")
    if proc.returncode not in (0, -signal.SIGKILL):
        raise SystemExit(f"tropeml {' '.join(args)} failed: {err[-2000:]}")
    return {"seconds": seconds, "rss_mb": usage.ru_maxrss / 1024, "rc": proc.returncode}


def lines(path: Path) -> list[str]:
    """The complete JSON lines of an ``--out`` file (a torn last line left out)."""
    if not path.exists():
        return []
    out = []
    for ln in path.read_text(encoding="utf-8").splitlines():
        try:
            json.loads(ln)
        except ValueError:
            continue
        out.append(ln)
    return out


def agreement() -> dict[str, Any]:
    """The screen against the full pipeline on the dev works (warm cache: only decisions)."""
    import tropeml
    from tropeml.io.devset import REQUIRED_TAGS, load_dev_works
    from tropeml.serve.screening import screened_scores

    full = tropeml.load(backend="fast")
    screened = tropeml.load(backend="fast", screen=True)
    assert screened.screen is not None
    items = load_dev_works()
    works = [i.work for i in items]
    ref = full.tag_many(works)
    rows = []
    for margin in (1.0, 1.25, 1.5, 2.0):
        screened.screen.margin = margin
        got, n_full, n_all = [], 0, 0
        for at in range(0, len(works), 8):
            chunk = works[at : at + 8]
            ps = [screened.passages(w) for w in chunk]
            tx = [screened.texts(p, w) for p, w in zip(ps, chunk, strict=True)]
            scores, fulls = screened_scores(screened, screened.screen, tx)
            n_full += sum(int(f.sum()) for f in fulls)
            n_all += sum(len(f) for f in fulls)
            got += [screened.result(w, p, s) for w, p, s in zip(chunk, ps, scores, strict=True)]
        same = total = same_evidence = shared = 0
        recall: dict[str, list[int]] = {}
        for item, a, b in zip(items, ref, got, strict=True):
            fa, fb = {t.id: t for t in a.tags}, {t.id: t for t in b.tags}
            for t in full.tags:  # every tag the model has, not only the required ones
                total += 1
                same += (t in fa) == (t in fb)
                if t in fa and t in fb:
                    shared += 1
                    top = [[(e.start, e.end) for e in x[t].evidence[:1]] for x in (fa, fb)]
                    same_evidence += top[0] == top[1]
                if t in REQUIRED_TAGS and item.judgments[t] == 1:
                    r = recall.setdefault(t, [0, 0, 0])
                    r[0], r[1], r[2] = r[0] + 1, r[1] + (t in fa), r[2] + (t in fb)
        drop = max((r[1] - r[2]) / r[0] for r in recall.values())
        rows.append(
            {
                "margin": margin,
                "agreement": same / total,
                "differ": total - same,
                "decisions": total,
                "same_top_evidence": f"{same_evidence} of {shared}",
                "full_share": n_full / n_all,
                "passages": n_all,
                "max_recall_drop": drop,
            }
        )
    return {"works": len(items), "rows": rows}


START, END = "<!-- corpus.py -->", "<!-- /corpus.py -->"


def markdown(r: dict[str, Any]) -> str:
    """The results as the section of ``speed.md`` that this script owns."""
    out = [
        START,
        "## Distinct-work corpora, the screen, Ray (`benchmarks/corpus.py`)",
        "",
        f"Measured {r['date']} at commit {r['commit']} on {r['cpus']} CPU cores (load average "
        f"{r['load_before']:.1f} before, {r['load_after']:.1f} after: other jobs were running, "
        "so absolute rates are low and rough; rows of one table ran back to back). Every row "
        "is one `tropeml tag FOLDER --out FILE --backend fast` process, timed start to exit "
        "(model loading included), peak RSS of that process (from `wait4`; an upper bound: Linux "
        "can hand a child the benchmark process's own peak when the child used less). Works "
        "are distinct: built from "
        "the repository's public-domain background prose, written works and exemplars (see "
        "the script's docstring).",
        "",
        "| run | works | words | seconds | works/s | words/s | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["rows"]:
        out.append(
            f"| {row['label']} | {row['works']:,} | {row['words']:,} | {row['seconds']:.1f} | "
            f"{row['works_s']:.2f} | {row['words_s']:,.0f} | {row['rss_mb']:.0f} |"
        )
    out.append("")
    for key, value in r.items():
        if key.startswith("passages_"):
            out.append(
                f"- corpus {key[9:]}: {value['passages']:,} passages, {value['repeats']} repeated"
            )
    by = {row["label"]: row for row in r["rows"]}
    for n in sorted({row["works"] for row in r["rows"] if "cold" in row["label"]}):
        cold, scr = by.get(f"{n} cold"), by.get(f"{n} screened cold")
        if cold and scr:
            warm = by[f"{n} warm"]["words_s"] / cold["words_s"]
            out.append(
                f"- {n} works: screened cold {scr['words_s'] / cold['words_s']:.2f}x the words/s "
                f"of the full pipeline cold; warm {warm:.1f}x"
            )
    ray1, ray2 = by.get("ray 1 actor(s) cold"), by.get("ray 2 actor(s) cold")
    if ray1 and ray2:
        out.append(
            f"- Ray: 2 actors {ray1['seconds'] / ray2['seconds']:.2f}x the speed of 1 actor "
            "(peak RSS is the driver's only; actors are Ray's processes)"
        )
    for key in [k for k in by if k.endswith(", screened cold")]:
        full = by[key.replace(", screened cold", ", cold")]
        gain = by[key]["words_s"] / full["words_s"]
        out.append(
            f"- {key[: -len(', screened cold')]}: screened {gain:.2f}x the words/s of the full "
            "pipeline, both cold"
        )
    big = r.get("big")
    if big:
        out += [
            "",
            f"{big['works']:,} works ({big['words']:,} words): "
            f"cold {big['cold']['seconds']:.0f} s, "
            f"peak RSS {big['cold']['rss_mb']:.0f} MB; warm {big['warm']['seconds']:.0f} s. "
            f"Killed (SIGKILL) {big['killed_at_s']:.0f} s into a warm rerun with "
            f"{big['done_before_kill']:,} works written; the rerun took "
            f"{big['rerun']['seconds']:.0f} s and left {big['total_after_rerun']:,} lines for "
            f"{big['distinct_after_rerun']:,} distinct works.",
        ]
    agree = r.get("agreement")
    if agree:
        out += [
            "",
            f"The screen against the full pipeline on the {agree['works']} dev works "
            "(decisions on every tag of the model, and the first evidence passage of the tags "
            "both give; cache warm, so only decisions and the share of passages the full "
            "encoder sees count here):",
            "",
            "| margin | decisions identical | differ | same first evidence | full encoder on "
            "| largest recall drop |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for row in agree["rows"]:
            out.append(
                f"| {row['margin']} | {row['agreement']:.3f} | {row['differ']} of "
                f"{row['decisions']} | {row.get('same_top_evidence', '-')} | "
                f"{row['full_share']:.1%} of {row['passages']:,} passages "
                f"| {row['max_recall_drop']:.3f} |"
            )
    out += ["", END]
    return "\n".join(out) + "\n"


def write_section(path: Path, section: str) -> None:
    """Put ``section`` into ``path`` in place of the previous one (or at the end)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if START in text and END in text:
        before, rest = text.split(START, 1)
        text = before + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="50,500")
    ap.add_argument("--words", type=int, default=1000)
    ap.add_argument("--big", type=int, default=5000)
    ap.add_argument("--big-words", type=int, default=100)
    ap.add_argument("--long", type=int, default=20, help="works of --long-words words")
    ap.add_argument("--long-words", type=int, default=10000)
    ap.add_argument("--screen-max", type=int, default=50, help="largest corpus also screened")
    ap.add_argument("--ray-size", type=int, default=100)
    ap.add_argument("--markdown", type=Path, default=ROOT / "benchmarks" / "results" / "speed.md")
    ap.add_argument("--no-agreement", action="store_true", help="skip the dev-works check")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "corpus.json")
    a = ap.parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="tropeml-corpus-"))
    onnx = os.environ.get("TROPEML_ONNX_DIR", str(Path.home() / ".cache" / "tropeml" / "onnx"))
    base_env = {**os.environ, "TROPEML_ONNX_DIR": onnx, "PYTHONWARNINGS": "ignore"}
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg()[0],
        "rows": [],
    }

    def row(label: str, corpus: Path, n: int, words: int, extra: list[str], cache: Path) -> None:
        out = work / f"{label}.jsonl".replace(" ", "_")
        env = {**base_env, "TROPEML_CACHE_DIR": str(cache)}
        r = run(["tag", str(corpus), "--out", str(out), "--backend", "fast", *extra], env)
        assert len(lines(out)) == n, f"{label}: {len(lines(out))} of {n} works written"
        r.update(label=label, works=n, words=words, works_s=n / r["seconds"])
        r["words_s"] = words / r["seconds"]
        results["rows"].append(r)
        print(json.dumps(r), flush=True)

    for n in [int(x) for x in a.sizes.split(",")]:
        corpus = work / f"c{n}"
        words = build_corpus(corpus, n, a.words)
        total, repeats = repeated_passages(corpus)
        results[f"passages_{n}"] = {"passages": total, "repeats": repeats}
        cache = work / f"cache{n}"
        row(f"{n} cold", corpus, n, words, [], cache)
        row(f"{n} warm", corpus, n, words, [], cache)
        if n <= a.screen_max:
            row(f"{n} screened cold", corpus, n, words, ["--screen"], work / f"cache{n}s")

    if a.long:  # long works: where most passages carry no trope and the screen can help
        corpus = work / "long"
        words = build_corpus(corpus, a.long, a.long_words, seed=3)
        total, repeats = repeated_passages(corpus)
        results["passages_long"] = {"passages": total, "repeats": repeats}
        label = f"{a.long} x {a.long_words:,}-word works"
        row(f"{label}, cold", corpus, a.long, words, [], work / "cache-long")
        row(f"{label}, screened cold", corpus, a.long, words, ["--screen"], work / "cache-ls")

    corpus = work / "ray"
    words = build_corpus(corpus, a.ray_size, a.words, seed=1)
    for actors in (1, 2):
        row(
            f"ray {actors} actor(s) cold",
            corpus,
            a.ray_size,
            words,
            ["--engine", "ray", "--actors", str(actors)],
            work / f"cache-ray{actors}",
        )

    if a.big:  # cold once for time and memory; then killed halfway and resumed (warm)
        corpus = work / "big"
        words = build_corpus(corpus, a.big, a.big_words, seed=2)
        total, repeats = repeated_passages(corpus)
        results["passages_big"] = {"passages": total, "repeats": repeats}
        row(f"{a.big} cold", corpus, a.big, words, [], work / "cache-big")
        first = results["rows"][-1]
        out = work / "big.jsonl"
        env = {**base_env, "TROPEML_CACHE_DIR": str(work / "cache-big")}
        args = ["tag", str(corpus), "--out", str(out), "--backend", "fast"]
        warm = run(args, env)
        out.unlink()
        killed = run(args, env, kill_after=warm["seconds"] / 2)
        done = len(lines(out))
        rerun = run(args, env)
        ids = [json.loads(ln)["id"] for ln in lines(out)]
        results["big"] = {
            "works": a.big,
            "words": words,
            "cold": first,
            "warm": warm,
            "killed_at_s": warm["seconds"] / 2,
            "killed": killed,
            "done_before_kill": done,
            "rerun": rerun,
            "total_after_rerun": len(ids),
            "distinct_after_rerun": len(set(ids)),
        }
        print(json.dumps(results["big"]), flush=True)

    if not a.no_agreement:
        results["agreement"] = agreement()
    results["load_after"] = os.getloadavg()[0]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    write_section(a.markdown, markdown(results))
    shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
