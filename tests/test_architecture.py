"""The house rules, checked on the source: one import name, data flowing one way, no import circles, thin verbs.

The import graph is read with `ast` (imports inside functions count: a lazy import is still a dependency), so the
test needs nothing installed and names the modules of any circle it finds.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "models", "pipelines")
# data flows one way: pipelines -> models -> features
LAYER = {"features": 0, "models": 1, "pipelines": 2}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["leadscore", *parts])


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def _imported_names(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in the file, outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    found = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for _, imported in _imported_names(path):
            # `from a.b import c` names module a.b.c when c is a module, else a.b
            target = imported if imported in modules else imported.rpartition(".")[0]
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_features_models_and_pipelines():
    assert cycles(import_graph()) == []


def test_data_flows_one_way_pipelines_models_features():
    climbs = [
        f"{source} imports {target}"
        for source, targets in import_graph().items()
        for target in targets
        if LAYER[target.split(".")[1]] > LAYER[source.split(".")[1]]
    ]
    assert climbs == []


def test_every_import_uses_the_one_import_name():
    """`import models` would load a second copy of a module (and break installed code, which has only leadscore)."""
    bare = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for folder in (*PACKAGES, "tests", "benchmarks")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for line, name in _imported_names(path)
        if name.split(".")[0] in PACKAGES
    ]
    assert bare == []


def test_scoring_calls_down_only():
    """Nightly scoring depends on no other verb: feature parameters come from the settings, grades from models."""
    graph = import_graph()
    reached, todo = set(), ["leadscore.pipelines.verbs.scoring"]
    while todo:  # everything predict imports, directly or through what it imports
        for target in graph[todo.pop()] - reached:
            reached.add(target)
            todo.append(target)
    verbs = sorted(m for m in reached if m.startswith("leadscore.pipelines.verbs."))
    assert verbs == []


def test_pipelines_is_rooms_not_a_grab_bag():
    top_level = sorted(p.name for p in (ROOT / "pipelines").glob("*.py") if p.name != "__init__.py")
    assert len(top_level) <= 10, top_level
    assert (ROOT / "pipelines" / "cli.py").read_text(encoding="utf-8").count("\n") < 400


def test_every_cli_verb_is_thin():
    tree = ast.parse((ROOT / "pipelines" / "cli.py").read_text(encoding="utf-8"))
    verbs = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any("command" in ast.unparse(decorator) for decorator in node.decorator_list)
    ]
    assert len(verbs) >= 10
    fat = {v.name: v.end_lineno - v.lineno + 1 for v in verbs if v.end_lineno - v.lineno + 1 > 40}
    assert fat == {}


@pytest.mark.parametrize(
    "package",
    sorted(_module_name(p.parent) for p in (ROOT / "pipelines").glob("*/__init__.py")),
)
def test_each_room_names_its_public_functions(package):
    module = importlib.import_module(package)
    assert module.__all__, f"{package} has an empty __all__"
    assert module.__doc__ and module.__doc__.strip()
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []
