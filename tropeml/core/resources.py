"""Where things live: the shipped model and taxonomy, and tropeml's cache folder."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # tropeml/
_BUNDLED = _PACKAGE / "_bundled"  # filled by the wheel build (pyproject: force-include)
_CHECKOUT = _PACKAGE.parent  # an editable install or a checkout


def default_model_dir() -> Path:
    """Return the folder of the shipped default model."""
    bundled = _BUNDLED / "models" / "default"
    return bundled if bundled.is_dir() else _CHECKOUT / "models" / "default"


def default_taxonomy_path() -> Path:
    """Return the shipped taxonomy file (``data/tropes.toml`` in a checkout)."""
    bundled = _BUNDLED / "tropes.toml"
    return bundled if bundled.is_file() else _CHECKOUT / "data" / "tropes.toml"


def cache_root() -> Path:
    """Return tropeml's cache folder: ``$TROPEML_CACHE_DIR``, else ``~/.cache/tropeml``.

    It holds the embedding cache, the built ONNX backends and unpacked encoder weights.
    """
    root = os.environ.get("TROPEML_CACHE_DIR")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tropeml"
