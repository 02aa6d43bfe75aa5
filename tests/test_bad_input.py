"""The bad-input matrix: every case ends in one ``tropeml: error: ...`` line naming the file.

Each case builds a bad (or awkward but valid) input in a temporary folder and runs it through
the CLI (typer's CliRunner) and/or the Python API. An error case must exit non-zero with one
line that names the file (``file:line`` for label files) and no traceback; with ``--debug``
the :class:`TropemlError` propagates. A ``works`` case must succeed. The table in
``docs/bad-input.md`` lists the same cases; :func:`test_doc_table_matches_the_cases` keeps them
in step.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.special
import skops.io as sio
from ao3_fixtures import download_html, write_epub
from conftest import ROOT, edit_config, rewrite_arrays, write_tiny_data
from epub_fixtures import write_drm_epub, write_fff_epub, write_font_obfuscated_epub
from sklearn.linear_model import LogisticRegression
from test_cli import all_text, assert_one_line_error, json_lines, run, stderr_of, stdout_of

import tropeml
from tropeml.core.errors import TropemlError
from tropeml.core.taxonomy import Taxonomy
from tropeml.io.labels import load_exemplars, load_span_labels
from tropeml.io.readers import read_work
from tropeml.model.persistence import ARRAYS_FILE, CONFIG_FILE, HEAD_FILE, TAXONOMY_FILE, load_model

DOC = ROOT / "docs" / "bad-input.md"
STORY = "Rain hammered the roof. She baked a cake with flour and sugar.\n\nA duel with swords."


class Evil:
    """A malicious payload: restoring its state would write a file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["marker"]).write_text("pwned")


@dataclass
class Env:
    """What a case builds in: a scratch folder, a copy of the tiny model, a data folder."""

    tmp: Path
    model: Path
    monkeypatch: pytest.MonkeyPatch
    marker: Path = field(init=False)

    def __post_init__(self) -> None:
        self.marker = self.tmp / "pwned"

    @property
    def root(self) -> Path:
        if not (self.tmp / "data").exists():
            write_tiny_data(self.tmp)
        return self.tmp

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def labels(self) -> Path:
        return self.data / "labels" / "fics.jsonl"

    @property
    def fic(self) -> Path:
        return self.root / "fics" / "one.txt"

    def deny(self, path: Path) -> None:
        """Make ``path`` unreadable (simulated when running as root, whom chmod cannot stop)."""
        if os.geteuid() != 0:
            path.chmod(0)
            return
        real_open = Path.open

        def guarded(self: Path, *args: Any, **kwargs: Any) -> Any:
            if self.absolute() == path.absolute():
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)

        self.monkeypatch.setattr(Path, "open", guarded)


@dataclass(frozen=True)
class Call:
    """How to run one case: CLI arguments, an API call, and what names the file."""

    cli: list[str | Path] | None
    api: Callable[[], Any] | None
    where: str  # must appear in the error line ("" where no file is involved)


BOTH = ("cli", "api")
CLI = ("cli",)
API = ("api",)


@dataclass(frozen=True)
class Case:
    id: str
    expect: str  # a fragment of the error line, "works", or "warning: <fragment>"
    build: Callable[[Env], Call]
    surfaces: tuple[str, ...] = BOTH
    integration: tuple[str, ...] = ()  # surfaces that need the real encoder (slower)


WARNING = "warning: "
"""An ``expect`` that starts with this: the input is used, with one warning line about it."""


# --------------------------------------------------------------------------- text inputs


def _tag_file(data: bytes | None, name: str = "fic.txt") -> Callable[[Env], Call]:
    def build(env: Env) -> Call:
        path = env.tmp / name
        if data is not None:
            path.write_bytes(data)
        return _tag(env, path)

    return build


def _tag(env: Env, path: Path, *options: str) -> Call:
    return Call(
        cli=["tag", path, "--model", env.model, "--json", *options],
        api=lambda: list(tropeml.load(env.model, cache=False).tag_paths([path])),
        where=str(path),
    )


