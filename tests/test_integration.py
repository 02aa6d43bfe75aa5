"""End to end with the real shipped encoder (all-MiniLM-L6-v2, offline) and the default model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tropeml
from tropeml import __version__
from tropeml.core.resources import default_model_dir
from tropeml.core.types import WorkResult
from tropeml.io.readers import read_work
from tropeml.model.persistence import CONFIG_FILE, load_model, save_model
from tropeml.model.shipped import WORK_CALIBRATOR

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
SEEDS = sorted((ROOT / "seeds").glob("*.txt"))
SEED = {p.name[:3]: p for p in SEEDS}
VENV_BIN = Path(sys.executable).parent
MAX_SEQ = 256  # all-MiniLM-L6-v2 reads 256 tokens, [CLS] and [SEP] included


@pytest.fixture(scope="module")
def tagger(tmp_path_factory: pytest.TempPathFactory, onnx_dir: Path) -> Iterator[tropeml.Tagger]:
    """The shipped model with the real encoder, loaded once; its cache lives in a temp dir.

    (Module fixtures run before the function-scoped isolation fixture, so the environment is
    set here too and the cache path is explicit: the user's cache is never touched.)
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setenv("TROPEML_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        mp.setenv("TROPEML_ONNX_DIR", str(onnx_dir))  # the session's one int8 build
        t = tropeml.load(  # the backend the model was trained and calibrated on
            cache=tmp_path_factory.mktemp("icache") / "embeddings.sqlite3", backend="fast"
        )
        t.encoder.embed(["warm up: load the weights while offline is enforced"])
        yield t


@pytest.fixture(scope="module")
def results(tagger: tropeml.Tagger) -> dict[str, WorkResult]:
    return {key: tagger.tag(read_work(path), source=str(path)) for key, path in SEED.items()}


def _ids(result: WorkResult) -> set[str]:
    return {t.id for t in result.tags}


def test_seeds_are_there() -> None:
    assert set(SEED) == {"000", "001", "002"}


def test_default_model_loads(tagger: tropeml.Tagger) -> None:
    assert default_model_dir() == ROOT / "models" / "default"
    config = json.loads((default_model_dir() / CONFIG_FILE).read_text(encoding="utf-8"))
    assert tagger.name == config["name"] == "default"
    assert tagger.tags == config["tags"]
    assert len(tagger.thresholds) == len(config["tags"])
    assert set(tagger.taxonomy) >= set(config["tags"])
    assert tagger.encoder.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert tagger.encoder.max_tokens == MAX_SEQ - 2


def test_encoder_dimension_and_normalisation(tagger: tropeml.Tagger) -> None:
    texts = ["Derek woke in the hospital.", "Stiles screamed.", "A quiet morning, coffee."]
    X = tagger.encoder.embed(texts)
    assert X.shape == (3, 384)
    assert X.dtype == np.float32
    assert tagger.encoder.dimension == 384
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(X[0], X[1])
    # The same text embeds the same way, cached or not.
    np.testing.assert_allclose(tagger.encoder.embed(texts[:1]), X[:1], atol=1e-6)


def test_seed_000_fake_death_and_hurt_comfort(results: dict[str, WorkResult]) -> None:
    result = results["000"]
    assert {"fake_death", "hurt_comfort"} <= _ids(result), result.scores


def test_seed_000_fake_death_evidence_is_the_death_scene(
    results: dict[str, WorkResult], tagger: tropeml.Tagger
) -> None:
    text = SEED["000"].read_text(encoding="utf-8")
    # Derek found dead in the loft, and Derek waking in hospital ("You died").
    found = text.find("Stiles screamed, wrenching away")
    wakes = text.find("There was a warm body curled around his own")
    died = text.find("“You died,” Stiles said")
    assert -1 not in (found, wakes, died) and found < wakes < died
    scene = (found, died + len("“You died,” Stiles said"))
    (fake_death,) = [t for t in results["000"].tags if t.id == "fake_death"]
    assert fake_death.evidence
    overlapping = [e for e in fake_death.evidence if e.start < scene[1] and e.end > scene[0]]
    assert overlapping, [(e.start, e.end) for e in fake_death.evidence]
    # the best evidence passage is over the tag's passage threshold (``threshold`` is the
    # work-level one)
    passage_threshold = float(tagger.thresholds[tagger.tags.index("fake_death")])
    assert fake_death.evidence[0].score >= passage_threshold


def test_seed_001_mates_and_omegaverse(results: dict[str, WorkResult]) -> None:
    assert {"mates", "alpha_beta_omega"} <= _ids(results["001"]), results["001"].scores


def test_seed_002_reunion(results: dict[str, WorkResult]) -> None:
    assert "reunion" in _ids(results["002"]), results["002"].scores


@pytest.mark.parametrize("key", ["000", "001", "002"])
def test_result_json_has_every_tag(
    key: str, tagger: tropeml.Tagger, results: dict[str, WorkResult]
) -> None:
    config = json.loads((default_model_dir() / CONFIG_FILE).read_text(encoding="utf-8"))
    obj = json.loads(json.dumps(results[key].to_dict()))
    assert obj["source"] == str(SEED[key])
    assert obj["model"] == "default"
    assert set(obj["scores"]) == set(config["tags"])
    assert obj["n_passages"] == len(tagger.passages(read_work(SEED[key])))
    text = SEED[key].read_text(encoding="utf-8")
    scores = np.array(results[key].passage_scores)
    fired = {t for t, f in zip(tagger.tags, tagger.fired(scores), strict=True) if f}
    fired |= set(WORK_CALIBRATOR.cross)  # cross tags: their floor alone decides
    fired |= {t for t, bar in WORK_CALIBRATOR.sure.items() if obj["scores"][t] >= bar}
    floor = WORK_CALIBRATOR.floor_of
    shown = {t for t in fired if obj["scores"][t] >= floor(t)}
    assert {tag["id"] for tag in obj["tags"]} == shown  # the chance rule and the floors decide
    for tag in obj["tags"]:
        assert tag["threshold"] == floor(tag["id"]) <= tag["score"] <= 1.0
        assert tag["score"] == obj["scores"][tag["id"]]
        assert tag["name"] == tagger.taxonomy[tag["id"]].name
        for ev in tag["evidence"]:
            assert ev["text"] == text[ev["start"] : ev["end"]]


class _Spy:
    """Wraps an encoder and records every text it is asked to embed."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.seen: list[str] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def embed(self, texts: list[str]) -> np.ndarray:
        self.seen.extend(texts)
        return self.inner.embed(texts)  # type: ignore[attr-defined, no-any-return]


def _sentence_transformer(encoder: object) -> Any:
    """The sentence-transformers encoder under caches, spies and the ONNX backend."""
    while not hasattr(type(encoder), "_model"):
        encoder = next(
            getattr(encoder, name)
            for name in ("inner", "encoder", "_float")
            if hasattr(encoder, name)
        )
    return encoder


def _assert_fits(tagger: tropeml.Tagger, texts: list[str], what: str) -> None:
    counts = tagger.encoder.count_tokens(texts)
    over = [(n, t[:60]) for n, t in zip(counts, texts, strict=True) if n + 2 > MAX_SEQ]
    assert not over, (what, over)
    # Cross-check with the tokenizer sentence-transformers feeds the model
    # (special tokens included, no truncation).
    st_tokenizer = _sentence_transformer(tagger.encoder)._model().tokenizer
    ids = st_tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
    assert max(len(x) for x in ids) <= MAX_SEQ, what


def test_every_seed_passage_fits_the_encoder(tagger: tropeml.Tagger) -> None:
    for path in SEEDS:
        work = read_work(path)
        passages = tagger.passages(work)
        assert len(passages) >= 5, path
        for p in passages:
            assert p.text == work.text[p.start : p.end]
        _assert_fits(tagger, [p.text for p in passages], path.name)


def test_what_the_encoder_is_given_fits_too(
    tagger: tropeml.Tagger, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The text embedded may differ from the passage text (e.g. names masked); it must fit too.
    spy = _Spy(tagger.encoder)
    monkeypatch.setattr(tagger, "encoder", spy)
    for path in SEEDS:
        n = len(spy.seen)
        tagger.tag(read_work(path))
        assert len(spy.seen) - n == len(tagger.passages(read_work(path)))
    _assert_fits(tagger, spy.seen, "embedded texts")


def test_save_load_round_trip_gives_identical_scores(
    tagger: tropeml.Tagger, tmp_path: Path
) -> None:
    classifier, config, _ = load_model(default_model_dir())
    kept = {"format", "format_version", "tropeml_version", "head", "packages"}
    kept |= {"files", "content_sha256"}
    folder = save_model(
        tmp_path / "copy",
        classifier,
        {k: v for k, v in config.items() if k not in kept},
        default_model_dir() / "tropes.toml",
        (default_model_dir() / "README.md").read_text(encoding="utf-8"),
    )
    # Same (cached) encoder for both, so the embeddings are bit-for-bit the same.
    copy = tropeml.load(folder, encoder=tagger.encoder, cache=False)
    assert copy.tags == tagger.tags
    np.testing.assert_array_equal(copy.thresholds, tagger.thresholds)
    saved = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    assert {k: v for k, v in saved.items() if k not in kept} == {
        k: v for k, v in config.items() if k not in kept
    }
    work = read_work(SEED["001"])
    passages = tagger.passages(work)
    X, texts = tagger.embed(passages, work), tagger.texts(passages, work)
    np.testing.assert_array_equal(
        copy.classifier.predict_proba(X, texts), tagger.classifier.predict_proba(X, texts)
    )
    a, b = tagger.tag(work), copy.tag(work)
    assert a.scores == b.scores
    assert a.to_dict() == b.to_dict()


def _run(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=timeout,
        check=False,
    )


def test_python_m_tropeml_version(tmp_path: Path) -> None:
    proc = _run(sys.executable, "-m", "tropeml", "--version", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"tropeml {__version__}"


def test_console_script_help(tmp_path: Path) -> None:
    script = VENV_BIN / "tropeml"
    assert script.is_file()
    proc = _run(str(script), "--help", cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for command in ("tag", "train", "eval", "tropes"):
        assert command in proc.stdout


HEAVY = ("torch", "sklearn", "sentence_transformers", "transformers", "scipy", "skops")


def test_help_does_not_import_heavy_libraries(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.argv = ['tropeml', '--help']\n"
        "from tropeml.cli.app import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    proc = _run(sys.executable, "-c", code, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("ok")


def test_help_import_time_has_no_torch(tmp_path: Path) -> None:
    proc = _run(
        sys.executable, "-X", "importtime", str(VENV_BIN / "tropeml"), "--help", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "tropeml.cli.app" in imported
    assert not {m for m in imported if m.split(".")[0] in HEAVY}


def test_cli_tags_a_seed_with_the_real_model(tmp_path: Path) -> None:
    env_cache = tmp_path / "cache"
    proc = subprocess.run(
        [str(VENV_BIN / "tropeml"), "tag", str(SEED["002"]), "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "TROPEML_CACHE_DIR": str(env_cache), "PYTHONWARNINGS": "ignore"},
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.strip().splitlines()
    obj = json.loads(line)
    assert obj["source"] == str(SEED["002"])
    assert "reunion" in {t["id"] for t in obj["tags"]}
    assert (env_cache / "embeddings.sqlite3").is_file()


def test_seed_decisions_do_not_depend_on_batching_or_the_cache(
    tagger: tropeml.Tagger, results: dict[str, WorkResult], tmp_path: Path
) -> None:
    """tag, tag_many, a fresh tagger without a cache, and --out at any --batch-size agree."""
    from test_cli import run

    works = [read_work(p) for p in SEEDS]
    alone = [_ids(results[p.name[:3]]) for p in SEEDS]
    assert [_ids(r) for r in tagger.tag_many(works)] == alone
    fresh = tropeml.load(cache=False, backend="fast")
    uncached = [fresh.tag(w) for w in works]
    assert [_ids(r) for r in uncached] == alone
    for a, b in zip(uncached, tagger.tag_many(works[::-1])[::-1], strict=True):
        # the vectors are bit for bit the same (test_backends); the head's lexical view sums
        # in blocks, so scores agree to float rounding
        assert a.scores.keys() == b.scores.keys()
        assert all(abs(a.scores[t] - b.scores[t]) < 1e-6 for t in a.scores)
    for batch in (1, 3):
        out = tmp_path / f"b{batch}.jsonl"
        args: list[str | Path] = [
            "tag",
            *map(str, SEEDS),
            "--out",
            out,
            "--batch-size",
            str(batch),
            "--no-cache",
        ]
        assert run(*args, "--backend", "fast").exit_code == 0
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        by_source = {
            Path(r.get("source") or r["id"]).name[:3]: {t["id"] for t in r["tags"]} for r in rows
        }
        hidden = {
            Path(r.get("source") or r["id"]).name[:3]: set(r.get("hidden_spoilers", []))
            for r in rows
        }
        assert [by_source[p.name[:3]] | hidden[p.name[:3]] for p in SEEDS] == alone


def test_seed_decisions_match_the_model_card(
    tagger: tropeml.Tagger, results: dict[str, WorkResult]
) -> None:
    """The tagger serves the vectors the head was calibrated on, and the card's seed tags."""
    from tropeml.model.encoders import encoder_id

    config = json.loads((default_model_dir() / CONFIG_FILE).read_text(encoding="utf-8"))
    served = encoder_id(tagger.encoder)
    assert served == config["encoder"]["id"]
    card = (default_model_dir() / "README.md").read_text(encoding="utf-8")
    section = card.split("## The seeds as served", 1)[1]
    assert f"`{served}`" in section
    table = {
        line.split("|")[1].strip(" `")[:3]: {t.strip() for t in line.split("|")[2].split(",")}
        for line in section.splitlines()
        if line.startswith("| `")
    }
    assert table == {key: _ids(result) for key, result in results.items()}


def test_the_readme_examples_are_this_model_on_the_default_backend(
    results: dict[str, WorkResult],
) -> None:
    """The README's table and JSON examples show what `tropeml tag` gives now (fast backend).

    Scores are compared to 0.05: the int8 encoder's arithmetic differs between CPUs (the
    shipped model gave fake_death 0.105 on one machine and 0.081 on another, and work
    scores magnify small logit changes); which tag and which passage are exact.
    """
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("$ .venv/bin/tropeml tag seeds/000_77fbc02fa2239641.txt\n", 1)[1]
    first = results["000"].without_spoilers().tags[0]  # the CLI hides spoiler tags
    row = table.splitlines()[4]
    assert row.split("│")[1].strip() == first.name
    assert f"[{first.evidence[0].start}-{first.evidence[0].end}]" in row
    example = readme.split('{"source": "seeds/002_1ddad86479ad2531.txt"', 1)[1].split("```")[0]
    got = results["002"]
    for tag in ("hurt_comfort", "fake_death", "reunion"):
        shown = float(re.search(rf'"{tag}": ([0-9.]+)', example).group(1))  # type: ignore[union-attr]
        assert shown == pytest.approx(got.scores[tag], abs=0.05), tag
    reunion = next(t for t in got.tags if t.id == "reunion").to_dict()
    ev = reunion["evidence"][0]
    assert f'"threshold": {reunion["threshold"]}' in example
    prominence = float(re.search(r'"prominence": ([0-9.]+)', example).group(1))  # type: ignore[union-attr]
    assert prominence == pytest.approx(reunion["prominence"], abs=0.05)
    shown_ev = re.search(r'\{"start": (\d+), "end": (\d+), "score": ([0-9.]+)', example)
    assert shown_ev is not None
    assert (int(shown_ev.group(1)), int(shown_ev.group(2))) == (ev["start"], ev["end"])
    assert float(shown_ev.group(3)) == pytest.approx(ev["score"], abs=0.05)


def test_the_shipped_screen_keeps_every_seeds_tags_and_evidence(
    tagger: tropeml.Tagger, results: dict[str, WorkResult]
) -> None:
    from tropeml.model.screen import SCREEN_DIR, Screen

    config = json.loads((default_model_dir() / CONFIG_FILE).read_text(encoding="utf-8"))
    screen = Screen.load(default_model_dir() / SCREEN_DIR, config["screen"])
    tagger.screen = screen  # same encoder and cache: only the screen differs
    try:
        for key, path in SEED.items():
            got = tagger.tag(read_work(path), source=str(path))
            full = results[key]
            assert _ids(got) == _ids(full), key
            for tag in got.tags:  # evidence comes from the full encoder: the same passages
                expected = next(t for t in full.tags if t.id == tag.id)
                assert [(e.start, e.end) for e in tag.evidence][:1] == [
                    (e.start, e.end) for e in expected.evidence
                ][:1], (key, tag.id)
    finally:
        tagger.screen = None
