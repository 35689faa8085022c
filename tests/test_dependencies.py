"""Every third-party module imported is declared, where it is needed.

ccotel's own modules import only what ``[project].dependencies`` names; the tests, benches and
scripts also what the ``test`` extra names. A module is traced to the distribution that
installed its file, so a package that only comes along with another (undeclared) counts as
missing. ``ccotel --help`` and ``ccotel report`` load no test-only distribution.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

from tests.conftest import FIXTURES, REPO

FIRST_PARTY = {"ccotel", "tests", "bench"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    return {_norm(re.match(r"[A-Za-z0-9._-]+", r).group(0)) for r in requirements}


PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
RUNTIME = _names(PROJECT["dependencies"])
TEST = _names(PROJECT["optional-dependencies"]["test"])


def closure(names: set[str]) -> set[str]:
    """The distributions these need, installed, with what they need in turn (no extras)."""
    out, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.add(name)
        try:
            reqs = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        todo += [
            _norm(re.match(r"[A-Za-z0-9._-]+", r).group(0)) for r in reqs if "extra ==" not in r
        ]
    return out


def sources(*roots: str) -> list[Path]:
    out: list[Path] = []
    for root in roots:
        p = REPO / root
        out += [p] if p.is_file() else [f for f in p.rglob("*.py") if "node_modules" not in f.parts]
    return out


def imported(paths: list[Path]) -> dict[str, str]:
    """Third-party module -> the first file importing it (functions' own imports included)."""
    out: dict[str, str] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top in sys.stdlib_module_names or top in FIRST_PARTY or top == "__future__":
                    continue
                out.setdefault(name, str(path.relative_to(REPO)))
    return out


@cache
def _owners() -> dict[Path, str]:
    """Every installed file -> the distribution that installed it."""
    out = {}
    for dist in md.distributions():
        for f in dist.files or ():
            out[Path(str(dist.locate_file(f))).resolve()] = _norm(dist.metadata["Name"])
    return out


def distribution(module: str) -> str | None:
    """The distribution whose file ``module`` is (None: not installed)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return None
    origin = spec.origin if spec.origin not in (None, "namespace") else None
    paths = (
        [Path(origin)]
        if origin
        else [Path(p) / "__init__.py" for p in spec.submodule_search_locations or ()]
    )
    for p in paths:
        owner = _owners().get(p.resolve())
        if owner:
            return owner
    return None


def undeclared(paths: list[Path], allowed: set[str]) -> list[str]:
    found = []
    for module, where in sorted(imported(paths).items()):
        dist = distribution(module)
        if dist not in allowed:
            found.append(f"{where}: {module} ({dist or 'not installed'})")
    return found


def test_ccotel_imports_only_its_declared_dependencies():
    assert undeclared(sources("ccotel"), RUNTIME) == []


def test_tests_benches_and_scripts_import_only_declared_packages():
    code = sources("tests", "bench", "scripts/gen-docs", "deploy/compose/prometheus/budgets.py")
    assert undeclared(code, RUNTIME | TEST) == []


def test_the_check_finds_what_is_missing():
    """grpc comes from grpcio (declared); ruff is a test tool, not one of ccotel's."""
    assert distribution("grpc") == "grpcio" and distribution("google.protobuf") == "protobuf"
    assert distribution("opentelemetry.proto.trace") == "opentelemetry-proto"
    assert distribution("opentelemetry.sdk.trace") == "opentelemetry-sdk"
    assert distribution("no_such_module_anywhere") is None
    fake = REPO / "tests" / "data" / "uses_hypothesis.py"
    assert undeclared([fake], RUNTIME) == ["tests/data/uses_hypothesis.py: hypothesis (hypothesis)"]


def test_help_and_report_load_no_test_dependency(tmp_path):
    """`ccotel --help`, `ccotel report` and `ccotel report --json` import nothing that only
    the test extra installs (what is declared for ccotel and what ships with Python)."""
    state = tmp_path / "s"
    subprocess.run(
        [sys.executable, "-m", "ccotel", "backfill", "--claude-dir", str(FIXTURES / "claude-2.1.197"),
         "--state-dir", str(state)], check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    probe = (
        "import json, sys\n"
        "from ccotel.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)))\n"
    )
    test_only = closure(TEST) - closure(RUNTIME)  # pytest, hypothesis, selenium, their needs...
    assert {"pytest", "pluggy", "hypothesis", "selenium"} <= test_only
    bare = subprocess.run([sys.executable, "-c", "import sys; print(sorted(sys.modules))"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    for args in (["--help"], ["report", "--state-dir", str(state)],
                 ["report", "--json", "--state-dir", str(state)]):  # fmt: skip
        proc = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        modules = json.loads(proc.stderr.rsplit("MODULES ", 1)[1])
        loaded = {
            distribution(m)
            for m in modules
            if m.partition(".")[0] not in FIRST_PARTY and repr(m) not in bare  # not by site
        }
        assert "rich" in loaded or args[0] != "report" or "--json" in args  # it looked
        assert loaded & test_only == set(), (args, sorted(loaded & test_only))
