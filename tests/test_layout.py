"""The package's shape, as ARCHITECTURE.md states it: no import cycles, pure checks, plain records.

Read from the source with ``ast`` (imports under ``if TYPE_CHECKING:`` do not count:
they never run), so the rules hold for every import a module makes, however late.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "pytest_resilience"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


def _imports(name: str) -> set[str]:
    """The package's modules that module ``name`` imports at run time."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
        for statement in branch.body
        for node in ast.walk(statement)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = {f"{target}.{a.name}" for a in node.names} & MODULES.keys()
            found |= subs if len(subs) == len(node.names) else subs | {target}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return (found & MODULES.keys()) - {name}


GRAPH = {name: _imports(name) for name in MODULES}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in ``graph``, as the list of its nodes, or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _package(name: str) -> str:
    return ".".join(name.split(".")[:2])


def test_no_module_imports_itself_back() -> None:
    # The reader sees imports (also late ones, inside functions) and finds a cycle.
    assert "pytest_resilience.verdicts" in GRAPH["pytest_resilience.resilience"]
    assert "pytest_resilience.assertions.calls" in GRAPH["pytest_resilience.runs"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle(GRAPH) is None


def test_no_two_subpackages_import_each_other() -> None:
    packages: dict[str, set[str]] = {}
    for name, targets in GRAPH.items():
        packages.setdefault(_package(name), set()).update(
            _package(t) for t in targets if _package(t) != _package(name)
        )
    assert _cycle(packages) is None


@pytest.mark.parametrize(
    "records",
    [
        "pytest_resilience.observe.records",
        "pytest_resilience.http.records",
        "pytest_resilience.faults.plan",
    ],
)
def test_records_import_nothing_of_the_package(records: str) -> None:
    assert GRAPH[records] == set()


def test_checks_import_only_records_and_argument_checks() -> None:
    allowed = {
        "pytest_resilience.validate",
        "pytest_resilience.errors",
        "pytest_resilience.observe.records",
        "pytest_resilience.http.records",
        "pytest_resilience.observe.noise",  # the probe's period, a constant
    }
    for name, targets in GRAPH.items():
        if name.startswith("pytest_resilience.assertions"):
            outside = {t for t in targets if not t.startswith("pytest_resilience.assertions")}
            assert outside <= allowed, (name, outside - allowed)
