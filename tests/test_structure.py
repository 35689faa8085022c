"""The shape of the code: packages meet through their public faces, imports form no cycle.

A unit is a top-level module (``ccotel/report.py``) or a package (``ccotel/state/``). A
module may import from another unit only its public names: no ``_private`` name, and from
a package only what its ``__init__`` lists in ``__all__`` (``from ccotel.state import
Store``, not ``from ccotel.state.store import Store``).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = sorted(
    ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ccotel").glob("*/__init__.py")
)


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted((ROOT / "ccotel").rglob("*.py")):
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def imports(path: Path, top_level_only: bool = False) -> list[tuple[int, str, str | None]]:
    """(line, module, name) of each ``from module import name`` and ``import module``."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = []
    for node in nodes:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue  # for the type checker only: never run
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out += [(node.lineno, node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name, None) for a in node.names]
    return out


def cross_unit_imports(check) -> list[str]:
    """What ``check(module, name)`` says of each import from another ccotel unit."""
    found = []
    for me, path in modules().items():
        for line, module, name in imports(path):
            if not module.startswith("ccotel") or unit(module) == unit(me):
                continue
            why = check(module, name)
            if why:
                found.append(f"{path.relative_to(ROOT)}:{line}: {module} {name or ''}: {why}")
    return found


def private(module: str, name: str | None) -> str | None:
    parts = [*module.split("."), *([name] if name else [])]
    bad = [p for p in parts if p.startswith("_") and not p.startswith("__")]
    return f"{bad[0]} is private to its package" if bad else None


def behind_the_face(module: str, name: str | None) -> str | None:
    package = unit(module)
    if package not in PACKAGES:
        return None  # a top-level module: its public names are its face
    if module != package:
        return f"import it from {package}, the package's face"
    if name is not None and name not in importlib.import_module(package).__all__:
        return f"not in {package}.__all__"
    return None


def test_no_module_imports_a_private_name_of_another_package():
    assert cross_unit_imports(private) == []


def test_packages_are_entered_through_their_faces():
    assert cross_unit_imports(behind_the_face) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_each_face_holds_what_it_lists(package):
    face = importlib.import_module(package)
    assert face.__doc__, f"{package}/__init__.py: say what the package holds"
    for name in getattr(face, "__all__", []):
        assert getattr(face, name) is not None, f"{package}.{name}"


def test_the_checks_see_what_they_forbid():
    assert private("ccotel.traces.shipper", "_file_info")
    assert private("ccotel.config", "_keys") and not private("ccotel", "__version__")
    assert behind_the_face("ccotel.state.store", "Store")
    assert behind_the_face("ccotel.state", "Transaction")
    assert not behind_the_face("ccotel.state", "Store")
    assert not behind_the_face("ccotel.config", "load")


def test_module_level_imports_form_no_cycle():
    mods = modules()
    graph: dict[str, set[str]] = {}
    for me, path in mods.items():
        deps = set()
        for _, module, name in imports(path, top_level_only=True):
            if not module.startswith("ccotel"):
                continue
            target = f"{module}.{name}" if f"{module}.{name}" in mods else module
            parts = target.split(".")
            deps |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)}  # and its packages
        graph[me] = {d for d in deps if d in mods and d != me and not me.startswith(d + ".")}
    done: set[str] = set()

    def visit(m: str, path: list[str]) -> None:
        if m in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(m) :], m]))
        if m in done:
            return
        for d in sorted(graph[m]):
            visit(d, [*path, m])
        done.add(m)

    for m in sorted(graph):
        visit(m, [])
