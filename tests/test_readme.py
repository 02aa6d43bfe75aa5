"""The README's Python blocks run, in order, in one namespace, as a new user would run them.

They run in a temporary folder holding what they name: ``fic.txt`` (a seed fic), ``data/``
(the taxonomy, the seed labels, a sample of the exemplars, an answers file) with ``seeds/``
beside it, ``downloads/`` (AO3-shaped EPUB and HTML downloads) and ``library/``. The shipped
model is loaded as is; only its encoder is swapped for the 384-d hashing encoder, and
training skips its evaluation and makes one multiple-instance round, so the blocks run in
about a minute. What is checked is that every call the README shows exists and works with
the arguments it shows (and the current module paths), not the numbers.
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
from ao3_fixtures import download_html, write_epub

from tropeml.io.sources import answer_record
from tropeml.model import protocols, training
from tropeml.model.encoders import HashingEncoder
from tropeml.serve import tagger

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FIC = ROOT / "seeds" / "000_77fbc02fa2239641.txt"
EXEMPLARS = 15  # lines kept of each exemplar file
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(text: str) -> list[str]:
    """Every fenced ``python`` block of a Markdown text, in order."""
    return _BLOCK.findall(text)


@pytest.fixture
def readme_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the files the README's blocks read, made the working directory."""
    shutil.copy(FIC, tmp_path / "fic.txt")
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data", data, ignore=shutil.ignore_patterns("dev"))
    for path in (data / "exemplars").glob("*.jsonl"):  # a sample: training stays quick
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        path.write_text("".join(lines[:EXEMPLARS]), encoding="utf-8")
    shutil.copytree(ROOT / "seeds", tmp_path / "seeds")  # what data/labels/ points into
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    write_epub(downloads / "fic.epub", ["Angst", "Fluff", "Hurt/Comfort", "Slow Burn"])
    (downloads / "other.html").write_text(download_html(["Reunion"]), encoding="utf-8")
    text = (tmp_path / "fic.txt").read_text(encoding="utf-8")
    answer = answer_record("fic.txt", text, 0, 400, "angst", "yes")
    (tmp_path / "data" / "answers.jsonl").write_text(answer + "\n", encoding="utf-8")
    (tmp_path / "library" / "shelf").mkdir(parents=True)
    shutil.copy(FIC, tmp_path / "library" / "a.txt")
    shutil.copy(ROOT / "seeds" / "002_1ddad86479ad2531.txt", tmp_path / "library" / "shelf")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def hashing_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real encoder's shape (384-d) without its cost; training skips its evaluation and
    makes one multiple-instance round, not two."""
    monkeypatch.setattr(tagger, "load_encoder", lambda *a, **k: HashingEncoder(384))
    monkeypatch.setattr(protocols, "default_encoder", lambda *a: HashingEncoder(384))
    real_train = training.train

    def train(*args: Any, **kwargs: Any) -> Any:
        return real_train(*args, **{**kwargs, "evaluate": False, "mil_rounds": 1})

    monkeypatch.setattr(training, "train", train)


def test_the_readme_has_python_blocks() -> None:
    assert len(python_blocks(README.read_text(encoding="utf-8"))) >= 5


def test_every_python_block_of_the_readme_runs(
    readme_folder: Path, hashing_everywhere: None, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    for i, block in enumerate(python_blocks(README.read_text(encoding="utf-8")), 1):
        try:
            with warnings.catch_warnings():  # the README shows the current module paths
                warnings.filterwarnings("error", message=r"tropeml\..* is deprecated")
                exec(compile(block, f"README.md python block {i}", "exec"), namespace)
        except Exception as exc:  # name the block, keep its traceback
            raise AssertionError(f"README python block {i} fails: {exc!r}\n{block}") from exc
    # what the blocks promise, checked on what they made
    assert (readme_folder / "models" / "mine" / "config.json").is_file()
    assert namespace["result"].embedded + namespace["result"].reused > 0
    assert namespace["report"].to_dict()["source"]
    assert (readme_folder / "library.jsonl").read_text().count("\n") == 2
    assert (readme_folder / "tags.jsonl").read_text().count("\n") == 1
    capsys.readouterr()
