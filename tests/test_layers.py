"""The package's shape: layers that only import downwards, no import circles, short modules.

Every module of ``tropeml/`` is read with :mod:`ast` (nothing is imported), and every import
counts: at the top, inside functions, and under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tropeml"

LAYERS = ("core", "io", "text", "model", "serve", "cli")
"""The layer order, lowest first: a module may import its own layer and the ones below."""

OUTSIDE = {"tropeml", "tropeml.__main__", "tropeml._aliases", "tropeml._version"}
"""Top-level modules outside the layers. ``tropeml/__init__.py`` may import anything;
``_version`` imports nothing, so any module may read the version from it."""

MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(name: str) -> str | None:
    """The tropeml module an imported dotted name lands in (longest existing prefix)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def imports_of(module: str) -> set[str]:
    """Every tropeml module ``module`` imports, wherever the import statement is."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    package = module if _is_package(module) else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports the module pkg.mod; ``from mod import name``, mod
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        for name in names:
            if name == "tropeml" or name.startswith("tropeml."):
                target = _resolve(name)
                assert target is not None, f"{module} imports {name}, which does not exist"
                if target != module:
                    found.add(target)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def layer_of(module: str) -> int | None:
    """The index of a module's layer in :data:`LAYERS`, ``None`` if outside the layers."""
    if module in OUTSIDE:
        return None
    part = module.split(".")[1]
    assert part in LAYERS, f"{module} is in no layer: add its subpackage to LAYERS"
    return LAYERS.index(part)


def test_every_module_is_in_a_layer_or_known() -> None:
    for module in MODULES:
        layer_of(module)


def test_the_graph_is_read() -> None:
    """The reader sees imports at the top, in functions and under TYPE_CHECKING."""
    assert "tropeml.core.errors" in GRAPH["tropeml.model.encoders"]
    assert "tropeml.model.onnx_backend" in GRAPH["tropeml.cli.info"]  # inside a function
    assert "tropeml.model.classifier" in GRAPH["tropeml.model.persistence"]  # TYPE_CHECKING
    assert "tropeml.cli.info" in GRAPH["tropeml.cli.app"]  # from tropeml.cli import info


def test_no_module_imports_a_higher_layer() -> None:
    wrong = []
    for module, targets in GRAPH.items():
        mine = layer_of(module)
        if mine is None:
            continue
        for target in sorted(targets):
            theirs = layer_of(target)
            if theirs is None:
                if target != "tropeml._version":
                    wrong.append(f"{module} -> {target} (top-level, outside the layers)")
            elif theirs > mine:
                wrong.append(f"{module} ({LAYERS[mine]}) -> {target} ({LAYERS[theirs]})")
    assert not wrong, "imports that climb the layers:\n" + "\n".join(wrong)


def test_version_module_imports_nothing() -> None:
    assert GRAPH["tropeml._version"] == set()
    tree = ast.parse(MODULES["tropeml._version"].read_text(encoding="utf-8"))
    assert not any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles() -> None:
    # The top-level package re-exports the public API (and installs the 0.1 aliases); it sits
    # above everything, so leave it out: a circle through it would show up as a layered
    # module importing "tropeml" above.
    graph = {m: t - {"tropeml"} for m, t in GRAPH.items() if m != "tropeml"}
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_short(module: str) -> None:
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module]}: {lines} lines (at most {MAX_LINES})"


def test_readme_layout_lists_every_module() -> None:
    """The README's "Layout" listing names every subpackage and module, and nothing else."""
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    listing = section.split("```\n", 2)[1]
    listed: set[str] = set()
    package = ""
    for line in listing.splitlines()[1:]:  # the first line is "tropeml/"
        name = line.split()[0]
        if line.startswith("    "):
            listed.add(f"{package}/{name}")
        elif name.endswith("/"):
            package = name.rstrip("/")
            listed.add(package + "/")
        else:
            listed.add(name)
    actual = {"__init__.py"}
    for path in MODULES.values():
        rel = path.relative_to(PACKAGE).as_posix()
        if "/" in rel:
            actual.add(rel.split("/")[0] + "/")
            if path.name != "__init__.py":
                actual.add(rel)
    assert listed == actual


def test_every_0_1_module_path_still_imports_with_a_warning() -> None:
    """``import tropeml.<old>`` gives the module that replaced it, and says it is deprecated."""
    script = (
        "import importlib, json, sys, warnings\n"
        "from tropeml._aliases import MOVED\n"
        "bad = []\n"
        "for old, new in sorted(MOVED.items()):\n"
        "    if old == 'cli':  # now the package itself; it exports 0.1's app and main\n"
        "        from tropeml.cli import app, main\n"
        "        continue\n"
        "    with warnings.catch_warnings(record=True) as seen:\n"
        "        warnings.simplefilter('always')\n"
        "        got = importlib.import_module('tropeml.' + old)\n"
        "    said = any(f'tropeml.{old} is deprecated' in str(w.message) for w in seen\n"
        "               if w.category is DeprecationWarning)\n"
        "    if got is not importlib.import_module('tropeml.' + new) or not said:\n"
        "        bad.append(old)\n"
        "print(json.dumps([len(MOVED), bad]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    n, bad = json.loads(proc.stdout)
    assert n >= 20 and bad == []
