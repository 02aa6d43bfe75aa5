"""The ``tropeml`` command line, driven through typer's CliRunner with the tiny hashing model.

No test here loads the real encoder: ``tag`` and ``tropes`` get ``--model tiny_model`` (whose
config names ``hashing-64``), and ``train`` / ``eval`` get a hashing encoder patched in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tropeml import __version__
from tropeml.cli.app import app
from tropeml.core.errors import TropemlError
from tropeml.model.encoders import HashingEncoder
from tropeml.model.persistence import ARRAYS_FILE, CONFIG_FILE, HEAD_FILE, TAXONOMY_FILE

COMMANDS = ("tag", "audit", "label", "train", "eval", "tropes")
TINY_TAGS = {"rain", "cake", "sword"}
TINY_NAMES = {"Rainy Day", "Baking", "Sword Fighting"}


# --------------------------------------------------------------------------- helpers


def run(*args: str | Path, input: str | bytes | None = None) -> Result:
    # Click < 8.2 mixes stderr into stdout unless told otherwise; 8.2+ always keeps both.
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click < 8.2 only
    except TypeError:
        runner = CliRunner()
    return runner.invoke(app, [str(a) for a in args], input=input)


def stdout_of(result: Result) -> str:
    return result.stdout


def stderr_of(result: Result) -> str:
    try:
        return result.stderr
    except ValueError:  # stderr was mixed into output
        return result.output


def all_text(result: Result) -> str:
    """Everything the command printed, stdout and stderr, whatever the click version."""
    out, err = stdout_of(result), stderr_of(result)
    return out if err == out else out + err


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects among the lines of ``text`` (strict: NaN is refused)."""
    return [
        json.loads(ln, parse_constant=_refuse) for ln in text.splitlines() if ln.startswith("{")
    ]


def _refuse(name: str) -> None:
    raise AssertionError(f"invalid JSON constant {name}")


def error_lines(result: Result) -> list[str]:
    return [ln for ln in all_text(result).splitlines() if ln.startswith("tropeml: error:")]


def assert_one_line_error(result: Result, *needles: str) -> str:
    """The command failed with exactly one line, ``tropeml: error: ...``, and no traceback."""
    assert result.exit_code != 0, all_text(result)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    text = all_text(result)
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("tropeml: error:"), text
    for needle in needles:
        assert needle in lines[0], (needle, text)
    return lines[0]


def check_result(obj: dict[str, Any], text: str, tags: set[str]) -> None:
    """One ``--json`` object: keys, a score per tag, evidence that quotes the source exactly."""
    assert set(obj) - {"hidden_spoilers"} == {"source", "n_passages", "model", "scores", "tags"}
    assert set(obj.get("hidden_spoilers", [])) <= tags - {t["id"] for t in obj["tags"]}
    assert isinstance(obj["n_passages"], int) and obj["n_passages"] >= 1
    assert set(obj["scores"]) == tags
    assert all(0.0 <= s <= 1.0 for s in obj["scores"].values())
    for tag in obj["tags"]:
        assert {"id", "name", "score", "evidence"} <= set(tag)
        assert tag["id"] in tags
        assert tag["score"] == obj["scores"][tag["id"]]
        assert tag["evidence"], tag
        for ev in tag["evidence"]:
            assert {"start", "end", "score", "text"} <= set(ev)
            assert 0 <= ev["start"] < ev["end"] <= len(text)
            assert ev["text"] == text[ev["start"] : ev["end"]]
    scores = [t["score"] for t in obj["tags"]]
    assert scores == sorted(scores, reverse=True)


@pytest.fixture
def fic(tiny_root: Path) -> Path:
    return tiny_root / "fics" / "one.txt"


