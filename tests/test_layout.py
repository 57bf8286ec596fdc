"""The package's layout as a contract: layers import only from layers below them, no import cycle (imports inside
functions counted), no private name imported across modules, small modules, few modules at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gpuseg"
LAYERS = (
    "gpuseg.errors",
    "gpuseg.params",
    "gpuseg.options",
    "gpuseg._core",
    "gpuseg.data",
    "gpuseg.io",
    "gpuseg.features",
    "gpuseg.engines",
    "gpuseg.tuning",
    "gpuseg.segmentation",
    "gpuseg.scale",
    "gpuseg.sklearn",
    "gpuseg.benchmarks",
    "gpuseg.serve",
    "gpuseg.cli",
    "gpuseg.__main__",
)
"""From the bottom up: a module may import from its own layer and the layers before it. ``gpuseg`` itself (the
lazy public API) may name anything."""
MAX_LINES = 700
MAX_TOP_MODULES = 14


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(name: str) -> int | None:
    for i, prefix in enumerate(LAYERS):
        if name == prefix or name.startswith(prefix + "."):
            return i
    return None


def resolve(module: str, target: str) -> str:
    """The module ``target`` names: itself when it is a module of the package, else its package."""
    while target not in MODULES and "." in target:
        target = target.rpartition(".")[0]
    return target


def imports(name: str) -> list[tuple[str, str | None, int]]:
    """(module imported, name imported from it or None, line) for every import of a module, wherever it stands."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:  # for type checkers only: never imported when the code runs
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in MODULES:  # "from package import module"
                    found.append((sub, None, node.lineno))
                else:
                    found.append((base, alias.name, node.lineno))
    return [(m, n, line) for m, n, line in found if m == "gpuseg" or m.startswith("gpuseg.")]


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name in MODULES:
        edges[name] = {resolve(name, m) for m, _, _ in imports(name)} - {name}
    return edges


def test_layers_import_only_from_below():
    wrong = []
    for name in MODULES:
        own = layer(name)
        if name == "gpuseg":
            continue
        assert own is not None, f"{name} is in no layer: add it to LAYERS"
        for target, _, line in imports(name):
            target = resolve(name, target)
            theirs = layer(target)
            if theirs is None or theirs > own:
                wrong.append(f"{name}:{line} imports {target}")
    assert not wrong, "imports from a higher layer:\n" + "\n".join(wrong)


def test_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_private_name_crosses_modules():
    crossing = [
        f"{name}:{line} imports {what} from {target}"
        for name in MODULES
        for target, what, line in imports(name)
        if what is not None and what.startswith("_") and what != "__version__"
    ]
    assert not crossing, "\n".join(crossing)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_are_small(name):
    lines = MODULES[name].read_text().count("\n")
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by what its parts do (at most {MAX_LINES})"


def test_few_modules_at_the_top():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top
