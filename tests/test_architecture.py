"""The package's shape: no import cycle inside ``grounding``, no module over 500 lines, the package map is true.

The import graph is read from the source with ``ast`` (nothing is imported): every ``import`` and
``from ... import`` statement counts, at module level, inside functions and under ``if TYPE_CHECKING``, because
each one is a dependency a reader has to follow. The rules:

- a node is a module of ``grounding`` (a package is its ``__init__``, named by the package);
- ``import grounding.x.y`` (with or without ``as``) is an edge to ``grounding.x.y``;
- ``from grounding.x import name`` is an edge to ``grounding.x.name`` when that is a module, else to
  ``grounding.x``; relative imports are resolved first;
- the parent packages that Python runs on the way (``grounding.x`` for ``grounding.x.y``) are not edges.

A cycle is any strongly connected group of modules; the failure names one cycle through each group, with the
file and line of every import on it.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import grounding

PACKAGE_ROOT = Path(grounding.__file__).resolve().parent
MAX_MODULE_LINES = 500


@dataclass(frozen=True)
class ImportEdge:
    source: str
    target: str
    where: str  # "grounding/x/y.py:12"


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package below ``root`` (the package's folder), by dotted name."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join((package, *parts))] = path
    return modules


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute module named by ``from <level dots><name> import ...`` inside ``module``."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, name] if name else base)


def import_edges(root: Path, package: str) -> list[ImportEdge]:
    """All import edges between modules of the package, following the rules in the module docstring."""
    modules = module_files(root, package)
    edges: list[ImportEdge] = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        shown = f"{package}/{path.relative_to(root).as_posix()}"
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                for alias in node.names:
                    name = alias.name
                    while name and name not in modules:
                        name = name.rpartition(".")[0]  # ``import grounding.x.attr``: the longest module prefix
                    if name:
                        targets.append(name)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = _resolve_relative(module, path.name == "__init__.py", node.level, node.module)
                else:
                    base = node.module or ""
                if base != package and not base.startswith(package + "."):
                    continue
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    if submodule in modules:
                        targets.append(submodule)
                    elif base in modules:
                        targets.append(base)
            for target in dict.fromkeys(targets):
                edges.append(ImportEdge(module, target, f"{shown}:{node.lineno}"))
    return edges


def _strongly_connected(nodes: list[str], successors: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative), each in discovery order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work: list[tuple[str, int]] = [(start, 0)]
        while work:
            node, next_child = work.pop()
            if next_child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = successors.get(node, [])
            if next_child < len(children):
                work.append((node, next_child + 1))
                child = children[next_child]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component[::-1])
    return components


def _one_cycle(component: list[str], successors: dict[str, list[str]]) -> list[str]:
    """A shortest cycle through the component's first module, as the list of modules (first repeated last)."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for child in successors.get(node, []):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*path[::-1], start]
                if child in members and child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {component}")


