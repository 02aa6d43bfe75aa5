"""Whole works judged per tag (``data/judged``) as training rows: negatives only."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import make_passage

from tropeml.core.errors import TropemlError
from tropeml.core.taxonomy import Taxonomy
from tropeml.core.types import UNKNOWN
from tropeml.model.dataset import JUDGED, build_training_set, judged_targets
from tropeml.model.encoders import HashingEncoder
from tropeml.model.training import train


def write_judged(data: Path, judgments: dict[str, str], repo: str = "GITenberg/Book_1") -> Path:
    """One judged work of several scenes under ``data/judged`` (paths from the project root)."""
    rng = random.Random(1)
    text = "\n\n\n".join(make_passage(rng, tags, 120) for tags in [["rain"], [], [], ["rain"]])
    (data / "judged" / "pd").mkdir(parents=True, exist_ok=True)
    (data / "judged" / "works").mkdir(exist_ok=True)
    path = data / "judged" / "pd" / "story.txt"
    path.write_text(text, encoding="utf-8")
    record = {
        "id": "j-story",
        "title": "A Story (Someone, A Book), whole story",
        "repo": repo,
        "file": "data/judged/pd/story.txt",
        "judgments": judgments,
    }
    (data / "judged" / "works" / "pd_j.jsonl").write_text(json.dumps(record) + "\n")
    return path


def test_each_passage_is_negative_only_for_the_tags_its_work_never_shows(
    tiny_root: Path,
) -> None:
    data = tiny_root / "data"
    taxonomy = Taxonomy.load(data / "tropes.toml")
    write_judged(data, {"rain": "yes", "cake": "no", "sword": "unknown"})
    without = build_training_set(taxonomy, [], sorted((data / "exemplars").glob("*.jsonl")))
    ts = build_training_set(
        taxonomy,
        [],
        sorted((data / "exemplars").glob("*.jsonl")),
        root=tiny_root,
        max_tokens=60,
        judged_dir=data / "judged",
    )
    rows = [i for i, k in enumerate(ts.kinds) if k == JUDGED]
    assert len(rows) >= 4  # one row per passage, as tagging splits the work
    col = {t: j for j, t in enumerate(ts.tags)}
    Y = ts.Y[rows]
    assert (Y[:, col["cake"]] == 0).all()  # judged absent from the whole work
    assert (Y[:, col["rain"]] == UNKNOWN).all()  # shown somewhere: which passage is unknown
    assert (Y[:, col["sword"]] == UNKNOWN).all()
    assert {ts.groups[i] for i in rows} == {"GITenberg/Book_1"}  # one CV group per book
    assert ts.data_hash != without.data_hash


def test_judged_targets_leave_unjudged_tags_unknown() -> None:
    taxonomy = Taxonomy.load(None)
    row = judged_targets({"reunion": 0, "angst": 1}, taxonomy)
    ids = list(taxonomy.ids)
    assert row[ids.index("reunion")] == 0
    assert row[ids.index("angst")] == UNKNOWN
    assert (np.delete(row, ids.index("reunion")) == UNKNOWN).all()


def test_a_judged_work_with_a_tag_outside_the_taxonomy_is_refused(tiny_root: Path) -> None:
    data = tiny_root / "data"
    write_judged(data, {"rain": "no", "dragons": "no"})
    with pytest.raises(TropemlError, match="dragons"):
        train(data, root=tiny_root, out=None, encoder=HashingEncoder(64), cache=False)


def test_training_reads_the_data_folders_judged_works(tiny_root: Path) -> None:
    data = tiny_root / "data"
    write_judged(data, {"rain": "yes", "cake": "no", "sword": "no"})
    out = tiny_root / "models" / "judged"
    result = train(data, root=tiny_root, out=out, encoder=HashingEncoder(64), cache=False)
    assert result.training_set.kinds.count(JUDGED) > 0
    config = json.loads((out / "config.json").read_text())
    assert config["training_data"]["n_judged_passages"] == result.training_set.kinds.count(JUDGED)
    assert "judged per tag" in (out / "README.md").read_text()
