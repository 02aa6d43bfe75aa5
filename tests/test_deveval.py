"""The dev-set harness: its loaders, and the work- and passage-level tables on known inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tropeml.core.errors import TropemlError
from tropeml.core.taxonomy import Taxonomy
from tropeml.core.types import Work
from tropeml.io.devset import REQUIRED_TAGS, DevItem, load_dev_passages, load_dev_works
from tropeml.serve.deveval import (
    DevReport,
    Scored,
    passage_table,
    score_reliability,
    work_summary,
    work_table,
)

ROOT = Path(__file__).resolve().parent.parent


def _item(judged: dict[str, int], kind: str = "pd") -> DevItem:
    judgments = {t: judged.get(t, 0) for t in REQUIRED_TAGS}
    return DevItem("x", kind, Work(text="text"), judgments, "book")


def test_work_table_counts_precision_recall_and_false_tags() -> None:
    scored = [
        Scored(_item({"mates": 1}), np.zeros((1, 1)), np.ones(1), frozenset({"mates"})),
        Scored(_item({"mates": 0}), np.zeros((1, 1)), np.ones(1), frozenset({"mates", "fluff"})),
        Scored(_item({"mates": 0}), np.zeros((1, 1)), np.ones(1), frozenset()),
        Scored(_item({"mates": -1}), np.zeros((1, 1)), np.ones(1), frozenset({"mates"})),
    ]
    row = work_table(scored)["mates"]
    assert row == {
        "precision": 0.5,
        "recall": 1.0,
        "false_tag_rate": 0.5,
        "positives": 1,
        "negatives": 2,
    }  # the unknown work counts nowhere
    summary = work_summary(scored)
    assert summary["median_tags_per_work"] == 1.0
    assert summary["recall_of_shown_tags"] == 1.0


def test_score_reliability_bands_the_judged_pairs() -> None:
    none = np.zeros((1, 1)), np.ones(1), frozenset[str]()
    scored = [
        Scored(_item({"mates": 1, "fluff": -1}), *none, {"mates": 0.95, "fluff": 0.95}),
        Scored(_item({"mates": 0}), *none, {"mates": 0.2, "fluff": 0.05}),
        Scored(_item({"mates": 1}), *none, {"mates": 0.25}),
    ]
    rel = score_reliability(scored)
    # 3 judged mates pairs and one scored fluff "no"; the unknown and the unscored count nowhere
    assert rel["pairs"] == 4
    assert rel["base_rate"] == pytest.approx(2 / 4)
    p, y = np.array([0.95, 0.2, 0.05, 0.25]), np.array([1, 0, 0, 1])
    assert rel["brier"] == pytest.approx(float(np.mean((p - y) ** 2)))
    assert [(b["band"], b["pairs"]) for b in rel["bands"]] == [
        ([0.0, 0.1], 1),
        ([0.1, 0.3], 2),
        ([0.9, 1.0], 1),
    ]
    assert rel["bands"][1]["shown"] == 0.5
    assert score_reliability(scored[:0])["brier"] is None
    assert work_summary(scored)["scores"] == rel


def test_passage_table_ranks_by_the_best_chunk_and_skips_unknowns() -> None:
    tags = ["fake_death"]
    scored = [
        Scored(_item({"fake_death": 1}), np.array([[0.1], [0.9]]), np.ones(2)),
        Scored(_item({"fake_death": 0}), np.array([[0.5]]), np.ones(1)),
        Scored(_item({"fake_death": -1}), np.array([[0.99]]), np.ones(1)),
    ]
    row = passage_table(scored, tags)["fake_death"]
    assert row["ap"] == 1.0 and row["positives"] == 1 and row["negatives"] == 1
    assert passage_table(scored, tags)["mates"]["ap"] is None  # not a model tag here


def test_the_shipped_dev_set_loads_and_is_judged_for_every_required_tag() -> None:
    passages, works = load_dev_passages(ROOT / "data/dev"), load_dev_works(ROOT / "data/dev")
    assert len(passages) >= 200 and len({p.title for p in passages}) >= 25
    assert len(works) >= 40 and sum(len(w.work.text.split()) > 30000 for w in works) >= 10
    for tag in ("hurt_comfort", "fake_death", "reunion", "soulmates", "angst", "fluff"):
        assert sum(p.judgments[tag] == 1 for p in passages) >= 12, tag
    written = [w for w in works if w.kind == "written"]
    aus = ("mates", "soulmates", "alpha_beta_omega")
    shows = [w for w in written if any(w.judgments[t] == 1 for t in aus)]
    assert len(shows) >= 8 and len(written) - len(shows) >= 8


def test_a_bad_dev_record_is_one_clear_error(tmp_path: Path) -> None:
    row = {"id": "p1", "text": "x", "judgments": {"mates": "maybe"}}
    (tmp_path / "passages.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(TropemlError, match=r"passages\.jsonl:1: 'judgments' must judge"):
        load_dev_passages(tmp_path)


def test_a_work_may_judge_more_tags_and_they_get_their_own_rows(tmp_path: Path) -> None:
    dev = tmp_path / "data" / "dev"  # work files are relative to the folder two levels up
    (dev / "works").mkdir(parents=True)
    (tmp_path / "w.txt").write_text("Some text.", encoding="utf-8")
    judged = {t: "no" for t in REQUIRED_TAGS}
    rows = [judged | {"cuddling": "yes"}, judged, {"cuddling": "no"}]
    lines = [
        json.dumps({"id": f"w{i}", "title": "T", "file": "w.txt", "judgments": j})
        for i, j in enumerate(rows)
    ]
    (dev / "works" / "a.jsonl").write_text("\n".join(lines[:2]), encoding="utf-8")
    first, second = load_dev_works(dev)
    assert first.judgments["cuddling"] == 1 and "cuddling" not in second.judgments
    scored = [
        Scored(it, np.zeros((1, 1)), np.ones(1), frozenset({"cuddling"})) for it in (first, second)
    ]
    table = work_table(scored)
    assert list(table)[-1] == "cuddling" and table["cuddling"]["positives"] == 1
    assert table["cuddling"]["negatives"] == 0 and table["cuddling"]["precision"] == 1.0
    (dev / "works" / "a.jsonl").write_text(lines[2], encoding="utf-8")
    with pytest.raises(TropemlError, match="must judge every one of hurt_comfort"):
        load_dev_works(dev)  # the required tags stay required


def test_report_markdown_names_both_kinds_of_text() -> None:
    scored = [Scored(_item({"mates": 1}, kind), np.zeros((1, 1)), np.ones(1)) for kind in "ab"]
    report = DevReport(
        "m",
        "fast",
        passage_table(scored, ["mates"]),
        {"public-domain": work_table(scored)},
        {"public-domain": work_summary(scored)},
    )
    text = report.to_markdown()
    assert "Work level, public-domain (2 works)" in text and "| `mates` |" in text


def test_eval_dev_protocol_from_the_cli(tiny_model: Path, tmp_path: Path) -> None:
    from test_cli import run, stdout_of

    judged = {t: "no" for t in REQUIRED_TAGS} | {"hurt_comfort": "yes"}
    dev = tmp_path / "data" / "dev"
    (dev / "works" / "w").mkdir(parents=True)
    text = "It rained on the roof all night. She held him while he shook.\n\n" * 20
    row = {"id": "p1", "text": text[:200], "book": "B", "judgments": judged}
    (dev / "passages.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    (dev / "works" / "w" / "one.txt").write_text(text, encoding="utf-8")
    work = {"id": "w1", "title": "W", "file": "data/dev/works/w/one.txt", "judgments": judged}
    (dev / "works" / "pd.jsonl").write_text(json.dumps(work) + "\n", encoding="utf-8")
    result = run(
        "eval",
        "--protocol",
        "dev",
        "--data",
        tmp_path / "data",
        "--model",
        tiny_model,
        "--json",
        "--no-cache",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(stdout_of(result))
    assert report["model"] == "tiny" and set(report["passages"]) == set(REQUIRED_TAGS)
    assert report["summary"]["all"]["works"] == 1
    assert report["works"]["public-domain"]["hurt_comfort"]["positives"] == 1


def test_the_shipped_confirmation_set_loads_and_is_judged_for_every_required_tag() -> None:
    works = load_dev_works(ROOT / "data/confirm")
    assert len(works) >= 15 and all(set(REQUIRED_TAGS) <= set(w.judgments) for w in works)
    ids = set(Taxonomy.load(ROOT / "data/tropes.toml").ids)
    assert all(set(w.judgments) <= ids for w in works)  # other judged tags are real tags
    hurt = [w.judgments["hurt_comfort"] for w in works]
    assert hurt.count(1) >= 5 and hurt.count(0) >= 5
    assert not (ROOT / "data/confirm/passages.jsonl").exists()


def test_eval_confirm_protocol_reports_works_only(tiny_model: Path, tmp_path: Path) -> None:
    from test_cli import run, stdout_of

    judged = {t: "no" for t in REQUIRED_TAGS} | {"hurt_comfort": "yes"}
    confirm = tmp_path / "data" / "confirm"
    (confirm / "works" / "w").mkdir(parents=True)
    text = "It rained on the roof all night. She held him while he shook.\n\n" * 20
    (confirm / "works" / "w" / "one.txt").write_text(text, encoding="utf-8")
    work = {"id": "c1", "title": "C", "file": "data/confirm/works/w/one.txt", "judgments": judged}
    (confirm / "works" / "pd.jsonl").write_text(json.dumps(work) + "\n", encoding="utf-8")
    args = ("eval", "--protocol", "confirm", "--data", tmp_path / "data", "--model", tiny_model)
    result = run(*args, "--no-cache")
    assert result.exit_code == 0, result.output
    text_out = stdout_of(result)
    assert "Passage level" not in text_out
    assert "Work level, public-domain (1 works)" in text_out
    report = json.loads(stdout_of(run(*args, "--json", "--no-cache")))
    assert report["summary"]["all"]["works"] == 1
    assert all(r["positives"] == 0 for r in report["passages"].values())
