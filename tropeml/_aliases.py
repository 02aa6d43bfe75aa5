"""Deprecated module paths of tropeml 0.1, kept for one release (0.2).

tropeml 0.2 groups its modules by pipeline step (``core``, ``io``, ``text``, ``model``,
``serve``, ``cli``). ``import tropeml.persistence`` and the like still work: the old name
resolves to the new module, with a :class:`DeprecationWarning`. ``tropeml.retrain`` is the
function (its module's readers are :mod:`tropeml.io.sources`, its trainer is
:func:`tropeml.train`).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import warnings
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from importlib.abc import Loader

MOVED = {
    "ao3": "io.ao3",
    "audit": "serve.audit",
    "classifier": "model.classifier",
    "cli": "cli.app",
    "corpus": "io.corpus",
    "encoders": "model.encoders",
    "errors": "core.errors",
    "evaluation": "model.evaluation",
    "head": "model.head",
    "labelling": "serve.labelling",
    "labels": "io.labels",
    "masking": "text.masking",
    "onnx_backend": "model.onnx_backend",
    "passages": "text.passages",
    "persistence": "model.persistence",
    "ray": "serve.ray",
    "readers": "io.readers",
    "resources": "core.resources",
    "rollup": "model.rollup",
    "tagger": "serve.tagger",
    "taxonomy": "core.taxonomy",
    "training": "model.training",
    "types": "core.types",
}
"""Old module name (under ``tropeml.``) -> its new place."""


class _Alias:
    """Finds ``tropeml.<old>`` and hands out the module that replaced it.

    A finder and loader by protocol (not by subclassing :mod:`importlib.abc`, whose import
    costs ``tropeml --help`` about 25 ms).
    """

    def __init__(self) -> None:
        self._own: dict[str, tuple[Any, Any]] = {}

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        prefix, _, old = fullname.partition(".")
        if prefix != "tropeml" or old not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, cast("Loader", self))

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = f"tropeml.{MOVED[spec.name.partition('.')[2]]}"
        warnings.warn(
            f"{spec.name} is deprecated and will be removed in tropeml 0.3; import {new}",
            DeprecationWarning,
            stacklevel=2,
        )
        module = importlib.import_module(new)
        self._own[new] = (module.__spec__, getattr(module, "__loader__", None))
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module is the new one; give it back its own spec."""
        module.__spec__, module.__loader__ = self._own[module.__name__]


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
