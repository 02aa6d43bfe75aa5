"""The reported work score: a logistic regression on the evidence (tropeml.model.workcal)."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_passage

from tropeml.core.errors import TropemlError
from tropeml.core.taxonomy import Taxonomy
from tropeml.core.types import Passage
from tropeml.model.decision import CLIP, beyond, fit_null, log_chance, logits
from tropeml.model.encoders import HashingEncoder
from tropeml.model.persistence import load_head
from tropeml.model.rollup import tag_results
from tropeml.model.shipped import WORK_CALIBRATOR
from tropeml.model.workcal import (
    FEATURES,
    CrossScore,
    WorkCalibrator,
    ending_evidence,
    ending_passages,
    evidence_features,
    fit_cross,
    fit_tag_offsets,
    fit_work_calibrator,
)
from tropeml.serve.tagger import Tagger

MU, SIGMA, ALPHA = np.array([-3.0, -2.0]), np.array([1.0, 2.0]), np.array([0.01, 1e-6])


def test_evidence_features_are_the_ranks_the_length_and_the_best_z_scores() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.001, 0.999, size=(7, 2))
    f = evidence_features(p, MU, SIGMA, ALPHA)
    assert f.shape == (2, len(FEATURES))
    for k in range(1, 5):
        assert np.allclose(f[:, k - 1], beyond(log_chance(p, MU, SIGMA, k), ALPHA))
    assert np.allclose(f[:, 4], math.log(7))
    best = -np.sort(-logits(p), axis=0)[:5]
    assert np.allclose(f[:, 5:], np.clip((best - MU) / SIGMA, -10, 30).T)
    assert (f[:, 5:-1] >= f[:, 6:] - 1e-12).all()  # z-scores best first


def test_a_short_work_gets_the_floor_for_ranks_it_lacks_and_zero_z_scores() -> None:
    p = np.array([[0.99, 0.5], [0.2, 0.4]])
    f = evidence_features(p, MU, SIGMA, ALPHA)
    assert (f[:, 2:4] == -CLIP).all()  # no third or fourth passage
    assert (f[:, 7:] == 0.0).all()  # nor a third to fifth best z-score
    assert (f[:, 5:7] != 0.0).all()


def test_predict_is_the_logistic_of_the_weighted_features_plus_the_tags_offset() -> None:
    cal = WorkCalibrator(-1.0, tuple(0.1 * i for i in range(len(FEATURES))), {"a": 2.0})
    x = np.arange(2 * len(FEATURES), dtype=float).reshape(2, -1) / 10
    got = cal.predict(x, ["a", "other"])
    z = -1.0 + x @ np.array(cal.weights) + np.array([2.0, 0.0])
    assert np.allclose(got, 1 / (1 + np.exp(-z)))


def test_a_calibrator_survives_its_config_entry_and_refuses_bad_numbers() -> None:
    entry = json.loads(json.dumps(WORK_CALIBRATOR.to_config()))
    assert WorkCalibrator.from_config(entry) == WORK_CALIBRATOR
    with pytest.raises(ValueError, match="needs 10 weights"):
        WorkCalibrator(0.0, (1.0, 2.0))
    with pytest.raises(ValueError, match="finite"):
        WorkCalibrator(float("nan"), (0.0,) * len(FEATURES))
    with pytest.raises(ValueError, match="unknown work-calibrator features"):
        WorkCalibrator.from_config(entry | {"features": ["d1"]})


def test_fitting_learns_that_stronger_evidence_and_a_likelier_tag_score_higher() -> None:
    rng = np.random.default_rng(1)
    n = 400
    tags = ["good"] * n + ["bad"] * n
    x = rng.normal(size=(2 * n, len(FEATURES)))
    z = 2.0 * x[:, 1] + np.where(np.array(tags) == "good", 1.0, -1.0)
    y = (rng.uniform(size=2 * n) < 1 / (1 + np.exp(-z))).astype(int)
    cal = fit_work_calibrator(x, tags, y)
    assert cal.weights[1] > 1.0  # d2 carries the signal
    assert cal.tags["good"] > cal.tags["bad"]
    assert max(abs(w) for i, w in enumerate(cal.weights) if i != 1) < 0.5


def test_refitting_some_tags_offsets_leaves_the_rest_and_minimises_their_penalised_loss() -> None:
    rng = np.random.default_rng(2)
    before = WorkCalibrator(-1.0, tuple(rng.normal(size=len(FEATURES))), {"a": 0.3, "b": -0.2})
    x = rng.normal(size=(300, len(FEATURES)))
    tags = ["b"] * 100 + ["new"] * 200
    y = (rng.uniform(size=300) < 0.7).astype(int)  # more positives than the weights predict
    after = fit_tag_offsets(before, x, tags, y, ["b", "new", "unjudged"])
    assert (after.intercept, after.weights, after.floor) == (-1.0, before.weights, 0.0)
    assert after.tags["a"] == 0.3 and "unjudged" not in after.tags  # untouched / no pairs
    for tag in ("b", "new"):  # the gradient of log loss + offset**2 / (2 C) vanishes
        rows = np.array(tags) == tag
        p = after.predict(x[rows], [tag] * int(rows.sum()))
        assert abs(np.sum(p - y[rows]) + after.tags[tag] / 0.1) < 1e-6
    assert after.tags["b"] > -0.2


def _chance_tagger(tiny_model: Path, calibrator: WorkCalibrator | None) -> Tagger:
    head, _, taxonomy = load_head(tiny_model)
    encoder = HashingEncoder(64)
    rng = random.Random(7)
    background = [make_passage(rng, [], 60) for _ in range(200)]
    mu, sigma = fit_null(head.predict_proba(encoder.embed(background), background))
    null = (np.maximum(mu, -8.0), np.maximum(sigma, 1.0))
    return Tagger(head, taxonomy, encoder, null=null, k=2, mask_names=False, calibrator=calibrator)


def test_a_calibrator_changes_the_scores_but_not_which_tags_a_work_gets(tiny_model: Path) -> None:
    rng = random.Random(3)
    text = "\n\n\n".join(make_passage(rng, tags, 60) for tags in [["rain"], [], ["rain"], ["cake"]])
    plain = _chance_tagger(tiny_model, None).tag(text)
    doubt = WorkCalibrator(-3.0, (0.0,) * len(FEATURES), {"rain": -2.0})
    tagger = _chance_tagger(tiny_model, doubt)
    result = tagger.tag(text)
    assert [t.id for t in result.tags] == [t.id for t in plain.tags] != []
    assert all(t.threshold is None and t.score < 0.05 for t in result.tags)
    assert result.scores["rain"] == pytest.approx(1 / (1 + math.exp(5.0)))
    assert json.loads(json.dumps(result.to_dict()))["tags"][0]["threshold"] is None
    fired = tagger.fired(np.array(result.passage_scores))
    assert {t.id for t in result.tags} == {t for t, f in zip(tagger.tags, fired, strict=True) if f}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(weights=[1.0]), "'rollup.calibrator' must give its 'features'"),
        (lambda c: c.update(features=["d1"]), "'rollup.calibrator' must give its 'features'"),
        (lambda c: c.pop("tags"), "'rollup.calibrator.tags' missing"),
        (lambda c: c.update(floor=1.5), "a 'floor' and per-tag 'floors' and 'sure' scores"),
        (lambda c: c.update(floors={"rain": -0.1}), "per-tag 'floors' and 'sure' scores"),
        (lambda c: c.update(sure={"rain": 1.0}), "'sure' scores, each in [0, 1)"),
        (lambda c: c.update(cross={"rain": {"bias": "1", "weights": {}}}), "per-tag 'cross'"),
        (lambda c: c.update(cross={"rain": {"bias": 1.0}}), "rain.weights' missing"),
        (lambda c: c.update(cross={"rain": {"bias": 1, "weights": {}, "reads": "x"}}), "'reads'"),
    ],
)
def test_a_model_with_a_broken_calibrator_is_refused_in_one_line(
    tiny_model: Path, tmp_path: Path, change: object, message: str
) -> None:
    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    entry = WORK_CALIBRATOR.to_config()
    change(entry)  # type: ignore[operator]
    config["rollup"]["calibrator"] = entry
    path.write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(TropemlError) as err:
        Tagger.from_pretrained(folder, cache=False)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_floor_hides_the_tags_that_score_under_it_and_is_their_threshold(
    tiny_model: Path,
) -> None:
    rng = random.Random(3)
    scenes = [["rain"], [], ["rain"], ["cake"], ["rain"]]
    text = "\n\n\n".join(make_passage(rng, tags, 60) for tags in scenes)
    free = _chance_tagger(tiny_model, WorkCalibrator(0.0, (0.0,) * len(FEATURES))).tag(text)
    assert {t.id for t in free.tags} and all(t.score == 0.5 for t in free.tags)
    rain = {"rain": 3.0}  # rain scores sigmoid(3), the others one half
    above = WorkCalibrator(0.0, (0.0,) * len(FEATURES), rain, floor=0.6)
    result = _chance_tagger(tiny_model, above).tag(text)
    assert [t.id for t in result.tags] == [t.id for t in free.tags if t.id == "rain"] == ["rain"]
    assert result.tags[0].threshold == 0.6 and result.tags[0].score >= 0.6
    assert WorkCalibrator.from_config(above.to_config()) == above
    assert WORK_CALIBRATOR.to_config()["floor"] == 0.4  # the shipped floor
    with pytest.raises(ValueError, match="floor must be in"):
        WorkCalibrator(0.0, (0.0,) * len(FEATURES), floor=1.0)


def test_a_tags_own_floor_replaces_the_shared_one_for_that_tag(tiny_model: Path) -> None:
    rng = random.Random(3)
    scenes = [["rain"], [], ["rain"], ["cake"], ["rain"]]
    text = "\n\n\n".join(make_passage(rng, tags, 60) for tags in scenes)
    half = (0.0, (0.0,) * len(FEATURES))  # every tag scores one half
    assert "rain" in {
        t.id for t in _chance_tagger(tiny_model, WorkCalibrator(*half)).tag(text).tags
    }
    stricter = WorkCalibrator(*half, floor=0.4, floors={"rain": 0.6})
    assert "rain" not in {t.id for t in _chance_tagger(tiny_model, stricter).tag(text).tags}
    looser = WorkCalibrator(*half, floor=0.6, floors={"rain": 0.4})
    shown = _chance_tagger(tiny_model, looser).tag(text).tags
    assert [(t.id, t.threshold) for t in shown if t.id == "rain"] == [("rain", 0.4)]
    assert looser.floor_of("rain") == 0.4 and looser.floor_of("cake") == 0.6
    assert WorkCalibrator.from_config(looser.to_config()) == looser
    assert WORK_CALIBRATOR.to_config()["floors"]["cuddling"] == 0.7  # the eight other tags
    with pytest.raises(ValueError, match="floor for 'rain' must be in"):
        WorkCalibrator(*half, floors={"rain": 1.0})


def test_a_cross_tag_reads_every_tags_base_score_and_the_others_keep_theirs() -> None:
    cross = {"a": CrossScore(0.5, {"a": 0.2, "b": -1.0, "absent": 9.0})}
    cal = WorkCalibrator(-1.0, tuple(i / 8 for i in range(len(FEATURES))), {"b": 1.0})
    crossed = WorkCalibrator(cal.intercept, cal.weights, cal.tags, cross=cross)
    x = np.arange(3 * len(FEATURES), dtype=float).reshape(3, -1) / 20
    tags = ["a", "b", "c"]
    base = cal.predict(x, tags)
    got = crossed.predict_work(x, tags)
    z = logits(base)
    assert got[0] == pytest.approx(1 / (1 + math.exp(-(0.5 + 0.2 * z[0] - 1.0 * z[1]))))
    assert np.array_equal(got[1:], base[1:]) and np.array_equal(cal.predict_work(x, tags), base)
    assert WorkCalibrator.from_config(json.loads(json.dumps(crossed.to_config()))) == crossed
    with pytest.raises(ValueError, match="finite"):
        WorkCalibrator(0.0, (0.0,) * len(FEATURES), cross={"a": CrossScore(math.inf, {})})


def test_a_cross_tag_is_decided_by_its_floor_alone_the_others_need_the_chance_rule_too() -> None:
    cal = WorkCalibrator(0.0, (0.0,) * len(FEATURES), floor=0.4, cross={"a": CrossScore(0, {})})
    chance, scores = np.array([False, False, True, True]), np.array([0.5, 0.5, 0.3, 0.5])
    assert cal.decide(chance, scores, ["a", "b", "c", "d"]).tolist() == [True, False, False, True]
    assert not cal.decide(chance, np.full(4, 0.39), ["a", "b", "c", "d"]).any()


def test_a_sure_score_shows_a_tag_without_the_chance_rule_but_not_under_its_floor() -> None:
    half = (0.0, (0.0,) * len(FEATURES))
    cal = WorkCalibrator(*half, floor=0.4, floors={"c": 0.9}, sure={"a": 0.7, "c": 0.7})
    chance = np.array([False, False, False, True])
    scores = np.array([0.7, 0.8, 0.8, 0.45])  # "b" has no sure score; "c"'s floor is higher
    assert cal.decide(chance, scores, ["a", "b", "c", "d"]).tolist() == [True, False, False, True]
    assert not cal.decide(chance, np.full(4, 0.69), ["a", "b", "c", "d"])[:3].any()
    assert WorkCalibrator.from_config(json.loads(json.dumps(cal.to_config()))) == cal
    assert "sure" not in WorkCalibrator(*half).to_config()
    with pytest.raises(ValueError, match="sure score for 'a' must be in"):
        WorkCalibrator(*half, sure={"a": 1.0})


def test_fitting_a_cross_score_learns_which_tags_go_together() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.05, 0.95, size=(400, 3))
    y = (rng.uniform(size=400) < base[:, 1]).astype(int)  # the work shows "a" when "b" is likely
    cross = fit_cross(base, ["a", "b", "c"], y)
    assert cross.weights["b"] > 0.5 > abs(cross.weights["a"]) and abs(cross.weights["c"]) < 0.5


def test_an_ending_cross_score_reads_each_tags_best_passage_in_the_last_tenth() -> None:
    p = np.full((20, 2), 0.01)
    p[0, 0] = 0.99  # an early peak is not the ending
    p[18, 1], p[19, 1] = 0.9, 0.5
    assert [ending_passages(n) for n in (0, 1, 3, 10, 11, 20)] == [0, 1, 1, 1, 2, 2]
    e = ending_evidence(p, MU, SIGMA)
    assert e == pytest.approx((logits(np.array([0.01, 0.9])) - MU) / SIGMA)
    tags = ["a", "b"]
    cal = WorkCalibrator(
        0.0, (0.0,) * len(FEATURES), cross={"a": CrossScore(0.5, {"b": 2.0}, "ending")}
    )
    features = evidence_features(p, MU, SIGMA, ALPHA)
    got = cal.predict_work(features, tags, e)
    assert got[0] == pytest.approx(1 / (1 + math.exp(-(0.5 + 2.0 * e[1]))))
    assert got[1] == cal.predict(features, tags)[1]
    with pytest.raises(ValueError, match="needs the work's ending evidence"):
        cal.predict_work(features, tags)
    config = json.loads(json.dumps(cal.to_config()))
    assert config["cross"]["a"]["reads"] == "ending" and WorkCalibrator.from_config(config) == cal
    with pytest.raises(ValueError, match="reads one of"):
        CrossScore(0.0, {}, "middle")


def test_a_tag_read_from_the_ending_shows_evidence_from_the_ending() -> None:
    cal = WorkCalibrator(0.0, (0.0,) * len(FEATURES), cross={"a": CrossScore(0.0, {}, "ending")})
    assert cal.evidence_from(20, ["a", "b"]).tolist() == [18, 0]
    assert cal.for_tags(["a", "b"]) == cal and cal.for_tags(["b"]).cross == {}
    assert WORK_CALIBRATOR.for_tags(["happy_ending", "fluff"]).cross == {}  # no grief to read
    p = np.full((20, 2), 0.2)
    p[3] = 0.9  # both tags' best passage is early; a's ending holds passages 18 and 19
    p[19, 0] = 0.5
    passages = [Passage(i * 10, i * 10 + 9, "x" * 9) for i in range(20)]
    results = tag_results(
        p,
        np.array([0.8, 0.8]),
        passages,
        ["a", "b"],
        np.array([0.4, 0.4]),
        np.array([0.5, 0.5]),
        Taxonomy([]),
        fired=np.array([True, True]),
        evidence_from=cal.evidence_from(20, ["a", "b"]),
    )
    evidence = {r.id: [e.start for e in r.evidence] for r in results}
    assert evidence == {"a": [190], "b": [30]}


def test_fitting_an_ending_score_reads_only_its_inputs() -> None:
    rng = np.random.default_rng(1)
    ending = rng.normal(size=(400, 3))
    y = (ending[:, 2] + rng.normal(0, 0.5, 400) > 0).astype(int)
    cross = fit_cross(np.full((400, 3), 0.5), ["a", "b", "c"], y, "ending", ending, ["a", "c"])
    assert cross.reads == "ending" and set(cross.weights) == {"a", "c"}
    assert cross.weights["c"] > 1.0 > abs(cross.weights["a"])


def test_the_shipped_calibrator_reads_happy_ending_from_the_ending_alone() -> None:
    # the twenty-third test: cross scores on every tag's score ranked no better than the tags'
    # own on public-domain prose; the twenty-fourth: happy_ending read from the last tenth did;
    # the twenty-sixth: refitted on every read work, shown from 0.69
    assert set(WORK_CALIBRATOR.cross) == {"happy_ending"}
    ending = WORK_CALIBRATOR.cross["happy_ending"]
    assert ending.reads == "ending" and set(ending.weights) == {
        "happy_ending",
        "fluff",
        "angst",
        "grief",
    }
    assert ending.weights["fluff"] > 0 > ending.weights["grief"]
    assert WORK_CALIBRATOR.floor_of("happy_ending") == 0.69
    assert WORK_CALIBRATOR.floor_of("first_kiss") == WORK_CALIBRATOR.floor == 0.4


def test_the_shipped_calibrator_shows_reunion_only_from_half() -> None:
    # the twenty-seventh test: a shown reunion under 0.5 was more often false than right
    assert WORK_CALIBRATOR.floor_of("reunion") == 0.5
    assert WORK_CALIBRATOR.floor_of("first_kiss") == WORK_CALIBRATOR.floor == 0.4


def test_the_shipped_calibrator_is_sure_of_the_required_tags_from_0_7() -> None:
    # the twenty-ninth and thirtieth tests: a required tag scored 0.7 or more is shown without
    # the chance rule; a shown fake_death under 0.65 was more often false than right
    assert WORK_CALIBRATOR.floor_of("fake_death") == 0.65
    assert len(WORK_CALIBRATOR.sure) == 10 and set(WORK_CALIBRATOR.sure.values()) == {0.7}
    assert "cuddling" not in WORK_CALIBRATOR.sure  # the eight other tags need the chance rule
