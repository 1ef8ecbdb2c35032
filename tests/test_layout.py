"""The house rules that keep the code base easy to take over, checked from the source text:
no import circles between modules, imports go down the GUIDE's order, no file over 450 lines."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("flow_tools", "two_stream", "benchmarks")
MAX_LINES = 450

# the GUIDE's order, lowest first: a module may import from its own layer and the layers below;
# the base modules (errors, atomic, progress, report, runlock) may be imported from anywhere
LAYERS = [
    ("flow_tools",),
    ("two_stream.data",),
    ("two_stream.models",),
    ("two_stream.config", "two_stream.engine"),
    ("two_stream.scores", "two_stream.tensor_pickle", "two_stream.fusion",
     "two_stream.fusion_choices", "two_stream.fusion_folds", "two_stream.stacking",
     "two_stream.stack_full", "two_stream.score_consensus",
     "two_stream.metrics", "two_stream.fuse", "two_stream.synthetic_scores"),
    ("two_stream", "benchmarks"),  # commands
]
BASE = {"two_stream.errors", "two_stream.atomic", "two_stream.progress", "two_stream.report",
        "two_stream.runlock", "flow_tools.errors"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules imported by `path`, anywhere in the file (function-level imports count:
    a lazy import hides a circle, it does not remove it)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and t not in _parents(name):
                found.add(t)
    return found


def _runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:` (annotations only, never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def _parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def graph() -> dict[str, set[str]]:
    src = sources()
    known = set(src)
    return {n: imports_of(n, p, known) for n, p in src.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state and (c := visit(n)):
            return c
    return None


def layer(name: str) -> int:
    best, best_len = len(LAYERS) - 1, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    return best


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circles():
    cycle = find_cycle(graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_imports_go_down_the_layers():
    upward = [f"{n} ({layer(n)}) imports {m} ({layer(m)})"
              for n, deps in graph().items() for m in deps
              if m not in BASE and n not in BASE and layer(m) > layer(n)]
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("pkg", PACKAGES)
def test_no_source_file_over_the_limit(pkg):
    long = [f"{p.relative_to(ROOT)}: {n} lines" for p in (ROOT / pkg).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not long, "\n".join(long)