def import_cycles(root: Path, package: str) -> list[str]:
    """One line per import cycle: ``a -> b (a.py:3) -> a (b.py:7)``; empty when the graph has none."""
    edges = import_edges(root, package)
    successors: dict[str, list[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for edge in edges:
        if (edge.source, edge.target) not in where:
            successors.setdefault(edge.source, []).append(edge.target)
            where[(edge.source, edge.target)] = edge.where
    lines = []
    for component in _strongly_connected(sorted(module_files(root, package)), successors):
        if len(component) == 1 and component[0] not in successors.get(component[0], []):
            continue
        cycle = _one_cycle(component, successors)
        steps = [cycle[0]] + [f"{target} ({where[(source, target)]})" for source, target in zip(cycle, cycle[1:])]
        extra = ""
        if len(component) > len(cycle) - 1:  # the group holds more modules than this one cycle passes through
            extra = f" [{len(component)} modules import each other here: {', '.join(sorted(component))}]"
        lines.append(" -> ".join(steps) + extra)
    return lines


def long_modules(root: Path, package: str, limit: int = MAX_MODULE_LINES) -> list[str]:
    """``grounding/x.py: N lines`` for every module over ``limit`` lines, longest first."""
    found = []
    for path in module_files(root, package).values():
        count = len(path.read_text(encoding="utf-8").splitlines())
        if count > limit:
            found.append((count, f"{package}/{path.relative_to(root).as_posix()}"))
    return [f"{shown}: {count} lines" for count, shown in sorted(found, reverse=True)]


def documented_subpackages(init_path: Path) -> list[str]:
    """The ``- ``name``: ...`` entries of the package docstring's map."""
    docstring = ast.get_docstring(ast.parse(init_path.read_text(encoding="utf-8"))) or ""
    return re.findall(r"^- ``(\w+)``:", docstring, flags=re.MULTILINE)


def existing_subpackages(root: Path) -> list[str]:
    return sorted(path.parent.name for path in root.glob("*/__init__.py"))


# -- the checker itself, on a tiny package -----------------------------------------------------------------------


def write_package(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "pkg"


def test_the_checker_follows_every_kind_of_import_and_names_the_cycle(tmp_path: Path) -> None:
    root = write_package(tmp_path, {
        "pkg/__init__.py": "from pkg.sub import a\n",  # a package __init__ importing its own submodule
        "pkg/sub/__init__.py": "",
        "pkg/sub/a.py": "def f():\n    import pkg.sub.b as b\n    return b\n",  # inside a function
        "pkg/sub/b.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..sub import c\n"  # relative, type-only
        ),
        "pkg/sub/c.py": "from pkg.sub.a import f\nfrom pkg import sub\nimport os\n",
        "pkg/leaf.py": "from pkg.sub import a\n",
    })
    edges = {(edge.source, edge.target) for edge in import_edges(root, "pkg")}
    assert edges == {
        ("pkg", "pkg.sub.a"), ("pkg.sub.a", "pkg.sub.b"), ("pkg.sub.b", "pkg.sub.c"), ("pkg.sub.c", "pkg.sub.a"),
        ("pkg.sub.c", "pkg.sub"), ("pkg.leaf", "pkg.sub.a"),
    }
    (cycle,) = import_cycles(root, "pkg")
    assert cycle == (
        "pkg.sub.a -> pkg.sub.b (pkg/sub/a.py:2) -> pkg.sub.c (pkg/sub/b.py:3) -> pkg.sub.a (pkg/sub/c.py:1)"
    )


def test_the_checker_sees_no_cycle_where_imports_point_one_way(tmp_path: Path) -> None:
    root = write_package(tmp_path, {
        "pkg/__init__.py": "from pkg.a import x\nfrom pkg.b import y\n",
        "pkg/a.py": "x = 1\n",
        "pkg/b.py": "from pkg.a import x\ny = x\n",
    })
    assert import_cycles(root, "pkg") == []


# -- the package ---------------------------------------------------------------------------------------------------


def test_no_import_cycle_inside_grounding() -> None:
    cycles = import_cycles(PACKAGE_ROOT, "grounding")
    assert not cycles, "import cycles inside grounding (break each by moving the shared code down):\n" + "\n".join(
        cycles
    )


def test_no_module_of_grounding_is_over_500_lines() -> None:
    found = long_modules(PACKAGE_ROOT, "grounding")
    assert not found, f"modules over {MAX_MODULE_LINES} lines (split them by job):\n" + "\n".join(found)


def test_the_package_map_in_the_docstring_matches_the_folders() -> None:
    documented = documented_subpackages(PACKAGE_ROOT / "__init__.py")
    existing = existing_subpackages(PACKAGE_ROOT)
    assert documented, "grounding/__init__.py's docstring lists no sub-package (lines '- ``name``: job')"
    missing = sorted(set(documented) - set(existing))
    unlisted = sorted(set(existing) - set(documented))
    assert not missing and not unlisted, (
        f"grounding/__init__.py's package map: listed but not a package: {missing}; "
        f"a package but not listed: {unlisted}"
    )
