"""``tropeml tune``: alphas and calibration chosen on judged works, written into the model."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_passage, write_tiny_data
from test_cli import run, stderr_of, stdout_of

from tropeml.core.errors import TropemlError
from tropeml.core.types import Work
from tropeml.io.devset import REQUIRED_TAGS, DevItem
from tropeml.io.readers import parse_text
from tropeml.model.decision import fit_null
from tropeml.model.encoders import HashingEncoder
from tropeml.model.persistence import load_head
from tropeml.model.shipped import WORK_CALIBRATOR
from tropeml.model.training import train
from tropeml.model.workcal import FEATURES, CrossScore, WorkCalibrator
from tropeml.serve.tagger import Tagger, load
from tropeml.serve.targets import informative, judged, meets, target
from tropeml.serve.tuning import GRID, UNCALIBRATED, choose, evidence, tune


def _work(rng: random.Random, scenes: int, tag: str = "rain", n: int = 24) -> Work:
    """``n`` paragraphs of filler, ``scenes`` of them (spread out) with ``tag``'s words."""
    at = set(range(0, n, max(1, n // scenes))[:scenes]) if scenes else set()
    paras = [make_passage(rng, [tag] if i in at else [], 60) for i in range(n)]
    return parse_text("\n\n".join(paras), source="w")


def test_choose_meets_the_target_then_moves_into_the_gap() -> None:
    neg = evidence(1 - np.array([0.1, 0.2, 0.3, 0.5, 0.6, 0.8, 0.9, 0.95, 0.99, 0.999999]))
    pos = np.array([8.0, 10.0, 5.0])  # decades beyond the null
    ev, y = np.r_[neg, pos], np.r_[np.zeros(10, int), np.ones(3, int)]
    alpha = choose(ev, y, "angst")
    assert alpha in GRID
    assert (neg >= evidence(alpha)).mean() <= target("angst")
    assert (pos >= evidence(alpha)).all()  # the margin keeps every work the edge found
    edge = choose(ev, y, "angst", margin=0)
    assert alpha <= edge
    assert target("mates") == 0.05 and target("angst") == 0.10


def test_choose_separates_works_far_beyond_float64s_resolution() -> None:
    # written look-alikes 12-19 decades out, the works that show the tag 27-60: one minus
    # the chance would read 1.0 for all of them; the evidence keeps them apart
    neg, pos = np.array([19.2, 13.3, 9.4, 6.7, 3.8]), np.array([38.8, 40.6, 59.0])
    ev, y = np.r_[neg, pos], np.r_[np.zeros(5, int), np.ones(3, int)]
    alpha = choose(ev, y, "alpha_beta_omega")
    assert 1e-39 < alpha < 1e-19
    assert (pos >= evidence(alpha)).all() and not (neg >= evidence(alpha)).any()


def test_per_kind_the_target_holds_on_each_kind_with_enough_trope_free_works() -> None:
    # 20 public-domain works without the tag, 3 of them look-alikes at 2.5 decades; 30
    # written works without it, all far under; 4 works show it, at 4 decades
    pd_neg, wr_neg = np.r_[np.full(3, 2.5), np.zeros(17)], np.zeros(30)
    ev = np.r_[pd_neg, wr_neg, np.full(4, 4.0)]
    y = np.r_[np.zeros(50, int), np.ones(4, int)]
    kinds = ["pd"] * 20 + ["written"] * 30 + ["pd"] * 4
    pooled, per_kind = choose(ev, y, "reunion", margin=0), choose(ev, y, "reunion", 0, kinds)
    assert ev[:20][:3].min() >= evidence(pooled)  # pooled: 3 of 50 = 6%, fires on 15% of pd
    assert not (pd_neg >= evidence(per_kind)).any() and (ev[-4:] >= evidence(per_kind)).all()
    fired = ev >= evidence(pooled)
    assert meets(fired, y, "reunion") and not meets(fired, y, "reunion", kinds)
    # a kind with fewer than 1/target trope-free works is not measured on its own
    small = ["pd"] * 5 + ["written"] * 49
    assert meets(np.r_[np.ones(1, bool), np.zeros(53, bool)], y, "reunion", small)


def test_informative_drops_the_trope_free_works_of_kinds_that_never_show_the_tag() -> None:
    y = np.array([1, 0, 0, 0, -1])
    kinds = ["written", "written", "pd", "pd", "pd"]
    assert informative(y, kinds).tolist() == [1, 0, -1, -1, -1]
    both = np.array([1, 0, 1, 0, 0])
    assert informative(both, ["written", "written", "pd", "pd", "pd"]).tolist() == both.tolist()
    none = np.array([0, 0, 0])  # nothing shows the tag: nothing to go by, nothing dropped
    assert informative(none, ["pd", "pd", "written"]).tolist() == none.tolist()
    work = parse_text("A line.", source="w")
    items = [
        DevItem("a", "written", work, {"mates": 1}, "T"),
        DevItem("b", "pd", work, {"mates": 0}, "T"),
        DevItem("c", "written", work, {}, "T"),
    ]
    assert {t: y.tolist() for t, y in judged(items, ["mates"]).items()} == {"mates": [1, -1, -1]}


def _tagger(model: Path, rng: random.Random, floor: bool = False, **kw: Any) -> Tagger:
    """The tiny model with a null from 200 filler passages (``floor``: kept off the extremes)."""
    head, _, taxonomy = load_head(model)
    encoder = HashingEncoder(64)
    background = [make_passage(rng, [], 60) for _ in range(200)]
    mu, sigma = fit_null(head.predict_proba(encoder.embed(background), background))
    null = (np.maximum(mu, -8.0), np.maximum(sigma, 1.0)) if floor else (mu, sigma)
    return Tagger(head, taxonomy, encoder, null=null, k=2, mask_names=False, **kw)


def test_tune_chooses_alphas_that_find_the_works_and_fits_a_calibrator(
    tiny_model: Path,
) -> None:
    rng = random.Random(3)
    alpha = {"rain": 1e-12, "cake": 0.5, "sword": 0.05}  # far too strict / too loose
    tagger = _tagger(tiny_model, rng, floor=True, alpha=alpha)
    judged = {"rain": 1, "cake": -1, "sword": 0}
    items = [DevItem(f"r{i}", "pd", _work(rng, 4), judged, "B") for i in range(6)]
    items += [DevItem(f"n{i}", "pd", _work(rng, 0), judged | {"rain": 0}, "B") for i in range(10)]
    result = tune(tagger, items)
    rain = next(c for c in result.choices if c.tag == "rain")
    assert rain.before == 1e-12 and rain.shown == 6 and rain.trope_free == 10
    assert rain.found == 6 and rain.false <= 1
    cake = next(c for c in result.choices if c.tag == "cake")
    assert cake.alpha == cake.before == 0.5  # no work judged not to show it: kept
    assert result.works == 16 and result.pairs == 32  # cake is unknown everywhere
    kept = tune(tagger, items, only=["sword"])  # rain's alpha is not chosen, only judged
    rain_kept = next(c for c in kept.choices if c.tag == "rain")
    assert rain_kept.alpha == rain_kept.before == 1e-12
    assert kept.pairs == result.pairs
    assert result.calibrator is not None and set(result.calibrator.tags) == {"rain", "sword"}
    floored = _tagger(tiny_model, random.Random(3), floor=True, alpha=alpha)
    sure = {"rain": 0.8}
    floored.calibrator = WorkCalibrator(0.0, (0.0,) * len(FEATURES), floor=0.3, sure=sure)
    refit = tune(floored, items).calibrator
    assert refit is not None and refit.floor == 0.3  # refitting keeps the model's floor
    assert refit.sure == sure  # and its sure scores: a decision rule, not fitted
    # the works full of rain are scored as likelier to show it than the trope-free ones
    scoring = _tagger(tiny_model, random.Random(3), floor=True, calibrator=result.calibrator)
    full, empty = (scoring.tag(_work(rng, n)).scores["rain"] for n in (4, 0))
    assert full > empty


def test_tuning_one_tag_refits_its_offset_only_and_skips_works_that_do_not_judge_it(
    tiny_model: Path,
) -> None:
    rng = random.Random(4)
    alpha = {"rain": 1e-12, "cake": 0.5, "sword": 0.05}
    before = WorkCalibrator(-1.0, (0.1,) * len(FEATURES), {"sword": 0.7}, floor=0.3)
    tagger = _tagger(tiny_model, rng, floor=True, alpha=alpha, calibrator=before)
    items = [DevItem(f"r{i}", "pd", _work(rng, 4), {"rain": 1}, "B") for i in range(6)]
    items += [DevItem(f"n{i}", "pd", _work(rng, 0), {"rain": 0}, "B") for i in range(10)]
    items += [DevItem(f"u{i}", "pd", _work(rng, 4), {"sword": 0}, "B") for i in range(3)]
    result = tune(tagger, items, only=["rain"])
    rain = next(c for c in result.choices if c.tag == "rain")
    assert (rain.shown, rain.trope_free) == (6, 10)  # the u-works do not judge rain
    assert rain.alpha != rain.before and rain.found == 6
    after = result.calibrator
    assert after is not None and (after.intercept, after.weights) == (-1.0, before.weights)
    assert after.tags["sword"] == 0.7 and after.floor == 0.3 and "rain" in after.tags
    assert after.floors == {}  # floors are kept, never fitted
    floored = tune(tagger, items, only=["rain"], floor=0.65).calibrator
    assert floored is not None and floored.floors == {"rain": 0.65} and floored.floor == 0.3
    shared = tune(tagger, items, floor=0.5).calibrator
    assert shared is not None and shared.floor == 0.5 and shared.floors == {}


@pytest.fixture(scope="module")
def chance_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model with a background null whose first tag is called ``hurt_comfort``."""
    root = tmp_path_factory.mktemp("tune")
    data = write_tiny_data(root)
    for path in [data / "tropes.toml", *data.glob("*/*.jsonl")]:
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace('"rain"', '"hurt_comfort"'), encoding="utf-8")
    rng = random.Random(5)
    (data / "background").mkdir()
    paras = [make_passage(rng, [], 240) for _ in range(220)]
    (data / "background" / "bg.txt").write_text("\n\n".join(paras), encoding="utf-8")
    out = root / "models" / "m"
    train(data, root=root, out=out, encoder=HashingEncoder(64), cache=False, evaluate=False)
    dev = data / "dev"
    (dev / "works" / "w").mkdir(parents=True)
    with (dev / "works" / "pd.jsonl").open("w", encoding="utf-8") as fh:
        for i, scenes in enumerate([4, 4, 4, 0, 0, 0, 0, 0]):
            name = f"data/dev/works/w/{i}.txt"
            (root / name).write_text(_work(rng, scenes).text, encoding="utf-8")
            judged = {t: "no" for t in REQUIRED_TAGS} | {"hurt_comfort": "yes" if scenes else "no"}
            fh.write(json.dumps({"id": f"w{i}", "title": "T", "file": name, "judgments": judged}))
            fh.write("\n")
    return out


def test_tune_from_the_cli_writes_the_config_and_the_model_still_loads(
    chance_model: Path,
) -> None:
    config = chance_model / "config.json"
    dev = chance_model.parent.parent / "data" / "dev"
    before = config.read_bytes()
    old, tags = json.loads(before)["rollup"]["calibrator"], json.loads(before)["tags"]
    assert old == WORK_CALIBRATOR.for_tags(tags).to_config()  # a new model: the shipped one
    dry = run("tune", dev, "--model", chance_model, "--dry-run", "--no-cache")
    assert dry.exit_code == 0, dry.output
    assert "hurt_comfort" in stdout_of(dry) and "dry run: nothing written" in stdout_of(dry)
    assert config.read_bytes() == before
    result = run("tune", dev, "--model", chance_model, "--no-cache")
    assert result.exit_code == 0, result.output
    assert "written to" in stdout_of(result)
    rollup = json.loads(config.read_text())["rollup"]
    tagger = load(chance_model, cache=False)  # still verifies: alphas are not hashed
    j = list(tagger.tags).index("hurt_comfort")
    assert tagger.alpha[j] == rollup["alpha"]["hurt_comfort"]
    assert "calibration" not in rollup and rollup["calibrator"]["features"] == list(FEATURES)
    assert rollup["calibrator"] != old  # fitted on these works
    assert tagger.calibrator == WorkCalibrator.from_config(rollup["calibrator"])
    card = (chance_model / "README.md").read_text(encoding="utf-8")
    assert "a logistic regression on its evidence" in card  # the card says what it does
    assert card.count("- Work score: ") == 1
    again = run("tune", dev, "--model", chance_model, "--no-cache")
    assert again.exit_code == 0, again.output
    assert json.loads(config.read_text())["rollup"] == rollup  # tuning is idempotent
    bad = run("tune", dev, "--model", chance_model, "--floor", "1", "--no-cache")
    assert bad.exit_code != 0 and "--floor must be in [0, 1)" in stderr_of(bad)
    own = run(
        "tune", dev, "--model", chance_model, "-t", "hurt_comfort", "--floor", "0.55", "--no-cache"
    )
    assert own.exit_code == 0, own.output
    assert "floor 0.55 for hurt_comfort" in stdout_of(own)
    assert "score offsets refitted" in stdout_of(own)
    assert "score calibrator fitted" not in stdout_of(own)  # only hurt_comfort's offset
    calibrator = json.loads(config.read_text())["rollup"]["calibrator"]
    assert calibrator["floors"]["hurt_comfort"] == 0.55
    tuned = load(chance_model, cache=False).calibrator
    assert tuned is not None
    assert tuned.floor_of("hurt_comfort") == 0.55
    card = (chance_model / "README.md").read_text(encoding="utf-8")
    assert "at least 0.55 for hurt_comfort" in card
    bad = run("tune", dev, "--model", chance_model, "--sure", "1.5", "--no-cache")
    assert bad.exit_code != 0 and "--sure must be in [0, 1)" in stderr_of(bad)
    sure = run("tune", dev, "--model", chance_model, "-t", "cake", "--sure", "0.8", "--no-cache")
    assert sure.exit_code == 0, sure.output
    assert "sure score 0.8 for cake: shown from it, chance rule or not" in stdout_of(sure)
    tuned = load(chance_model, cache=False).calibrator
    assert tuned is not None
    sured = tuned.sure
    assert sured["cake"] == 0.8 and sured["hurt_comfort"] == 0.7  # the others' stay
    card = (chance_model / "README.md").read_text(encoding="utf-8")
    assert "; cake from a score of 0.8" in card


def test_tune_cross_reads_a_tag_from_every_tags_score(chance_model: Path) -> None:
    dev = chance_model.parent.parent / "data" / "dev"
    args = ("tune", dev, "--model", chance_model, "--no-cache")
    unknown = run(*args, "--cross", "nosuch")
    assert unknown.exit_code != 0 and "--cross: the model has no tag nosuch" in stderr_of(unknown)
    result = run(*args, "-t", "hurt_comfort", "--cross", "hurt_comfort")
    assert result.exit_code == 0, result.output
    assert "cross score of hurt_comfort refitted on every tag's score" in stdout_of(result)
    calibrator = load(chance_model, cache=False).calibrator
    assert calibrator is not None and set(calibrator.cross) == {"hurt_comfort"}
    assert set(calibrator.cross["hurt_comfort"].weights) == set(load(chance_model).tags)


def test_tune_cross_ending_reads_the_inputs_in_the_works_last_tenth(chance_model: Path) -> None:
    dev = chance_model.parent.parent / "data" / "dev"
    args = ("tune", dev, "--model", chance_model, "--no-cache")
    alone = run(*args, "--ending")
    assert alone.exit_code != 0 and "are for the tags of --cross" in stderr_of(alone)
    unknown = run(*args, "--cross", "hurt_comfort", "--inputs", "nosuch")
    assert unknown.exit_code != 0 and "--inputs: the model has no tag nosuch" in stderr_of(unknown)
    inputs = ("--inputs", "hurt_comfort", "--inputs", "cake")
    result = run(*args, "-t", "hurt_comfort", "--cross", "hurt_comfort", "--ending", *inputs)
    assert result.exit_code == 0, result.output
    assert "cross score of hurt_comfort refitted on its ending" in stdout_of(result)
    calibrator = load(chance_model, cache=False).calibrator
    assert calibrator is not None
    cross = calibrator.cross["hurt_comfort"]
    assert cross.reads == "ending" and set(cross.weights) == {"hurt_comfort", "cake"}
    again = run(*args, "-t", "hurt_comfort")  # refitted: it keeps what it reads
    assert again.exit_code == 0, again.output
    kept = load(chance_model, cache=False).calibrator
    assert kept is not None and kept.cross["hurt_comfort"].reads == "ending"
    assert set(kept.cross["hurt_comfort"].weights) == {"hurt_comfort", "cake"}


def test_tune_refuses_the_shipped_model_and_a_model_without_a_null(
    chance_model: Path, tiny_model: Path
) -> None:
    dev = chance_model.parent.parent / "data" / "dev"
    shipped = run("tune", dev, "--no-cache")
    assert shipped.exit_code != 0
    assert "refusing to change the shipped default model" in stderr_of(shipped)
    no_null = run("tune", dev, "--model", tiny_model, "--no-cache")
    assert no_null.exit_code != 0 and "no background null" in stderr_of(no_null)
    assert len(stderr_of(no_null).strip().splitlines()) == 1
    empty = run("tune", dev.parent / "nowhere", "--model", chance_model, "--no-cache")
    assert empty.exit_code != 0 and "no judged works (works/*.jsonl" in stderr_of(empty)


def test_tune_pools_the_works_of_several_folders_and_refuses_an_id_judged_twice(
    chance_model: Path,
) -> None:
    root = chance_model.parent.parent
    dev = root / "data" / "dev"
    one = run("tune", dev, "--model", chance_model, "--dry-run", "--no-cache")
    assert "8 judged works" in stdout_of(one)
    more = root / "data" / "more"
    (more / "works").mkdir(parents=True)
    rows = (dev / "works" / "pd.jsonl").read_text(encoding="utf-8").splitlines()
    renamed = [json.dumps(json.loads(r) | {"id": "m" + json.loads(r)["id"]}) for r in rows]
    (more / "works" / "pd.jsonl").write_text("\n".join(renamed) + "\n", encoding="utf-8")
    both = run("tune", dev, more, "--model", chance_model, "--dry-run", "--no-cache")
    assert both.exit_code == 0, both.output
    assert "16 judged works" in stdout_of(both)
    (more / "works" / "pd.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    twice = run("tune", dev, more, "--model", chance_model, "--dry-run", "--no-cache")
    assert twice.exit_code != 0
    assert "judged twice across the folders: w0, w1" in stderr_of(twice)
    assert len(stderr_of(twice).strip().splitlines()) == 1
    nope = run("tune", dev, "--model", chance_model, "--tag", "nope", "--dry-run", "--no-cache")
    assert nope.exit_code != 0 and "--tag: the model has no tag nope" in stderr_of(nope)


def test_the_cards_work_score_line_follows_the_rollup() -> None:
    from tropeml.model.card import refresh_work_score

    rollup = {
        "method": "chance",
        "k": 2,
        "alpha": {"mates": 1e-16, "angst": 0.015},
        "null": {"passages": 40, "files": ["a", "b"]},
        "calibration": {"intercept": -0.25, "slope": 1.0},
    }
    card = (
        "# m\n\n- Work score: old words, alpha 5e-10; prominence is the share of the work's\n"
        "  text in passages over it.\n- Training data: x\n"
    )
    new = refresh_work_score(card, rollup)
    assert "alpha 1e-16 / 0.015" in new and "5e-10" not in new
    assert "so a tag is shown from 0.44; prominence is the share" in new
    assert new.endswith("  text in passages over it.\n- Training data: x\n")
    rollup["calibrator"] = WORK_CALIBRATOR.to_config()
    newer = refresh_work_score(new, rollup)
    assert "logistic regression on its evidence" in newer and "shown from" not in newer
    assert newer.endswith("  text in passages over it.\n- Training data: x\n")
    ending = CrossScore(0.0, {"fluff": 1.0, "grief": -1.0}, "ending")
    rollup["calibrator"] = replace(WORK_CALIBRATOR, cross={"happy_ending": ending}).to_config()
    clause = "happy_ending: scored by a logistic regression on the best passage scores of fluff"
    ended = refresh_work_score(new, rollup)
    assert clause + ", grief in the work's last tenth; shown when" in ended
    sure = replace(WORK_CALIBRATOR, sure={"angst": 0.7, "fluff": 0.7, "mates": 0.8})
    rollup["calibrator"] = sure.to_config()
    sured = refresh_work_score(new, rollup)
    assert ", or, chance rule or not, angst, fluff from a score of 0.7; mates from" in sured


def test_a_model_left_uncalibrated_gets_no_alpha_its_scores_cannot_resolve(
    tiny_model: Path,
) -> None:
    rng = random.Random(4)
    tagger = _tagger(tiny_model, rng)
    assert tagger.calibration is None
    # every work is full of rain and judged not to show it: the rule alone would go as deep
    # as their evidence, and with no positive pair there is no calibration to fit
    judged = {"rain": 0, "cake": -1, "sword": -1}
    items = [DevItem(f"n{i}", "pd", _work(rng, 20), judged, "B") for i in range(8)]
    rain = next(c for c in tune(tagger, items).choices if c.tag == "rain")
    assert rain.alpha >= UNCALIBRATED


def test_tune_refits_a_cross_tag_and_gives_it_the_loosest_floor_that_meets_the_target(
    tiny_model: Path,
) -> None:
    rng = random.Random(6)
    alpha = {"rain": 0.05, "cake": 0.05, "sword": 0.05}
    half = WorkCalibrator(0.0, (0.0,) * len(FEATURES), floor=0.3)
    crossed = replace(half, cross={"cake": CrossScore(0.0, {})}, floors={"cake": 0.9})
    tagger = _tagger(tiny_model, rng, floor=True, alpha=alpha, calibrator=crossed)
    # cake is shown exactly by the works full of rain: its cross score must learn that
    items = [DevItem(f"r{i}", "pd", _work(rng, 4), {"rain": 1, "cake": 1}, "B") for i in range(8)]
    items += [DevItem(f"n{i}", "pd", _work(rng, 0), {"rain": 0, "cake": 0}, "B") for i in range(12)]
    result = tune(tagger, items)
    cal = result.calibrator
    assert cal is not None and set(cal.cross) == {"cake"} and cal.cross["cake"].weights["rain"] > 0
    (choice,) = result.crossed
    assert (choice.tag, choice.before, choice.shown, choice.trope_free) == ("cake", 0.9, 8, 12)
    assert choice.floor == cal.floor_of("cake") and choice.false <= 1 and choice.found == 8
    looser = replace(cal, floors={**cal.floors, "cake": round(choice.floor - 0.01, 2)})
    tagger.calibrator = looser  # the same tagger (the same null), scored one step looser
    tagger.alpha = np.array([result.alphas.get(t, alpha[t]) for t in tagger.tags])  # as chosen
    scores = [tagger.tag(it.work).scores["cake"] for it in items]
    assert choice.floor == 0.01 or sum(s >= looser.floor_of("cake") for s in scores[8:]) > 1
    kept = tune(tagger, items, only=["rain"])  # cake not tuned: its cross score stays
    assert kept.calibrator is not None and kept.calibrator.cross["cake"] == looser.cross["cake"]


def test_tune_makes_a_new_cross_tag_and_refuses_one_it_cannot_fit(tiny_model: Path) -> None:
    rng = random.Random(6)
    alpha = {"rain": 0.05, "cake": 0.05, "sword": 0.05}
    plain = WorkCalibrator(0.0, (0.0,) * len(FEATURES), floor=0.3)
    tagger = _tagger(tiny_model, rng, floor=True, alpha=alpha, calibrator=plain)
    items = [DevItem(f"r{i}", "pd", _work(rng, 4), {"rain": 1, "cake": 1}, "B") for i in range(8)]
    items += [DevItem(f"n{i}", "pd", _work(rng, 0), {"rain": 0, "cake": 0}, "B") for i in range(12)]
    result = tune(tagger, items, cross=["cake"])
    cal = result.calibrator
    assert cal is not None and set(cal.cross) == {"cake"} and cal.cross["cake"].weights["rain"] > 0
    assert [c.tag for c in result.crossed] == ["cake"] and result.crossed[0].found == 8
    with pytest.raises(TropemlError, match="cannot read sword from every tag's score"):
        tune(tagger, items, cross=["sword"])  # no work is judged for sword
