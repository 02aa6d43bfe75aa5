"""What ``tropeml info`` reports: the model, its encoder and their hashes, licences, versions.

Nothing heavy is imported (no torch, no scikit-learn): versions come from the installed
packages' metadata, and the backend ``tag`` would use is worked out without building it.
"""

from __future__ import annotations

import importlib.util
import os
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from tropeml._version import __version__
from tropeml.core.errors import TropemlError
from tropeml.core.resources import default_model_dir
from tropeml.model import packaged
from tropeml.model.encoders import SentenceTransformerEncoder
from tropeml.model.integrity import CONFIG_FILE, read_config, verified_config
from tropeml.model.weights import LICENCES, TRUST_ENV, check_files, trusted_by_env

PACKAGES = (
    "tropeml",
    "numpy",
    "onnxruntime",
    "tokenizers",
    "scikit-learn",
    "skops",
    "sentence-transformers",
    "torch",
)
"""Packages whose versions ``info`` reports (read from metadata: nothing is imported), with
those that ship the model's encoder (:mod:`tropeml.model.packaged`)."""


def package_versions(encoder: str | None = None) -> dict[str, str | None]:
    """Return the installed version of each of :data:`PACKAGES` (``None``: not installed).

    Args:
        encoder: The model's encoder name; the packages that ship its weights are added
            (the default encoder's when ``None``).
    """
    known = packaged.lookup(encoder or packaged.MINILM.name)
    out: dict[str, str | None] = {}
    for name in PACKAGES + (known.packages if known else ()):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    if out["tropeml"] is None or out["tropeml"] != __version__:
        out["tropeml"] = __version__  # a checkout: the code, not an older install, is running
    return out


def _tropeml_licence() -> str:
    try:
        meta = metadata.metadata("tropeml")
    except metadata.PackageNotFoundError:
        return "MIT"
    for key in ("License-Expression", "License"):
        values = meta.get_all(key)
        if values:
            return str(values[0])
    return "MIT"


def _backend(name: str, folder: Path | None, backend: str | None) -> str:
    """The backend ``tropeml tag`` would run this encoder on (without building anything)."""
    if re.fullmatch(r"hashing-\d+", name):
        return "none (hashing encoder: no weights)"
    chosen = backend or os.environ.get("TROPEML_BACKEND") or "auto"
    if chosen == "torch":
        return "torch"
    if importlib.util.find_spec("onnxruntime") is None:
        return "torch (onnxruntime is not installed)" if chosen == "auto" else f"{chosen} (fails)"
    if folder is None:
        return "torch (the encoder is not a local folder)" if chosen == "auto" else chosen
    from tropeml.model.onnx_backend import PRECISION_OF, OnnxEncoder

    precision = PRECISION_OF.get("fast" if chosen == "auto" else chosen)
    if precision is None:
        return f"{chosen} (unknown backend)"
    label = "fast" if chosen == "auto" else chosen
    encoder = OnnxEncoder(name, precision=precision, build=False)
    where = encoder.model_file
    if encoder.is_built():
        return f"{label} ({precision} ONNX, built: {where})"
    return f"{label} ({precision} ONNX, built on first use into {where.parent})"


def _screen(folder: Path, entry: Any) -> str:
    """One line on the model's screen (``tropeml tag --screen``)."""
    if not isinstance(entry, dict):
        return "none (tropeml train --screen adds one)"
    from tropeml.model.screen import SCREEN_DIR, check_screen  # only for models that have one

    problem = check_screen(folder / SCREEN_DIR, entry)
    files = len(entry.get("files", {}))
    return problem or f"ok (margin {entry.get('margin')}, {files} files verified)"


def describe(model: str | Path | None = None, backend: str | None = None) -> dict[str, Any]:
    """Return everything ``tropeml info`` prints, as a JSON-ready dict.

    Args:
        model: Model folder (default: the shipped model).
        backend: The backend to report (default: ``$TROPEML_BACKEND`` or ``auto``).

    Raises:
        TropemlError: If the folder is not a readable model folder.
    """
    folder = Path(model) if model is not None else default_model_dir()
    config = read_config(folder)
    try:
        verified_config(folder)
        integrity = "ok"
    except TropemlError as exc:
        integrity = str(exc)
    enc = config["encoder"]
    name = str(enc["name"])
    recorded = enc.get("files")
    hashing = re.fullmatch(r"hashing-\d+", name) is not None
    enc_folder = None if hashing else SentenceTransformerEncoder(name)._path
    checks = [] if hashing else check_files(enc_folder, recorded)
    if hashing:
        verified = "nothing to verify (hashing encoder: no files)"
    elif not recorded:
        verified = "not recorded (model saved before tropeml 0.2): nothing to verify"
    elif all(c.status == "ok" for c in checks):
        verified = "ok"
    else:
        bad = [c for c in checks if c.status != "ok"]
        verified = f"{len(bad)} file(s) differ: " + ", ".join(f"{c.name} ({c.status})" for c in bad)
        if trusted_by_env():
            verified += f" (trusted: {TRUST_ENV} is set)"
    licences: list[dict[str, Any]] = [
        {"what": "tropeml (code and model head)", "licence": _tropeml_licence(), "files": []}
    ]
    if name in LICENCES:
        spdx, files = LICENCES[name]
        licences.append(
            {
                "what": f"encoder weights ({name})",
                "licence": spdx,
                "files": [str(folder / f) for f in files if (folder / f).is_file()],
            }
        )
    return {
        "model": {
            "name": config.get("name", folder.name),
            "folder": str(folder),
            "format": f"{config['format']} {config['format_version']}",
            "tropeml_version": config.get("tropeml_version"),
            "tags": list(config["tags"]),
            "content_sha256": config.get("content_sha256"),
            "integrity": integrity,
            "screen": _screen(folder, config.get("screen")),
        },
        "encoder": {
            "name": name,
            "version": enc.get("version"),
            "dimension": enc.get("dimension"),
            "folder": str(enc_folder) if enc_folder is not None else None,
            "verified": verified,
            "files": [c.to_dict() for c in checks],
        },
        "licences": licences,
        "packages": package_versions(name),
        "backend": _backend(name, enc_folder, backend),
    }


def render(info: dict[str, Any]) -> str:
    """Return :func:`describe`'s dict as plain text, one fact a line."""
    m, e = info["model"], info["encoder"]
    lines = [
        f"model:      {m['name']} ({m['folder']})",
        f"  format:   {m['format']}, saved by tropeml {m['tropeml_version']}",
        f"  tags:     {len(m['tags'])}: {', '.join(m['tags'])}",
        f"  content:  sha256 {m['content_sha256'] or '(not recorded)'}",
        f"  checks:   {m['integrity']} ({CONFIG_FILE}, head and taxonomy hashes)",
        f"  screen:   {m['screen']}",
        f"encoder:    {e['name']} ({e['version']}), {e['dimension']}-d",
        f"  folder:   {e['folder'] or '-'}",
        f"  verified: {e['verified']}",
    ]
    for f in e["files"]:
        status = "" if f["status"] in {"ok", "unrecorded"} else f"  [{f['status'].upper()}]"
        lines.append(f"    {f['sha256'] or '(missing)':64}  {f['file']}{status}")
    lines.append("licences:")
    for lic in info["licences"]:
        where = f" ({', '.join(lic['files'])})" if lic["files"] else ""
        lines.append(f"  {lic['what']}: {lic['licence']}{where}")
    lines.append("packages:   " + ", ".join(f"{k} {v or '-'}" for k, v in info["packages"].items()))
    lines.append(f"backend:    {info['backend']}")
    return "\n".join(lines)