def _sparse(size: int, *options: str) -> Callable[[Env], Call]:
    def build(env: Env) -> Call:
        path = env.tmp / "huge.txt"
        with path.open("wb") as fh:
            fh.truncate(size)  # sparse: no disk, no memory
        call = _tag(env, path, *options)
        if options:  # the raised limit is a CLI option; the API takes max_bytes
            limit = int(options[-1])
            tagger = tropeml.load(env.model, cache=False)
            return Call(call.cli, lambda: list(tagger.tag_paths([path], limit)), call.where)
        return call

    return build


def _unreadable_file(env: Env) -> Call:
    path = env.tmp / "secret.txt"
    path.write_text(STORY, encoding="utf-8")
    env.deny(path)
    return _tag(env, path)


def _dir_of_unreadable(env: Env) -> Call:
    folder = env.tmp / "locked"
    folder.mkdir()
    (folder / "a.txt").write_text(STORY, encoding="utf-8")
    env.deny(folder / "a.txt")
    call = _tag(env, folder)
    return Call(call.cli, call.api, str(folder / "a.txt"))


def _dir_without_txt(env: Env) -> Call:
    folder = env.tmp / "notes"
    folder.mkdir()
    (folder / "notes.md").write_text(STORY, encoding="utf-8")
    (folder / ".hidden.txt").write_text(STORY, encoding="utf-8")
    return _tag(env, folder)


def _broken_symlink(env: Env) -> Call:
    link = env.tmp / "link.txt"
    link.symlink_to(env.tmp / "gone.txt")
    return _tag(env, link)


def _symlink_loop(env: Env) -> Call:
    link = env.tmp / "loop.txt"
    link.symlink_to(link)
    return _tag(env, link)


