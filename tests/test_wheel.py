"""Packaging: build the sdist and wheel (twice: same bytes), install the wheel into a fresh
venv, tag a fic from outside the checkout.

The fresh venv sees the dependencies of the development venv through a ``.pth`` file that
holds the path of its site-packages (a plain path line: the ``.pth`` files in there, such as
the editable install of tropeml, are not processed), so nothing is downloaded or reinstalled.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from tropeml import __version__

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "seeds" / "001_93372053ff10fe9d.txt"

EXPECTED_IN_WHEEL = {
    "tropeml/__init__.py",
    "tropeml/cli/app.py",
    "tropeml/model/weights.py",
    "tropeml/model/licences/LICENSE-all-MiniLM-L6-v2",
    "tropeml/model/licences/NOTICE-all-MiniLM-L6-v2",
    "tropeml/model/licences/NOTICE-all-mpnet-base-v2",
    "tropeml/model/packaged.py",
    "tropeml/_bundled/tropes.toml",
    "tropeml/_bundled/models/default/config.json",
    "tropeml/_bundled/models/default/head.skops",
    "tropeml/_bundled/models/default/tropes.toml",
    "tropeml/_bundled/models/default/README.md",
    "tropeml/_bundled/models/default/LICENSE-all-MiniLM-L6-v2",
    "tropeml/_bundled/models/default/NOTICE",
}
EPOCH = "1700000000"
"""SOURCE_DATE_EPOCH of both builds (``make dist`` uses the last commit's time)."""


def _run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
        check=False,
    )


def _clean_env(**extra: str) -> dict[str, str]:
    """The current environment without anything that points Python at the checkout."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    }
    env.update(PYTHONWARNINGS="ignore", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **extra)
    return env


def _build(out: Path) -> tuple[Path, Path]:
    """Build the sdist, and the wheel from it, into ``out``; return (sdist, wheel)."""
    build = [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)]
    env = _clean_env(SOURCE_DATE_EPOCH=EPOCH)
    proc = _run(build, cwd=out, env=env, timeout=600)
    if proc.returncode != 0:  # isolation needs hatchling from the index; fall back offline
        proc = _run([*build, "--no-isolation"], cwd=out, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sdist,) = out.glob("tropeml-*.tar.gz")
    (whl,) = out.glob("tropeml-*.whl")
    return sdist, whl


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, Path]]:
    """Two independent builds of the checkout: [(sdist, wheel), (sdist, wheel)]."""
    return [_build(tmp_path_factory.mktemp(f"dist{i}")) for i in range(2)]


@pytest.fixture(scope="module")
def wheel(builds: list[tuple[Path, Path]]) -> Path:
    return builds[0][1]


def test_builds_are_byte_identical(builds: list[tuple[Path, Path]]) -> None:
    (sdist1, wheel1), (sdist2, wheel2) = builds
    assert sdist1.read_bytes() == sdist2.read_bytes()
    assert wheel1.read_bytes() == wheel2.read_bytes()
    with tarfile.open(sdist1) as tar:
        names = tar.getnames()
        assert {m.mtime for m in tar.getmembers()} == {int(EPOCH)}
    assert f"{sdist1.name.removesuffix('.tar.gz')}/CHANGELOG.md" in names
    assert f"{sdist1.name.removesuffix('.tar.gz')}/models/default/NOTICE" in names


def test_wheel_ships_the_weights_licence_and_notice(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        licence = zf.read("tropeml/_bundled/models/default/LICENSE-all-MiniLM-L6-v2").decode()
        notice = zf.read("tropeml/_bundled/models/default/NOTICE").decode()
    assert "Apache License" in licence and "Version 2.0" in licence
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in licence
    assert "all-MiniLM-L6-v2" in notice and "Apache" in notice
    assert licence == (ROOT / "models" / "default" / "LICENSE-all-MiniLM-L6-v2").read_text()


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed and the dev venv's packages visible."""
    root = tmp_path_factory.mktemp("venv") / "v"
    proc = _run([sys.executable, "-m", "venv", str(root)], cwd=root.parent, env=_clean_env())
    assert proc.returncode == 0, proc.stderr
    python = root / "bin" / "python"
    proc = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        cwd=root.parent,
        env=_clean_env(),
    )
    assert proc.returncode == 0, proc.stderr
    site = Path(proc.stdout.strip())
    assert site.is_dir() and root in site.parents
    deps = sysconfig.get_paths()["purelib"]  # the running (development) venv's site-packages
    (site / "_tropeml_test_deps.pth").write_text(deps + "\n", encoding="utf-8")
    proc = _run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
        cwd=root.parent,
        env=_clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1"),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root