@pytest.fixture
def hashing_train(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``train`` / ``eval`` use the hashing encoder instead of the real one."""
    monkeypatch.setattr("tropeml.model.protocols.default_encoder", lambda: HashingEncoder(64))


# --------------------------------------------------------------------------- basics


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert stdout_of(result).strip() == f"tropeml {__version__}"


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in stdout_of(result)
    assert "--version" in stdout_of(result)


def test_no_arguments_shows_help() -> None:
    result = run()
    assert "Usage" in all_text(result)
    for command in COMMANDS:
        assert command in all_text(result)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0
    assert "Usage" in stdout_of(result)


# --------------------------------------------------------------------------- tropes


def test_tropes_table(tiny_model: Path) -> None:
    result = run("tropes", "--model", tiny_model)
    assert result.exit_code == 0, all_text(result)
    out = stdout_of(result)
    for tid in TINY_TAGS:
        assert tid in out
    for name in TINY_NAMES:
        assert name in out
    assert "spoiler" in out  # sword is marked a spoiler


def test_tropes_json(tiny_model: Path) -> None:
    result = run("tropes", "--model", tiny_model, "--json")
    assert result.exit_code == 0, all_text(result)
    rows = json.loads(stdout_of(result))
    assert [r["id"] for r in rows] == ["rain", "cake", "sword"]
    by_id = {r["id"]: r for r in rows}
    assert by_id["rain"]["name"] == "Rainy Day"
    assert by_id["rain"]["synonyms"] == ["Rain", "Alternate Universe - Rain"]
    assert by_id["rain"]["related"] == ["cake"]
    assert by_id["sword"]["spoiler"] is True
    assert by_id["cake"]["spoiler"] is False
    for r in rows:
        assert set(r) == {"id", "name", "synonyms", "definition", "related", "spoiler"}
        assert r["definition"]


def test_tropes_of_a_missing_model_is_one_line(tmp_path: Path) -> None:
    assert_one_line_error(run("tropes", "--model", tmp_path / "nope"))


# --------------------------------------------------------------------------- tag


def test_tag_json(tiny_model: Path, fic: Path) -> None:
    result = run("tag", fic, "--model", tiny_model, "--json")
    assert result.exit_code == 0, all_text(result)
    lines = stdout_of(result).strip().splitlines()
    assert len(lines) == 1
    (obj,) = json_lines(stdout_of(result))
    assert obj["source"] == str(fic)
    assert obj["model"] == "tiny"
    check_result(obj, fic.read_text(encoding="utf-8"), TINY_TAGS)
    assert obj["tags"], "the tiny fic holds every tiny tag; some should come back"
    assert {t["name"] for t in obj["tags"]} <= TINY_NAMES


def test_tag_json_matches_the_python_api(tiny_model: Path, fic: Path) -> None:
    import tropeml

    result = run("tag", fic, "--model", tiny_model, "--json", "--no-cache")
    assert result.exit_code == 0, all_text(result)
    (obj,) = json_lines(stdout_of(result))
    expected = tropeml.load(tiny_model, cache=False).tag_paths([fic])
    assert obj == json.loads(json.dumps(next(expected).without_spoilers().to_dict()))


def test_tag_min_score_keeps_only_the_surer_tags(tiny_model: Path, fic: Path) -> None:
    (full,) = json_lines(stdout_of(run("tag", fic, "--model", tiny_model, "--json")))
    scores = sorted(t["score"] for t in full["tags"])
    assert len(scores) >= 2, "the tiny fic should give several tags"
    least = (scores[0] + scores[-1]) / 2
    result = run("tag", fic, "--model", tiny_model, "--json", "--min-score", str(least))
    assert result.exit_code == 0, all_text(result)
    (kept,) = json_lines(stdout_of(result))
    assert kept["scores"] == full["scores"]  # every score stays
    assert kept["tags"] == [t for t in full["tags"] if t["score"] >= least]
    assert 0 < len(kept["tags"]) < len(full["tags"])


def test_tag_min_score_out_of_range_is_a_usage_error(tiny_model: Path, fic: Path) -> None:
    result = run("tag", fic, "--model", tiny_model, "--min-score", "1.5")
    assert result.exit_code == 2
    assert "--min-score" in all_text(result)


def test_tag_directory_covers_every_txt(tiny_model: Path, fic: Path, tmp_path: Path) -> None:
    folder = tmp_path / "library"
    (folder / "nested" / "deeper").mkdir(parents=True)
    text = fic.read_text(encoding="utf-8")
    files = [folder / "a.txt", folder / "nested" / "b.txt", folder / "nested" / "deeper" / "c.txt"]
    for i, f in enumerate(files):
        f.write_text(text[: 400 * (i + 1)], encoding="utf-8")
    (folder / "notes.md").write_text("not a fic", encoding="utf-8")
    (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff\x00" * 20)
    result = run("tag", folder, "--model", tiny_model, "--json")
    assert result.exit_code == 0, all_text(result)
    objs = json_lines(stdout_of(result))
    assert sorted(o["source"] for o in objs) == sorted(str(f) for f in files)
    for obj in objs:
        check_result(obj, Path(obj["source"]).read_text(encoding="utf-8"), TINY_TAGS)


def test_tag_stdin(tiny_model: Path) -> None:
    text = "It rained all day. Thunder, a storm, puddles and a soaked umbrella.\n\nThe end."
    result = run("tag", "-", "--model", tiny_model, "--json", input=text)
    assert result.exit_code == 0, all_text(result)
    (obj,) = json_lines(stdout_of(result))
    assert obj["source"] == "-"
    check_result(obj, text, TINY_TAGS)


def test_tag_table(tiny_model: Path, fic: Path) -> None:
    result = run("tag", fic, "--model", tiny_model)
    assert result.exit_code == 0, all_text(result)
    out = stdout_of(result)
    (obj,) = json_lines(run("tag", fic, "--model", tiny_model, "--json").stdout)
    assert obj["tags"]
    for tag in obj["tags"]:
        assert tag["name"] in out
        assert tag["id"] in out
    assert "tiny" in out  # the model's name in the title
    assert not out.lstrip().startswith("{")


def test_tag_table_without_tags_says_so(tiny_model: Path, tmp_path: Path) -> None:
    # A bare stop-word text: whatever the scores, the table must render either way.
    f = tmp_path / "plain.txt"
    f.write_text("the a and then she he they walked said.", encoding="utf-8")
    result = run("tag", f, "--model", tiny_model)
    assert result.exit_code == 0, all_text(result)
    (obj,) = json_lines(run("tag", f, "--model", tiny_model, "--json").stdout)
    if not obj["tags"]:
        assert "no tag over its threshold" in stdout_of(result)


def test_tag_several_files_in_order(tiny_model: Path, fic: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.txt"
    other.write_text("Flour, sugar, icing: she baked a cake in the oven.", encoding="utf-8")
    result = run("tag", other, fic, "--model", tiny_model, "--json")
    assert result.exit_code == 0, all_text(result)
    assert [o["source"] for o in json_lines(stdout_of(result))] == [str(other), str(fic)]


def test_tag_without_paths_is_a_usage_error(tiny_model: Path) -> None:
    result = run("tag", "--model", tiny_model)
    assert result.exit_code == 2
    assert "Traceback" not in all_text(result)


# --------------------------------------------------------------------------- bad input


def _empty(tmp_path: Path) -> Path:
    f = tmp_path / "empty.txt"
    f.write_bytes(b"")
    return f


def _whitespace(tmp_path: Path) -> Path:
    f = tmp_path / "blank.txt"
    f.write_text(" \n\n\t \n", encoding="utf-8")
    return f


def _binary(tmp_path: Path) -> Path:
    f = tmp_path / "image.txt"
    f.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8)
    return f


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "does-not-exist.txt"


def _empty_dir(tmp_path: Path) -> Path:
    d = tmp_path / "nothing"
    d.mkdir()
    (d / "notes.md").write_text("not a .txt", encoding="utf-8")
    (d / ".hidden.txt").write_text("hidden files are skipped", encoding="utf-8")
    return d


BAD_INPUTS = {
    "empty": (_empty, "empty"),
    "whitespace": (_whitespace, "whitespace"),
    "binary": (_binary, "binary"),
    "missing": (_missing, "no such file"),
    "dir-without-txt": (_empty_dir, "no .txt"),
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_is_one_line(kind: str, tiny_model: Path, tmp_path: Path) -> None:
    make, words = BAD_INPUTS[kind]
    path = make(tmp_path)
    result = run("tag", path, "--model", tiny_model, "--json")
    line = assert_one_line_error(result, str(path), words)
    assert result.exit_code == 1, line


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_one_bad_input_among_good_ones(
    kind: str, tiny_model: Path, fic: Path, tmp_path: Path
) -> None:
    make, words = BAD_INPUTS[kind]
    bad = make(tmp_path)
    good = tmp_path / "good.txt"
    good.write_text("Rain and thunder; she baked a cake; a duel with swords.", encoding="utf-8")
    result = run("tag", fic, bad, good, "--model", tiny_model, "--json")
    assert result.exit_code == 1, all_text(result)
    assert "Traceback" not in all_text(result)
    objs = json_lines(stdout_of(result))
    assert [o["source"] for o in objs] == [str(fic), str(good)]
    errors = error_lines(result)
    assert len(errors) == 1 and str(bad) in errors[0] and words in errors[0], errors


def test_every_bad_input_gets_its_own_line(tiny_model: Path, fic: Path, tmp_path: Path) -> None:
    bad = [make(tmp_path) for make, _ in BAD_INPUTS.values()]
    result = run("tag", *bad, fic, "--model", tiny_model, "--json")
    assert result.exit_code == 1
    assert [o["source"] for o in json_lines(stdout_of(result))] == [str(fic)]
    errors = error_lines(result)
    assert len(errors) == len(bad)
    for path, line in zip(bad, errors, strict=True):
        assert str(path) in line


def test_only_bad_inputs_do_not_need_a_model(tmp_path: Path) -> None:
    result = run("tag", _missing(tmp_path), "--model", tmp_path / "no-model")
    assert_one_line_error(result, "no such file")


def test_too_large_file(tiny_model: Path, fic: Path) -> None:
    result = run("tag", fic, "--model", tiny_model, "--max-bytes", "100")
    assert_one_line_error(result, str(fic), "--max-bytes")


def test_stdin_empty(tiny_model: Path) -> None:
    assert_one_line_error(run("tag", "-", "--model", tiny_model, input=""), "empty")


def test_stdin_binary(tiny_model: Path) -> None:
    result = run("tag", "-", "--model", tiny_model, input=b"\x00\x01\x02\x03" * 64)
    assert_one_line_error(result, "binary")


# --------------------------------------------------------------------------- corrupt models


def _no_config(m: Path) -> None:
    (m / CONFIG_FILE).unlink()


def _config_not_json(m: Path) -> None:
    (m / CONFIG_FILE).write_text("{ this is not json", encoding="utf-8")


def _config_missing_field(m: Path) -> None:
    cfg = json.loads((m / CONFIG_FILE).read_text(encoding="utf-8"))
    del cfg["thresholds"]
    (m / CONFIG_FILE).write_text(json.dumps(cfg), encoding="utf-8")


def _config_from_the_future(m: Path) -> None:
    cfg = json.loads((m / CONFIG_FILE).read_text(encoding="utf-8"))
    cfg["format_version"] = 99
    (m / CONFIG_FILE).write_text(json.dumps(cfg), encoding="utf-8")


def _head_missing(m: Path) -> None:
    (m / HEAD_FILE).unlink()


def _head_altered(m: Path) -> None:
    data = bytearray((m / HEAD_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (m / HEAD_FILE).write_bytes(bytes(data))


def _head_garbage_with_matching_hash(m: Path) -> None:
    import hashlib

    garbage = b"this is not a zip file at all" * 10
    (m / HEAD_FILE).write_bytes(garbage)
    cfg = json.loads((m / CONFIG_FILE).read_text(encoding="utf-8"))
    cfg["head"]["sha256"] = hashlib.sha256(garbage).hexdigest()
    (m / CONFIG_FILE).write_text(json.dumps(cfg), encoding="utf-8")


def _taxonomy_missing(m: Path) -> None:
    (m / TAXONOMY_FILE).unlink()


def _taxonomy_broken(m: Path) -> None:
    (m / TAXONOMY_FILE).write_text("[[trope]\nid = ", encoding="utf-8")


def _unknown_encoder(m: Path) -> None:
    cfg = json.loads((m / CONFIG_FILE).read_text(encoding="utf-8"))
    cfg["encoder"]["name"] = "no-such-encoder-anywhere"
    (m / CONFIG_FILE).write_text(json.dumps(cfg), encoding="utf-8")


def _not_a_folder(m: Path) -> None:
    shutil.rmtree(m)
    m.write_text("a file, not a model folder", encoding="utf-8")


CORRUPTIONS = {
    f.__name__.lstrip("_"): f
    for f in (
        _no_config,
        _config_not_json,
        _config_missing_field,
        _config_from_the_future,
        _head_missing,
        _head_altered,
        _head_garbage_with_matching_hash,
        _taxonomy_missing,
        _taxonomy_broken,
        _unknown_encoder,
        _not_a_folder,
    )
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_model_is_one_line(kind: str, tiny_model: Path, fic: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    CORRUPTIONS[kind](model)
    result = run("tag", fic, "--model", model, "--json")
    assert_one_line_error(result)
    assert json_lines(stdout_of(result)) == []


def test_corrupt_model_with_debug_raises(tiny_model: Path, fic: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    _head_altered(model)
    result = run("--debug", "tag", fic, "--model", model)
    assert result.exit_code != 0
    assert isinstance(result.exception, TropemlError)
    assert "does not match the hash" in str(result.exception)


def test_bad_input_with_debug_raises(tiny_model: Path, tmp_path: Path) -> None:
    result = run("--debug", "tag", _empty(tmp_path), "--model", tiny_model)
    assert result.exit_code != 0
    assert isinstance(result.exception, TropemlError)


def _subprocess(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "tropeml", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
    )


def test_real_process_error_and_debug_traceback(tiny_model: Path, tmp_path: Path) -> None:
    # A missing path fails before the model is loaded, which keeps these processes quick.
    missing = _missing(tmp_path)
    plain = _subprocess("tag", missing, "--model", tiny_model, cwd=tmp_path)
    assert plain.returncode == 1
    assert plain.stdout == ""
    assert plain.stderr.strip().splitlines() == [
        f"tropeml: error: {missing}: no such file or directory"
    ]
    debug = _subprocess("--debug", "tag", missing, "--model", tiny_model, cwd=tmp_path)
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr
    assert "TropemlError" in debug.stderr


# --------------------------------------------------------------------------- train / eval


def test_train_writes_a_model_that_tags(
    hashing_train: None, tiny_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "models" / "fresh"
    result = run(
        "train", "--data", tiny_root / "data", "--root", tiny_root, "--out", out, "--no-cache"
    )
    assert result.exit_code == 0, all_text(result)
    text = stdout_of(result)
    assert "trained on" in text
    for col in ("support", "precision", "recall", "F1", "AP", "macro"):
        assert col in text
    for tid in TINY_TAGS:
        assert tid in text
    assert "not enough data" in text
    assert "model written to" in text
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [CONFIG_FILE, HEAD_FILE, ARRAYS_FILE, "README.md", TAXONOMY_FILE]
    )
    config = json.loads((out / CONFIG_FILE).read_text(encoding="utf-8"), parse_constant=_refuse)
    assert config["name"] == "fresh"
    assert config["encoder"]["name"] == "hashing-64"
    assert set(config["tags"]) == TINY_TAGS
    assert "# tropeml model: fresh" in (out / "README.md").read_text(encoding="utf-8")
    # The new model tags, through the CLI, without the patched encoder being needed.
    fic = tiny_root / "fics" / "one.txt"
    tagged = run("tag", fic, "--model", out, "--json")
    assert tagged.exit_code == 0, all_text(tagged)
    (obj,) = json_lines(stdout_of(tagged))
    assert obj["model"] == "fresh"
    check_result(obj, fic.read_text(encoding="utf-8"), TINY_TAGS)


def test_train_name_option(hashing_train: None, tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    result = run(
        "train", "--data", tiny_root / "data", "--root", tiny_root, "-o", out, "--name", "custom"
    )
    assert result.exit_code == 0, all_text(result)
    assert json.loads((out / CONFIG_FILE).read_text(encoding="utf-8"))["name"] == "custom"


def test_train_replaces_an_existing_model(
    hashing_train: None, tiny_root: Path, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "m"
    shutil.copytree(tiny_model, out)
    (out / "stale.txt").write_text("left over", encoding="utf-8")
    result = run("train", "--data", tiny_root / "data", "--root", tiny_root, "--out", out)
    assert result.exit_code == 0, all_text(result)
    assert not (out / "stale.txt").exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == [".m.lock"]


def test_eval_json(hashing_train: None, tiny_root: Path) -> None:
    result = run("eval", "--data", tiny_root / "data", "--root", tiny_root, "--json")
    assert result.exit_code == 0, all_text(result)
    report = json.loads(stdout_of(result), parse_constant=_refuse)  # strict JSON: no NaN
    assert report["scheme"] == "leave-one-work-out"
    assert report["n_folds"] == 1
    rows = {r["tag"]: r for r in report["tags"]}
    assert set(rows) == TINY_TAGS
    for row in rows.values():
        assert {"support", "precision", "recall", "f1", "average_precision", "note"} <= set(row)
        assert isinstance(row["support"], int)
        # one labelled fic with a couple of scenes per tag: far too little to score
        assert row["support"] < 3
        assert row["note"] == "not enough data"
        assert row["precision"] is None
    assert set(report["macro"]) == {"precision", "recall", "f1", "ap"}
    assert [w["work"] for w in report["works"]] == ["fics/one.txt"]


def test_eval_table_and_markdown(hashing_train: None, tiny_root: Path) -> None:
    args = ("eval", "--data", tiny_root / "data", "--root", tiny_root)
    table = run(*args)
    assert table.exit_code == 0, all_text(table)
    assert "not enough data" in stdout_of(table)
    assert "held out fics/one.txt" in stdout_of(table)
    markdown = run(*args, "--markdown")
    assert markdown.exit_code == 0, all_text(markdown)
    assert "| tag | support | precision | recall | F1 | AP |" in stdout_of(markdown)


def test_eval_writes_no_model(hashing_train: None, tiny_root: Path) -> None:
    before = sorted(p.relative_to(tiny_root) for p in tiny_root.rglob("*"))
    result = run("eval", "--data", tiny_root / "data", "--root", tiny_root, "--no-cache")
    assert result.exit_code == 0, all_text(result)
    assert sorted(p.relative_to(tiny_root) for p in tiny_root.rglob("*")) == before


def _break_label_line(data: Path, line: str) -> Path:
    path = data / "labels" / "fics.jsonl"
    rows = path.read_text(encoding="utf-8").splitlines()
    rows.insert(2, line)  # becomes line 3
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "line",
    [
        "{not json",
        "[1, 2, 3]",
        '{"file": "fics/one.txt", "start": 0, "end": 10, "quote": "x", "tags": ["nope"]}',
        '{"file": "fics/one.txt", "start": "0", "end": 10, "quote": "x", "tags": []}',
        '{"file": "fics/missing.txt", "start": 0, "end": 10, "quote": "x", "tags": []}',
    ],
    ids=["bad-json", "not-an-object", "unknown-tag", "string-offset", "missing-file"],
)
@pytest.mark.parametrize("command", ["train", "eval"])
def test_malformed_label_line_names_file_and_line(
    command: str, line: str, hashing_train: None, tiny_root: Path, tmp_path: Path
) -> None:
    labels = _break_label_line(tiny_root / "data", line)
    args: list[str | Path] = [command, "--data", tiny_root / "data", "--root", tiny_root]
    if command == "train":
        args += ["--out", tmp_path / "never"]
    result = run(*args)
    assert_one_line_error(result, f"{labels}:3")
    assert not (tmp_path / "never").exists()


def test_malformed_exemplar_line_names_file_and_line(
    hashing_train: None, tiny_root: Path, tmp_path: Path
) -> None:
    path = tiny_root / "data" / "exemplars" / "b.jsonl"
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"id": "b-0", "text": "a duplicate id", "tags": []}\n')
    n = len(path.read_text(encoding="utf-8").splitlines())
    result = run("train", "--data", tiny_root / "data", "--root", tiny_root, "-o", tmp_path / "m")
    assert_one_line_error(result, f"{path}:{n}", "b-0")


def test_train_without_taxonomy(hashing_train: None, tmp_path: Path) -> None:
    result = run("train", "--data", tmp_path / "nodata", "--root", tmp_path, "-o", tmp_path / "m")
    assert_one_line_error(result, "tropes.toml")


def test_train_with_no_labels(hashing_train: None, tiny_root: Path, tmp_path: Path) -> None:
    for f in (tiny_root / "data").glob("*/*.jsonl"):
        f.unlink()
    result = run("train", "--data", tiny_root / "data", "--root", tiny_root, "-o", tmp_path / "m")
    assert_one_line_error(result, "no labelled passages")