def _ao3(kind: str) -> Callable[[Env], Call]:
    """AO3 downloads gone wrong (built from the AO3-shaped fixtures)."""

    def build(env: Env) -> Call:
        if kind == "truncated-epub":
            data = write_epub(env.tmp / "whole.epub", ["Rain"]).read_bytes()
            path = env.tmp / "work.epub"
            path.write_bytes(data[: len(data) // 2])
        else:
            html = download_html(["Rain"])
            text = {
                "malformed-html": "<html><body><div id='chapters'><div class='userstuff'>"
                "<p>Rain fell <b>hard <i>on the roof</p></div>",
                "truncated-html": html[: len(html) // 2],
                "html-without-story": "<!DOCTYPE html><html><head><title>x</title></head>"
                "<body></body></html>",
            }[kind]
            path = env.tmp / "work.html"
            path.write_text(text, encoding="utf-8")
        return _tag(env, path)

    return build


def _directory_to_read_work(env: Env) -> Call:
    return Call(cli=None, api=lambda: read_work(env.tmp), where=str(env.tmp))


def _stdin(data: bytes) -> Callable[[Env], Call]:
    def build(env: Env) -> Call:  # the bytes go in through test_cli's input=
        return Call(cli=["tag", "-", "--model", env.model], api=None, where="-")

    return build


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10" + bytes(range(256)) * 4
STDIN = {"stdin-empty": b"", "stdin-binary": b"\x00\x01\x02\x03" * 64}

TEXT_CASES = [
    Case("empty-file", "file is empty", _tag_file(b"")),
    Case("whitespace-only", "only whitespace", _tag_file(" \n\t\r\n\u00a0\n".encode())),
    Case("binary-file", "binary", _tag_file(bytes(range(256)) * 16, "data.txt")),
    Case("image-renamed-txt", "binary", _tag_file(PNG, "photo.txt")),
    Case("control-characters", "binary", _tag_file(b"abc\x01\x02\x03\x04\x05" * 40)),
    Case("utf16-bom", "works", _tag_file(STORY.encode("utf-16"))),
    Case("utf16-be-bom", "works", _tag_file(codecs.BOM_UTF16_BE + STORY.encode("utf-16-be"))),
    Case("utf8-bom", "works", _tag_file(codecs.BOM_UTF8 + STORY.encode())),
    Case("cp1252", "works", _tag_file("“Café” — naïve rain, a cake…".encode("cp1252"))),
    Case("mixed-newlines", "works", _tag_file(b"Rain fell.\r\nShe baked.\rA duel.\n\r\n\nSwords.")),
    Case("utf16-truncated", "not readable as text", _tag_file(STORY.encode("utf-16")[:-1])),
    Case("not-utf8-nor-cp1252", "not readable as text", _tag_file(b"caf\xc3 \x81\x8d\x8f\x90")),
    Case("huge-file-1gb", "--max-bytes", _sparse(1 << 30)),
    Case("huge-file-1gb-limit-raised", "binary", _sparse(1 << 30, "--max-bytes", "2000000000")),
    Case("missing-file", "no such file", _tag_file(None, "nowhere.txt")),
    Case("unreadable-file", "permission denied", _unreadable_file),
    Case("dir-of-unreadable-files", "permission denied", _dir_of_unreadable),
    Case("dir-without-txt", "directory holds no", _dir_without_txt),
    Case("broken-symlink", "broken symbolic link", _broken_symlink),
    Case("symlink-loop", "cannot read", _symlink_loop),
    Case("directory-as-file", "is a directory", _directory_to_read_work, API),
    Case("truncated-epub", "not a readable EPUB", _ao3("truncated-epub")),
    Case("malformed-html", "works", _ao3("malformed-html")),
    Case("truncated-html", "no story text", _ao3("truncated-html")),
    Case("html-without-story", "no story text", _ao3("html-without-story")),
    *(Case(name, "binary" if data else "empty", _stdin(data), CLI) for name, data in STDIN.items()),
]


# --------------------------------------------------------------------------- label files


def _label_edit(
    line: int, edit: Callable[[dict[str, Any]], Any], raw: str | None = None
) -> Callable[[Env], Call]:
    """Edit one row of the span-label file (or write ``raw`` as that line)."""

    def build(env: Env) -> Call:
        lines = env.labels.read_text(encoding="utf-8").splitlines()
        while len(lines) < line:
            lines.append(lines[0])
        row = json.loads(lines[line - 1])
        edit(row)
        lines[line - 1] = json.dumps(row) if raw is None else raw
        env.labels.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return _train(env, f"{env.labels}:{line}", _load_labels(env))

    return build


def _train(
    env: Env, where: str, api: Callable[[], Any] | None, encoder: str = "hashing-64"
) -> Call:
    cli: list[str | Path] = ["train", "--data", env.data, "--root", env.root]
    cli += ["--out", env.tmp / "out", "--encoder", encoder, "--no-cache"]
    return Call(cli=cli, api=api, where=where)


def _load_labels(env: Env) -> Callable[[], Any]:
    return lambda: load_span_labels(env.labels, Taxonomy.load(env.data / "tropes.toml"), env.root)


def _labels_bytes(data: bytes) -> Callable[[Env], Call]:
    def build(env: Env) -> Call:
        env.labels.write_bytes(data)
        return _train(env, str(env.labels), _load_labels(env))

    return build


def _labels_unreadable(env: Env) -> Call:
    env.deny(env.labels)
    return _train(env, str(env.labels), _load_labels(env))


def _exemplar_edit(line: int, edit: Callable[[list[str]], None]) -> Callable[[Env], Call]:
    def build(env: Env) -> Call:
        path = env.data / "exemplars" / "a.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines()
        edit(lines)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        taxonomy = Taxonomy.load(env.data / "tropes.toml")
        return _train(env, f"{path}:{line}", lambda: load_exemplars(path, taxonomy))

    return build


def _taxonomy_text(text: str) -> Callable[[Env], Call]:
    def build(env: Env) -> Call:
        path = env.data / "tropes.toml"
        path.write_text(text, encoding="utf-8")
        return _train(env, str(path), lambda: Taxonomy.load(path))

    return build


def _keep(row: dict[str, Any]) -> None:
    """Leave the row as it is (a padded line 7 is a copy of line 1)."""


def _bad_json(lines: list[str]) -> None:
    lines[1] = lines[1][:-5]


def _dup_id(lines: list[str]) -> None:
    lines[2] = lines[2].replace('"a-2"', '"a-0"')


LABEL_CASES = [
    Case("label-bad-json", "bad JSON", _label_edit(3, _keep, raw='{"file": "fics/one.txt",')),
    Case("label-not-an-object", "expected a JSON object", _label_edit(2, _keep, raw="[1, 2]")),
    Case(
        "label-unknown-tag",
        "unknown tag(s) 'hail'",
        _label_edit(2, lambda r: r.update(tags=["hail"])),
    ),
    Case("label-span-out-of-range", "out of range", _label_edit(4, lambda r: r.update(end=10**9))),
    Case("label-negative-start", "out of range", _label_edit(2, lambda r: r.update(start=-5))),
    Case(
        "label-start-not-integer", "must be integers", _label_edit(2, lambda r: r.update(start="0"))
    ),
    Case(
        "label-quote-mismatch",
        "quote does not match",
        _label_edit(2, lambda r: r.update(quote="Nope")),
    ),
    Case("label-duplicate-span", "span overlaps", _label_edit(7, _keep)),
    Case(
        "label-duplicate-tag",
        "repeats a tag",
        _label_edit(2, lambda r: r.update(tags=["rain", "rain"])),
    ),
    Case(
        "label-missing-file-field",
        "'file' must be a path string",
        _label_edit(5, lambda r: r.pop("file")),
    ),
    Case(
        "label-source-missing",
        "no such file",
        _label_edit(6, lambda r: r.update(file="fics/gone.txt")),
    ),
    Case("label-file-not-utf8", "not UTF-8", _labels_bytes(b'{"file": "caf\xe9"}\n')),
    Case("label-file-unreadable", "cannot read", _labels_unreadable),
    Case("exemplar-bad-json", "bad JSON", _exemplar_edit(2, _bad_json)),
    Case("exemplar-duplicate-id", "already used", _exemplar_edit(3, _dup_id)),
    Case("taxonomy-bad-toml", "cannot read taxonomy", _taxonomy_text("[[trope]\nid = ")),
    Case(
        "taxonomy-duplicate-id",
        "duplicate trope id",
        _taxonomy_text('[[trope]]\nid="a"\nname="A"\ndefinition="x"\n' * 2),
    ),
]


# --------------------------------------------------------------------------- model folders


def _model(change: Callable[[Env], str]) -> Callable[[Env], Call]:
    """Break the model copy with ``change`` (which returns the file it broke), then load it."""

    def build(env: Env) -> Call:
        where = change(env)
        return Call(
            cli=["tag", env.fic, "--model", env.model, "--json"],
            api=lambda: tropeml.load(env.model, cache=False),
            where=where,
        )

    return build


def _config(
    change: Callable[[dict[str, Any]], Any], reseal: bool = True, named: str = CONFIG_FILE
) -> Callable[[Env], Call]:
    """Edit config.json (``reseal``: with honest hashes); ``named``: the file the error names."""

    def broken(env: Env) -> str:
        edit_config(env.model, change, reseal=reseal)
        return str(env.model / named)

    return _model(broken)


def _file(name: str, data: bytes | None, reseal: bool = False) -> Callable[[Env], Call]:
    def broken(env: Env) -> str:
        path = env.model / name
        if data is None:
            path.unlink()
        else:
            path.write_bytes(data)
        if reseal:
            edit_config(env.model, lambda c: None)
        return str(path)

    return _model(broken)


def _flip_head(env: Env) -> str:
    head = env.model / HEAD_FILE
    data = bytearray(head.read_bytes())
    data[len(data) // 2] ^= 0xFF
    head.write_bytes(bytes(data))
    return str(head)


def _plant(make: Callable[[Env, Any], Any]) -> Callable[[Env], Call]:
    """Plant an object inside the genuine classifier and record honest hashes for it."""

    def broken(env: Env) -> str:
        clf, _, _ = load_model(env.model)
        clf.extra_ = make(env, clf)  # any attribute is saved
        (env.model / HEAD_FILE).write_bytes(sio.dumps(clf))
        edit_config(env.model, lambda c: None)
        return str(env.model / HEAD_FILE)

    return _model(broken)


def _arrays(change: dict[str, Any], pickle: bool = False) -> Callable[[Env], Call]:
    """Rewrite head.npz with some arrays changed, and record honest hashes for it."""
    return _model(lambda env: str(rewrite_arrays(env.model, change, pickle)))


def _other_estimator(env: Env) -> str:
    lr = LogisticRegression().fit(np.eye(4), [0, 1, 0, 1])
    (env.model / HEAD_FILE).write_bytes(sio.dumps(lr))
    edit_config(env.model, lambda c: None)
    return str(env.model / HEAD_FILE)


def _not_a_folder(env: Env) -> str:
    shutil.rmtree(env.model)
    env.model.write_text("a file", encoding="utf-8")
    return str(env.model)


def _missing_folder(env: Env) -> str:
    shutil.rmtree(env.model)
    return str(env.model)


def _stranded(env: Env) -> str:
    env.model.rename(env.model.parent / f".{env.model.name}.old-x1")
    return str(env.model)


def _user_encoder(env: Env) -> Call:
    return Call(
        cli=None,
        api=lambda: tropeml.load(env.model, encoder=tropeml.HashingEncoder(32), cache=False),
        where=str(env.model / CONFIG_FILE),
    )


def _bad_embeddings(env: Env) -> Call:
    tagger = tropeml.load(env.model, cache=False)
    work = tropeml.read_work(env.fic)
    X = np.zeros((len(tagger.passages(work)), 32), dtype=np.float32)
    return Call(cli=None, api=lambda: tagger.tag(work, embeddings=X), where="")


def _train_encoder(env: Env) -> Call:
    return _train(env, "no-such-encoder", None, encoder="no-such-encoder")


# --------------------------------------------------------------------------- settings (issue 16)


def _backend_variable(env: Env) -> Call:
    env.monkeypatch.setenv("TROPEML_BACKEND", "gpu")
    return Call(
        cli=["tag", env.fic, "--model", env.model, "--json"],
        api=lambda: tropeml.load(env.model, cache=False),
        where="$TROPEML_BACKEND",
    )


def _backend_flag(env: Env) -> Call:
    return Call(cli=["tag", env.fic, "--backend", "gpu"], api=None, where="--backend")


def _onnx_dir_a_file(env: Env, backend: str) -> Call:
    """``$TROPEML_ONNX_DIR`` names a file: the fast backend cannot be built (default model)."""
    afile = env.tmp / "afile"
    afile.write_text("not a folder", encoding="utf-8")
    env.monkeypatch.setenv("TROPEML_ONNX_DIR", str(afile))
    return Call(
        cli=["tag", env.fic, "--json", "--no-cache", "--backend", backend],
        api=lambda: tropeml.load(backend=backend, cache=False),
        where=str(afile),
    )


def _bad_fic_in_data(env: Env) -> Call:
    """A folder of fics for training, one of them binary: skipped, the train goes on."""
    folder = env.tmp / "downloads"
    folder.mkdir()
    (folder / "good.html").write_text(download_html(["Rain"]), encoding="utf-8")
    bad = folder / "bad.txt"
    bad.write_bytes(bytes(range(256)) * 8)
    call = _train(env, str(bad), None)
    assert call.cli is not None
    return Call(
        cli=[*call.cli, "--data", folder, "--no-eval"],
        api=lambda: tropeml.retrain(
            [env.data, folder],
            root=env.root,
            out=None,
            encoder=tropeml.HashingEncoder(64),
            cache=False,
            evaluate=False,
        ),
        where=str(bad),
    )


SETTING_CASES = [
    Case("backend-variable-bogus", "unknown backend 'gpu'", _backend_variable),
    Case("backend-option-bogus", "unknown backend 'gpu'", _backend_flag, CLI),
    Case("onnx-dir-unwritable-fast", "cannot write", lambda e: _onnx_dir_a_file(e, "fast")),
    Case(
        "onnx-dir-unwritable-auto",
        WARNING + "cannot write",
        lambda e: _onnx_dir_a_file(e, "auto"),
        integration=CLI,
    ),
    Case("train-bad-fic-in-data-folder", WARNING + "skipped", _bad_fic_in_data),
]


MODEL_CASES = [
    Case("model-missing-folder", "model folder not found", _model(_missing_folder)),
    Case("model-not-a-folder", "model folder not found", _model(_not_a_folder)),
    Case("model-interrupted-save", "interrupted save", _model(_stranded)),
    Case("model-missing-config", "not a tropeml model folder", _file(CONFIG_FILE, None)),
    Case("model-config-not-json", "unreadable config", _file(CONFIG_FILE, b"{ not json")),
    Case(
        "model-config-nan",
        "unreadable config",
        _config(lambda c: c["thresholds"].update(rain=float("nan")), reseal=False),
    ),
    Case(
        "model-config-missing-field", "field 'encoder' missing", _config(lambda c: c.pop("encoder"))
    ),
    Case(
        "model-config-bad-threshold",
        "numbers between 0 and 1",
        _config(lambda c: c["thresholds"].update(rain="high")),
    ),
    Case(
        "model-config-bad-encoder",
        "field 'encoder.dimension'",
        _config(lambda c: c["encoder"].update(dimension=-1)),
    ),
    Case(
        "model-config-path-in-files",
        "Additional properties",
        _config(lambda c: c["files"].update({"../x": "0" * 64})),
    ),
    Case("model-newer-version", "Upgrade tropeml", _config(lambda c: c.update(format_version=99))),
    Case("model-missing-head", "classifier head missing", _file(HEAD_FILE, None)),
    Case("model-corrupt-head", "does not match the hash", _model(_flip_head)),
    Case("model-head-not-skops", "not a readable skops file", _file(HEAD_FILE, b"PK junk", True)),
    Case(
        "model-head-untrusted-type",
        "untrusted type(s): test_bad_input.Evil",
        _plant(lambda e, c: Evil(str(e.marker))),
    ),
    Case("model-head-function", "untrusted type(s): posix.system", _plant(lambda e, c: os.system)),
    Case(
        "model-head-scipy-function",
        "untrusted type(s): scipy.special",
        _plant(lambda e, c: scipy.special.expit),
    ),
    Case("model-head-other-estimator", "holds a LogisticRegression", _model(_other_estimator)),
    Case("model-arrays-missing", "missing from the model folder", _file(ARRAYS_FILE, None)),
    Case("model-arrays-edited", "does not match the hash", _file(ARRAYS_FILE, b"PK junk")),
    Case("model-arrays-not-npz", "cannot load head arrays", _file(ARRAYS_FILE, b"PK junk", True)),
    Case(
        "model-arrays-pickled",
        "cannot load head arrays",
        _arrays({"classes": np.array([Evil("x")], dtype=object)}, pickle=True),
    ),
    Case("model-arrays-wrong-shape", "incomplete or malformed", _arrays({"scale": np.zeros(3)})),
    Case(
        "model-wrong-dimension",
        "expects 64-d embeddings",
        _config(lambda c: c["encoder"].update(dimension=32), named=ARRAYS_FILE),
    ),
    Case(
        "model-unknown-encoder",
        "unknown encoder",
        _config(lambda c: c["encoder"].update(name="no-such-encoder")),
    ),
    Case(
        "model-tags-edited",
        "content hash",
        _config(lambda c: c.update(tags=c["tags"][::-1]), reseal=False),
    ),
    Case("model-taxonomy-edited", "does not match the hash", _file(TAXONOMY_FILE, b"# edited\n")),
    Case(
        "model-taxonomy-bad-toml", "cannot read taxonomy", _file(TAXONOMY_FILE, b"[[trope]\n", True)
    ),
    Case("model-taxonomy-missing", "missing from the model folder", _file(TAXONOMY_FILE, None)),
    Case("api-encoder-wrong-dimension", "expects 64-d embeddings", _user_encoder, API),
    Case("api-embeddings-wrong-dimension", "32-d embeddings", _bad_embeddings, API),
    Case("train-unknown-encoder", "unknown encoder", _train_encoder, CLI),
]


# --------------------------------------------------------------------------- writing tags


def _write(make: Callable[[Path], Path]) -> Callable[[Env], Call]:
    """``tropeml write`` (API: ``write_tags``) on an EPUB that ``make`` builds."""

    def build(env: Env) -> Call:
        from tropeml.serve.writeback import write_tags

        path = make(env.tmp / "fic.epub")
        return Call(
            cli=["write", path, "--model", env.model, "--json"],
            api=lambda: [write_tags(tropeml.load(env.model, cache=False), path)[0]],
            where=str(path),
        )

    return build


def _truncated(path: Path) -> Path:
    data = write_epub(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _read_only(path: Path) -> Path:
    write_fff_epub(path).chmod(0o444)
    return path


def _text_file(path: Path) -> Path:
    path = path.with_suffix(".txt")
    path.write_text(STORY, encoding="utf-8")
    return path


def _no_calibredb(env: Env) -> Call:
    from tropeml.serve.calibre import Calibre

    env.monkeypatch.setenv("PATH", str(env.tmp / "empty"))
    env.monkeypatch.delenv("TROPEML_CALIBREDB", raising=False)
    return Call(
        cli=["calibre", env.tmp, "--model", env.model],
        api=lambda: Calibre(env.tmp),
        where="",
    )


WRITE_CASES = [
    Case("write-corrupt-epub", "not a readable EPUB", _write(_truncated)),
    Case("write-drm-epub", "DRM-protected EPUB", _write(write_drm_epub)),
    Case("write-read-only-epub", "file is read-only", _write(_read_only)),
    Case("write-font-obfuscated-epub", "works", _write(write_font_obfuscated_epub)),
    Case("write-plain-text", "plain text has no metadata", _write(_text_file)),
    Case("calibre-without-calibredb", "calibredb not found on the PATH", _no_calibredb),
]

CASES = TEXT_CASES + LABEL_CASES + MODEL_CASES + SETTING_CASES + WRITE_CASES
BY_ID = {c.id: c for c in CASES}


# --------------------------------------------------------------------------- running


@pytest.fixture
def env(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    model = tmp_path / "models" / "m"
    shutil.copytree(tiny_model, model)
    return Env(tmp_path, model, monkeypatch)


def _params(surface: str, errors_only: bool = False) -> list[Any]:
    return [
        pytest.param(
            c.id,
            id=c.id,
            marks=[pytest.mark.integration] if surface in c.integration else [],
        )
        for c in CASES
        if surface in c.surfaces and not (errors_only and not _is_error(c))
    ]


def _is_error(case: Case) -> bool:
    return case.expect != "works" and not case.expect.startswith(WARNING)


def _warning_line(text: str, case: Case, where: str) -> None:
    """``text`` holds exactly one ``tropeml: warning:`` line about ``where``, and no error."""
    lines = [line for line in text.splitlines() if line.startswith("tropeml:")]
    lines = [line for line in lines if not line.startswith("tropeml: building")]
    assert len(lines) == 1, text
    assert lines[0].startswith("tropeml: warning:"), text
    assert case.expect.removeprefix(WARNING) in lines[0] and where in lines[0], text
    assert "Traceback" not in text


def _stdin_input(case: Case) -> bytes | None:
    return STDIN.get(case.id)


@pytest.mark.parametrize("case_id", _params("cli"))
def test_cli(case_id: str, env: Env) -> None:
    case = BY_ID[case_id]
    call = case.build(env)
    assert call.cli is not None
    result = run(*call.cli, input=_stdin_input(case))
    if case.expect.startswith(WARNING):
        assert result.exit_code == 0, all_text(result)
        _warning_line(stderr_of(result), case, call.where)
        return
    if case.expect == "works":
        assert result.exit_code == 0, all_text(result)
        (obj,) = json_lines(stdout_of(result))
        text = read_work(call.where).text
        for tag in obj["tags"]:
            for ev in tag["evidence"]:
                assert ev["text"] == text[ev["start"] : ev["end"]]
        return
    line = assert_one_line_error(result, case.expect, call.where)
    assert result.exit_code == 1, line
    assert not env.marker.exists()


@pytest.mark.parametrize("case_id", _params("cli", errors_only=True))
def test_cli_debug_shows_the_error(case_id: str, env: Env) -> None:
    case = BY_ID[case_id]
    call = case.build(env)
    assert call.cli is not None
    result = run("--debug", *call.cli, input=_stdin_input(case))
    assert result.exit_code != 0
    assert isinstance(result.exception, TropemlError), repr(result.exception)
    assert case.expect in str(result.exception)


@pytest.mark.parametrize("case_id", _params("api"))
def test_api(case_id: str, env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    case = BY_ID[case_id]
    call = case.build(env)
    assert call.api is not None
    if case.expect.startswith(WARNING):  # printed on stderr, or listed in the result
        result = call.api()
        skipped = getattr(result, "skipped", [])
        _warning_line(
            capsys.readouterr().err + "".join(f"tropeml: warning: skipped {x}\n" for x in skipped),
            case,
            call.where,
        )
        return
    if case.expect == "works":
        results = call.api()
        assert [r.n_passages > 0 for r in results] == [True]
        return
    with pytest.raises(TropemlError) as info:
        call.api()
    message = str(info.value)
    assert "\n" not in message
    assert case.expect in message and call.where in message, message
    assert not env.marker.exists()


def test_planted_payload_would_run_if_trusted(env: Env) -> None:
    """The untrusted-type case is a real threat: trusting its type runs its code."""
    BY_ID["model-head-untrusted-type"].build(env)
    data = (env.model / HEAD_FILE).read_bytes()
    sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    assert env.marker.read_text() == "pwned"


# --------------------------------------------------------------------------- the doc table

_ROW = re.compile(r"^\|\s*`(?P<id>[a-z0-9-]+)`\s*\|(?P<cells>.*)\|\s*$")


def doc_rows() -> dict[str, tuple[str, str]]:
    """``id -> (surfaces, expected)`` from docs/bad-input.md's table."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = _ROW.match(line)
        if m:
            cells = [c.strip() for c in m.group("cells").split("|")]
            assert len(cells) == 3, line  # input | surfaces | outcome
            rows[m.group("id")] = (cells[1], cells[2].strip("`"))
    return rows


def test_doc_table_matches_the_cases() -> None:
    table = doc_rows()
    cases = {c.id: (", ".join(c.surfaces).upper(), c.expect) for c in CASES}
    assert list(table) == list(cases)  # same cases, same order
    assert table == cases


def test_matrix_size() -> None:
    assert len(CASES) >= 30
    assert sum(len(c.surfaces) for c in CASES) >= 60