def test_wheel_contents(wheel: Path) -> None:
    assert wheel.name.startswith(f"tropeml-{__version__}-")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = zf.read(entry_points).decode()
        bundled_config = json.loads(zf.read("tropeml/_bundled/models/default/config.json"))
    missing = EXPECTED_IN_WHEEL - names
    assert not missing, sorted(names)
    assert "tropeml = tropeml.cli.app:main" in scripts
    assert not [n for n in names if n.startswith(("tests/", "seeds/", "data/"))]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    shipped = json.loads((ROOT / "models" / "default" / "config.json").read_text("utf-8"))
    assert bundled_config == shipped


def test_installed_wheel_tags_outside_the_checkout(venv: Path, tmp_path: Path) -> None:
    fic = tmp_path / "fic.txt"
    shutil.copyfile(SEED, fic)
    work = tmp_path / "cwd"
    work.mkdir()
    code = f"""
import json, sys
import tropeml
from tropeml.core.resources import default_model_dir
assert 'site-packages' in tropeml.__file__, tropeml.__file__
assert tropeml.__file__.startswith({str(venv)!r}), tropeml.__file__
assert not tropeml.__file__.startswith({str(ROOT)!r}), tropeml.__file__
assert str(default_model_dir()).startswith({str(venv)!r}), default_model_dir()
r = tropeml.load().tag(open({str(fic)!r}, encoding='utf-8').read())
print(json.dumps({{"file": tropeml.__file__, "model_dir": str(default_model_dir()),
                  "result": r.to_dict()}}))
"""
    proc = _run(
        [str(venv / "bin" / "python"), "-c", code],
        cwd=work,
        env=_clean_env(TROPEML_CACHE_DIR=str(tmp_path / "cache")),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "_bundled" in out["model_dir"]
    result = out["result"]
    assert result["model"] == "default"
    assert result["n_passages"] > 5
    tags = {t["id"] for t in result["tags"]}
    assert tags, result["scores"]
    assert "mates" in tags, result["scores"]
    text = SEED.read_text(encoding="utf-8")
    for tag in result["tags"]:
        for ev in tag["evidence"]:
            assert ev["text"] == text[ev["start"] : ev["end"]]


def test_installed_console_script(venv: Path, tmp_path: Path) -> None:
    script = venv / "bin" / "tropeml"
    assert script.is_file()
    version = _run([str(script), "--version"], cwd=tmp_path, env=_clean_env())
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"tropeml {__version__}"
    tropes = _run([str(script), "tropes", "--json"], cwd=tmp_path, env=_clean_env())
    assert tropes.returncode == 0, tropes.stderr
    ids = {row["id"] for row in json.loads(tropes.stdout)}
    assert {"fake_death", "hurt_comfort", "mates", "reunion"} <= ids
    info = _run(
        [str(script), "info", "--json", "--backend", "torch"], cwd=tmp_path, env=_clean_env()
    )
    assert info.returncode == 0, info.stderr
    facts = json.loads(info.stdout)
    assert "_bundled" in facts["model"]["folder"]
    assert facts["packages"]["tropeml"] == __version__
    weights_licence = facts["licences"][1]
    assert weights_licence["licence"] == "Apache-2.0"
    assert all("_bundled" in path for path in weights_licence["files"])
    assert len(weights_licence["files"]) == 2
    where = _run(
        [str(venv / "bin" / "python"), "-c", "import tropeml; print(tropeml.__file__)"],
        cwd=tmp_path,
        env=_clean_env(),
    )
    assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr
