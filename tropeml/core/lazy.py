"""Imports that need care to stay fast."""

from __future__ import annotations

import sys
from typing import Any


def skops_io() -> Any:
    """Import ``skops.io`` without dragging torch in.

    Importing ``skops.io`` lists every scikit-learn estimator (to build its default trusted
    types), which imports every scikit-learn package, including an array-API shim that
    imports torch when torch is installed: seconds of start-up that tagging on the fast
    backend never uses. While skops is first imported, torch is marked unimportable (the
    shim is skipped, as scikit-learn does when torch is absent); the mark is removed right
    after, so torch imports normally later. Nothing changes if torch is already imported.
    """
    if "skops.io" in sys.modules or "torch" in sys.modules:
        import skops.io

        return skops.io
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        import skops.io
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
    return skops.io
