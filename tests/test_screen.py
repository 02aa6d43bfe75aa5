"""The screen: the full encoder only where a tag can change, the same tags, evidence in full."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FILLER, TINY_TAGS, VOCAB, make_passage
from model2vec import StaticModel
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from tropeml.core.errors import TropemlError
from tropeml.core.types import Work
from tropeml.io.readers import parse_text
from tropeml.model.decision import fit_null, logits
from tropeml.model.encoders import HashingEncoder
from tropeml.model.persistence import attach_screen, load_head
from tropeml.model.screen import SCREEN_DIR, Screen, fit_screen
from tropeml.model.workcal import FEATURES, CrossScore, WorkCalibrator, ending_passages
from tropeml.serve.screening import screened_scores
from tropeml.serve.tagger import Tagger


class CountingEncoder(HashingEncoder):
    """The hashing encoder, counting the texts it embeds."""

    seen = 0

    def embed(self, texts: list[str]) -> Any:
        self.seen += len(texts)
        return super().embed(texts)


def tiny_static() -> StaticModel:
    """A model2vec static model over the tiny data's words, built in code (one-hot vectors:
    the hashing encoder is a bag of words, so a linear map can nearly reproduce it)."""
    words = sorted({w.lower() for w in FILLER} | {w for t in TINY_TAGS for w in VOCAB[t]})
    vocab = {"[UNK]": 0, "[PAD]": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    vectors = np.eye(len(vocab), dtype=np.float32)
    return StaticModel(vectors, tokenizer, normalize=True)


def prose(rng: random.Random, n: int, tag_every: int = 0) -> Work:
    """``n`` paragraphs of filler, one in ``tag_every`` with a tag's words."""
    paras = [
        make_passage(rng, [TINY_TAGS[i % 3]] if tag_every and i % tag_every == 0 else [], 60)
        for i in range(n)
    ]
    return parse_text("\n\n".join(paras), source=f"work-{n}-{tag_every}")


@pytest.fixture(scope="module")
def taggers(tiny_model: Path) -> tuple[Tagger, Tagger, CountingEncoder]:
    """The tiny model with a null, without and with a screen (sharing a counting encoder)."""
    head, _, taxonomy = load_head(tiny_model)
    encoder = CountingEncoder(64)
    rng = random.Random(1)
    background = [make_passage(rng, [], 60) for _ in range(200)]
    X = np.asarray(encoder.embed(background), dtype=np.float32)
    mu, sigma = fit_null(head.predict_proba(X, background))
    null = (np.maximum(mu, -8.0), np.maximum(sigma, 1.0))  # filler never scores some tags at all
    train = background + [make_passage(rng, [t], 60) for t in TINY_TAGS for _ in range(30)]
    X = np.asarray(encoder.embed(train), dtype=np.float32)
    screen = fit_screen(
        tiny_static(), train, X, lambda X_, t: logits(head.predict_proba(X_, t)), margin=1.0
    )
    kwargs: dict[str, Any] = {"null": null, "alpha": dict.fromkeys(TINY_TAGS, 0.05), "k": 2}
    kwargs["mask_names"] = False
    plain = Tagger(head, taxonomy, encoder, **kwargs)
    return plain, Tagger(head, taxonomy, encoder, screen=screen, **kwargs), encoder


def test_a_screen_with_an_endless_margin_changes_nothing(taggers: Any) -> None:
    plain, screened, _ = taggers
    works = [prose(random.Random(s), 12, tag_every=s % 4) for s in range(6)]
    screened.screen.margin = float("inf")
    try:
        a, b = plain.tag_many(works), screened.tag_many(works)
    finally:
        screened.screen.margin = 1.0
    assert [r.to_dict() for r in a] == [r.to_dict() for r in b]


def test_screened_tags_match_and_cost_fewer_encoder_passes(taggers: Any) -> None:
    plain, screened, encoder = taggers
    works = [prose(random.Random(s), 20, tag_every=7 if s % 2 else 0) for s in range(8)]
    before = encoder.seen
    expected = plain.tag_many(works)
    full_cost = encoder.seen - before
    before = encoder.seen
    got = screened.tag_many(works)
    assert encoder.seen - before < full_cost / 2
    assert [{t.id for t in r.tags} for r in got] == [{t.id for t in r.tags} for r in expected]
    for r, e in zip(got, expected, strict=True):  # evidence scored by the full encoder
        by_id = {t.id: t for t in e.tags}
        for tag in r.tags:
            full = {(ev.start, ev.end): ev.score for ev in by_id[tag.id].evidence}
            for ev in tag.evidence:
                if (ev.start, ev.end) in full:
                    assert ev.score == pytest.approx(full[(ev.start, ev.end)])


def test_tag_uses_the_screen_too(taggers: Any) -> None:
    plain, screened, _ = taggers
    text = prose(random.Random(3), 10, tag_every=3).text
    assert {t.id for t in screened.tag(text).tags} == {t.id for t in plain.tag(text).tags}


def test_a_screen_needs_a_null(tiny_model: Path, taggers: Any) -> None:
    head, _, taxonomy = load_head(tiny_model)
    with pytest.raises(TropemlError, match="null"):
        Tagger(head, taxonomy, HashingEncoder(64), screen=taggers[1].screen)


def test_saved_screen_loads_and_refuses_a_changed_file(
    tiny_model: Path, taggers: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    import shutil

    shutil.copytree(tiny_model, folder)
    attach_screen(folder, taggers[1].screen)
    entry = json.loads((folder / "config.json").read_text())["screen"]
    loaded = Screen.load(folder / SCREEN_DIR, entry)
    texts = ["the rain fell", "a cake"]
    assert np.allclose(loaded.approximate(texts), taggers[1].screen.approximate(texts), atol=1e-5)
    load_head(folder)  # the folder still verifies
    (folder / SCREEN_DIR / "map.npz").write_bytes(b"not a map")
    with pytest.raises(TropemlError, match="changed"):
        Screen.load(folder / SCREEN_DIR, entry)


def test_loading_a_model_without_a_screen_for_screening_is_one_clear_error(
    tiny_model: Path,
) -> None:
    with pytest.raises(TropemlError, match="no screen"):
        Tagger.from_pretrained(tiny_model, encoder=HashingEncoder(64), screen=True, cache=False)


def test_cli_tag_screen_on_a_model_without_one_is_one_line(
    tiny_model: Path, tmp_path: Path
) -> None:
    from test_cli import all_text, run

    fic = tmp_path / "fic.txt"
    fic.write_text(prose(random.Random(0), 4).text, encoding="utf-8")
    result = run("tag", fic, "--model", tiny_model, "--screen", "--no-cache")
    assert result.exit_code != 0
    assert "no screen" in all_text(result) and "Traceback" not in all_text(result)


def test_train_screen_needs_a_model_folder_to_distil(tiny_root: Path) -> None:
    from tropeml.model.training import train

    with pytest.raises(TropemlError):
        train(
            tiny_root / "data",
            root=tiny_root,
            out=tiny_root / "m",
            encoder=HashingEncoder(64),
            cache=False,
            evaluate=False,
            screen=True,
        )
    assert not (tiny_root / "m").exists()  # nothing half-written


def test_info_reports_the_screen_and_a_changed_file(
    tiny_model: Path, taggers: Any, tmp_path: Path
) -> None:
    import shutil

    from tropeml.serve.about import describe

    assert describe(tiny_model)["model"]["screen"].startswith("none")
    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    attach_screen(folder, taggers[1].screen)
    assert describe(folder)["model"]["screen"].startswith("ok (margin 1.0")
    (folder / SCREEN_DIR / "map.npz").write_bytes(b"changed")
    assert "changed" in describe(folder)["model"]["screen"]


def test_a_calibrated_tagger_reports_probabilities_and_decides_the_same(taggers: Any) -> None:
    plain, _, encoder = taggers
    calibrated = Tagger(
        plain.classifier,
        plain.taxonomy,
        encoder,
        null=plain.null,
        alpha=dict.fromkeys(TINY_TAGS, 0.05),
        k=2,
        mask_names=False,
        calibration=(-0.4, 0.9),
    )
    assert np.allclose(calibrated.work_thresholds, 1 / (1 + np.exp(0.4)))
    rng = random.Random(5)
    for work in (prose(rng, 40), prose(rng, 40, tag_every=4), prose(rng, 3, tag_every=1)):
        a, b = plain.tag(work), calibrated.tag(work)
        assert [t.id for t in a.tags] == [t.id for t in b.tags]
        assert all(0 < s < 1 for s in b.scores.values())
        assert all(t.threshold is not None and t.score >= t.threshold for t in b.tags)
    with pytest.raises(TropemlError, match="positive slope"):
        Tagger(plain.classifier, plain.taxonomy, encoder, null=plain.null, calibration=(0, 0))


def test_with_a_cross_tag_the_best_passages_of_every_tag_are_scored_in_full(
    taggers: Any,
) -> None:
    _, screened, _ = taggers
    works = [prose(random.Random(s), 20, tag_every=0) for s in range(3)]  # no tag fires
    texts = [screened.texts(screened.passages(w), w) for w in works]
    _, plain_full = screened_scores(screened, screened.screen, texts)
    cross = WorkCalibrator(0.0, (0.0,) * len(FEATURES), cross={"rain": CrossScore(0.0, {})})
    screened.calibrator = cross
    try:
        scores, crossed_full = screened_scores(screened, screened.screen, texts)
    finally:
        screened.calibrator = None
    for s, a, b in zip(scores, plain_full, crossed_full, strict=True):
        assert (a <= b).all() and b.sum() > a.sum()
        for j in range(s.shape[1]):  # each tag's best passage is scored in full
            assert b[int(np.argmax(s[:, j]))]
    ending = {"rain": CrossScore(0.0, {}, "ending")}
    screened.calibrator = WorkCalibrator(0.0, (0.0,) * len(FEATURES), cross=ending)
    try:
        _, ending_full = screened_scores(screened, screened.screen, texts)
    finally:
        screened.calibrator = None
    for a, b in zip(plain_full, ending_full, strict=True):  # an ending score's passages
        assert b[-ending_passages(len(b)) :].all()
        assert (b[: -ending_passages(len(b))] == a[: -ending_passages(len(b))]).all()  # only
